"""Time input (issue 18 point 1): one table of instants across three zones, both DST switches in
Europe/Berlin and America/New_York (non-existent and ambiguous local times), durations, day
arithmetic across a DST change, and rubbish that must be `400 invalid_time` with a fix.

2026 switches: Berlin 29 Mar 02:00 CET→03:00 CEST and 25 Oct 03:00 CEST→02:00 CET;
New York 8 Mar 02:00 EST→03:00 EDT and 1 Nov 02:00 EDT→01:00 EST. Tokyo has none."""
from __future__ import annotations

import datetime as dt

import pytest

from appliance.errors import ValidationError
from appliance.timeinput import add, parse_duration, parse_instant, render

BER, NYC, TYO = "Europe/Berlin", "America/New_York", "Asia/Tokyo"


def utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.timezone.utc)


FRI = utc("2026-03-27T14:00")  # Friday, 15:00 in Berlin, 10:00 in New York, 23:00 in Tokyo

# value, zone given, now, expected UTC instant, zone reported
INSTANTS = [
    # Europe/Berlin, spring forward
    ("2026-03-29T01:59", BER, FRI, "2026-03-29T00:59", BER),
    ("2026-03-29T02:30", BER, FRI, "2026-03-29T01:30", BER),   # does not exist: 03:30 CEST
    ("2026-03-29T02:00", BER, FRI, "2026-03-29T01:00", BER),   # the first missing minute: 03:00
    ("2026-03-29T03:00", BER, FRI, "2026-03-29T01:00", BER),
    ("tomorrow 10am", BER, utc("2026-03-28T12:00"), "2026-03-29T08:00", BER),  # CEST next day
    ("in 3 days", BER, FRI, "2026-03-30T13:00", BER),         # 15:00 wall clock kept (CEST)
    ("in 72 hours", BER, FRI, "2026-03-30T14:00", BER),       # elapsed: 16:00 CEST
    ("in 2 hours", BER, utc("2026-03-29T00:30"), "2026-03-29T02:30", BER),
    ("in 1 day", BER, utc("2026-03-28T01:30"), "2026-03-29T01:30", BER),  # 02:30 → 03:30 CEST
    ("next Monday", BER, FRI, "2026-03-29T22:00", BER),
    ("next monday 9:00", BER, FRI, "2026-03-30T07:00", BER),
    # Europe/Berlin, fall back
    ("2026-10-25T01:59", BER, FRI, "2026-10-24T23:59", BER),
    ("2026-10-25T02:30", BER, FRI, "2026-10-25T00:30", BER),   # twice: the first (CEST)
    ("2026-10-25T03:00", BER, FRI, "2026-10-25T02:00", BER),
    ("2026-10-25T02:30+01:00", BER, FRI, "2026-10-25T01:30", "UTC"),  # the offset picks the second
    ("2026-10-25T02:30+02:00", BER, FRI, "2026-10-25T00:30", "UTC"),
    ("3 days ago", BER, utc("2026-10-27T12:00"), "2026-10-24T11:00", BER),  # 13:00 kept
    ("2026-03-29T10:00[Europe/Berlin]", None, FRI, "2026-03-29T08:00", BER),
    ("2026-03-28 09:00 Europe/Berlin", "UTC", FRI, "2026-03-28T08:00", BER),
    # America/New_York, spring forward
    ("2026-03-08T01:59", NYC, FRI, "2026-03-08T06:59", NYC),
    ("2026-03-08T02:30", NYC, FRI, "2026-03-08T07:30", NYC),   # does not exist: 03:30 EDT
    ("2026-03-08T03:00", NYC, FRI, "2026-03-08T07:00", NYC),
    ("tomorrow 9am", NYC, utc("2026-03-07T20:00"), "2026-03-08T13:00", NYC),
    ("in 24 hours", NYC, utc("2026-03-07T20:00"), "2026-03-08T20:00", NYC),
    ("in 1 day", NYC, utc("2026-03-07T20:00"), "2026-03-08T19:00", NYC),
    ("friday 5pm", NYC, utc("2026-03-04T15:00"), "2026-03-06T22:00", NYC),
    ("2026-03-08T02:30:00-05:00", NYC, FRI, "2026-03-08T07:30", "UTC"),
    # America/New_York, fall back
    ("2026-11-01T00:59", NYC, FRI, "2026-11-01T04:59", NYC),
    ("2026-11-01T01:30", NYC, FRI, "2026-11-01T05:30", NYC),   # twice: the first (EDT)
    ("2026-11-01T02:00", NYC, FRI, "2026-11-01T07:00", NYC),
    ("in 1 day", NYC, utc("2026-10-31T05:30"), "2026-11-01T05:30", NYC),  # lands on 01:30 twice
    ("yesterday noon", NYC, utc("2026-11-02T17:00"), "2026-11-01T17:00", NYC),
    ("2026-11-01T01:30[America/New_York]", BER, FRI, "2026-11-01T05:30", NYC),
    # Asia/Tokyo (no DST) and UTC
    ("2026-03-29T02:30", TYO, FRI, "2026-03-28T17:30", TYO),
    ("2026-03-29", TYO, FRI, "2026-03-28T15:00", TYO),
    ("tomorrow 10am", TYO, FRI, "2026-03-28T01:00", TYO),
    ("in 30 minutes", TYO, FRI, "2026-03-27T14:30", TYO),
    ("20260329T100000Z", TYO, FRI, "2026-03-29T10:00", "UTC"),
    ("2026-03-29T10:00:00.250+09:00", TYO, FRI, "2026-03-29T01:00:00.250", "UTC"),
    ("now", TYO, FRI, "2026-03-27T14:00", TYO),
    ("  Tomorrow   10AM ", TYO, FRI, "2026-03-28T01:00", TYO),
    ("2026-03-29T10:00", None, FRI, "2026-03-29T10:00", "UTC"),
    ("2026-03-29T10:00Z", BER, FRI, "2026-03-29T10:00", "UTC"),
]

RUBBISH = ["", "   ", "banana", "10", "tomorrow at 25:00", "2026-02-30T10:00", "2026-13-01",
           "2026-03-29T24:30", "2026-03-29T10:00[Mars/Base]", "next blursday", "PT30M", "x" * 300,
           None, 42]


@pytest.mark.parametrize("value, zone, now, expected, zone_used", INSTANTS)
def test_instants(value, zone, now, expected, zone_used):
    found = parse_instant(value, zone=zone, now=now)
    assert found.at == utc(expected)
    assert found.at.tzinfo is dt.timezone.utc
    assert found.zone == zone_used


def test_the_table_is_big_enough():
    assert len(INSTANTS) + len(RUBBISH) >= 40 and len(INSTANTS) >= 40


@pytest.mark.parametrize("value", RUBBISH)
def test_rubbish_is_invalid_time(value):
    with pytest.raises(ValidationError) as caught:
        parse_instant(value, zone=BER, now=FRI, field="due")
    assert caught.value.status == 400 and caught.value.code == "invalid_time"
    assert caught.value.field == "due"
    assert "tomorrow 10am" in caught.value.fix or "IANA" in caught.value.fix


def test_unknown_zone_is_invalid_time():
    with pytest.raises(ValidationError) as caught:
        parse_instant("now", zone="Nowhere/City", now=FRI)
    assert caught.value.code == "invalid_time"


def test_rendered_in_the_zone_with_its_offset():
    assert render(utc("2026-03-29T01:30"), BER) == "2026-03-29T03:30:00+02:00"
    assert render(utc("2026-11-01T06:30"), NYC) == "2026-11-01T01:30:00-05:00"  # the second 01:30
    assert render(dt.datetime(2026, 3, 29, 1, 30), None) == "2026-03-29T01:30:00+00:00"


DURATIONS = [
    ("PT30M", 0, dt.timedelta(minutes=30), "PT30M"),
    ("30 minutes", 0, dt.timedelta(minutes=30), "PT30M"),
    ("1 hour 30 minutes", 0, dt.timedelta(minutes=90), "PT1H30M"),
    ("1 hour, and 5 minutes", 0, dt.timedelta(minutes=65), "PT1H5M"),
    ("1h30m", 0, dt.timedelta(minutes=90), "PT1H30M"),
    ("1.5 hours", 0, dt.timedelta(minutes=90), "PT1H30M"),
    ("90 seconds", 0, dt.timedelta(seconds=90), "PT1M30S"),
    ("3 days", 3, dt.timedelta(0), "P3D"),
    ("P3D", 3, dt.timedelta(0), "P3D"),
    ("2 weeks", 14, dt.timedelta(0), "P14D"),
    ("P1W", 7, dt.timedelta(0), "P7D"),
    ("P1DT2H", 1, dt.timedelta(hours=2), "P1DT2H"),
    ("PT72H", 0, dt.timedelta(hours=72), "PT72H"),  # elapsed hours stay hours
    ("pt0.5s", 0, dt.timedelta(seconds=0.5), "PT0.5S"),
    ("P0D", 0, dt.timedelta(0), "PT0S"),
]


@pytest.mark.parametrize("value, days, clock_part, iso", DURATIONS)
def test_durations(value, days, clock_part, iso):
    found = parse_duration(value)
    assert (found.days, found.clock, found.iso) == (days, clock_part, iso)
    assert parse_duration(found.iso) == found  # the ISO text round-trips


@pytest.mark.parametrize("value", ["", "P", "PT", "P1M", "P1Y", "-PT5M", "abc", "3 fortnights", "30",
                                   "1.5 days", "5 minutes later", None, 30])
def test_bad_durations_are_invalid_time(value):
    with pytest.raises(ValidationError) as caught:
        parse_duration(value, field="duration")
    assert caught.value.status == 400 and caught.value.code == "invalid_time"
    assert "PT30M" in caught.value.fix


@pytest.mark.parametrize("start, duration, zone, expected", [
    ("2026-03-28T09:00", "3 days", BER, "2026-03-31T08:00"),   # 10:00 CET → 10:00 CEST
    ("2026-03-28T09:00", "PT72H", BER, "2026-03-31T09:00"),    # 72 h later: 11:00 CEST
    ("2026-10-24T08:00", "P1D", BER, "2026-10-25T09:00"),      # 10:00 CEST → 10:00 CET
    ("2026-10-24T08:00", "24 hours", BER, "2026-10-25T08:00"),
    ("2026-03-07T07:30", "1 day", NYC, "2026-03-08T07:30"),    # 02:30 EST → gap → 03:30 EDT
    ("2026-10-31T05:30", "1 day", NYC, "2026-11-01T05:30"),    # 01:30 EDT → first 01:30
    ("2026-03-07T15:00", "P1DT2H", NYC, "2026-03-08T16:00"),   # 10:00 EST → 10:00 EDT + 2 h
    ("2026-03-28T09:00", "3 days", TYO, "2026-03-31T09:00"),
])
def test_days_keep_the_wall_clock(start, duration, zone, expected):
    assert add(utc(start), parse_duration(duration), zone) == utc(expected)
