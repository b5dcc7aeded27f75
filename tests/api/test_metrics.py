"""GET /metrics: Prometheus text format (parsed by prometheus_client's parser), numbers that move
with real mail (sent through the API, delivered and bounced by the worker, received over SMTP
by the listener), and its guard: the metrics token, or loopback clients only."""
from __future__ import annotations

import datetime as dt
import smtplib

import pytest
from prometheus_client.parser import text_string_to_metric_families

from appliance import metrics
from appliance.config import load_settings
from appliance.worker import Worker
from smtp.server import Listener
from tests.helpers import assert_error

OUTSIDE = {"REMOTE_ADDR": "203.0.113.7"}


def scrape(client, headers: dict | None = None) -> dict[tuple[str, tuple], float]:  # noqa: ANN001
    """Every sample of /metrics as {(name, sorted labels): value}; the text must parse strictly."""
    resp = client.get("/metrics", headers=headers or {})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = resp.get_data(as_text=True)
    samples = {}
    for family in text_string_to_metric_families(text):
        assert family.documentation, family.name
        for sample in family.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            assert key not in samples, key
            samples[key] = sample.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_parse_and_move_when_mail_flows(client, world, store, settings) -> None:
    owner = world.owner()
    sender = world.sender(owner, "agent@metrics.test")
    world.inbox(owner, "desk@metrics.test")
    before = scrape(client)
    for name in ("received", "sent", "delivered", "bounced"):
        assert value(before, f"gentbox_messages_{name}_total") == 0
    assert value(before, "gentbox_delivery_latency_seconds_count") == 0

    for to in ("desk@metrics.test", "nobody@metrics.test"):  # hosted: delivered locally / bounced
        resp = client.post("/v1/messages/", json={"to": [{"email": to}], "subject": "Hi", "text_body": "Hello"},
                           headers=sender.auth)
        assert resp.status_code == 201, resp.get_data(as_text=True)
    queued = scrape(client)
    assert value(queued, "gentbox_messages_sent_total") == 2
    assert value(queued, "gentbox_queue_rows", status="queued") >= 2
    assert value(queued, "gentbox_http_request_duration_seconds_count", method="POST", route="/v1/messages/") == 2
    assert value(queued, "gentbox_http_request_duration_seconds_bucket", method="POST", route="/v1/messages/",
                 le="+Inf") == 2

    worker = Worker(store, settings)
    try:
        worker.run_until_idle()
    finally:
        worker.close()
    listener = Listener(store, settings, host="127.0.0.1", port=0)
    address = listener.start()
    try:
        with smtplib.SMTP(*address, local_hostname="client.example", timeout=30) as smtp:
            smtp.sendmail("someone@elsewhere.example", ["desk@metrics.test"],
                          b"From: someone@elsewhere.example\r\nTo: desk@metrics.test\r\nSubject: In\r\n\r\nBody\r\n")
    finally:
        listener.stop()

    after = scrape(client)
    assert value(after, "gentbox_messages_delivered_total") == 1
    assert value(after, "gentbox_messages_bounced_total") == 1
    # Three arrivals, each a message.received: the local delivery and the SMTP message in desk@,
    # and the bounce report (DSN) in the sender's inbox.
    assert value(after, "gentbox_messages_received_total") == 3
    assert value(after, "gentbox_delivery_latency_seconds_count") == 1
    assert value(after, "gentbox_delivery_latency_seconds_bucket", le="+Inf") == 1
    assert 0 <= value(after, "gentbox_delivery_latency_seconds_sum") < 60
    assert value(after, "gentbox_queue_rows", status="queued") == 0
    assert value(after, "gentbox_http_request_duration_seconds_count", method="GET", route="/metrics") >= 2

    # The same numbers once every event is old enough to be counted once and cached.
    text = metrics.render(store, client.application.extensions["gentbox_store_metrics"], metrics.HttpHistogram(),
                          now=dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1))
    later = {(s.name, tuple(sorted(s.labels.items()))): s.value
             for f in text_string_to_metric_families(text) for s in f.samples}
    for name in ("received", "sent", "delivered", "bounced"):
        assert value(later, f"gentbox_messages_{name}_total") == value(after, f"gentbox_messages_{name}_total")
    assert value(later, "gentbox_delivery_latency_seconds_count") == 1
    assert value(scrape(client), "gentbox_messages_delivered_total") == 1  # settled + recent, not twice


def test_without_a_token_only_local_direct_clients_are_answered(client) -> None:
    assert client.get("/metrics").status_code == 200
    assert_error(client.get("/metrics", environ_base=OUTSIDE), 403, "forbidden")
    # Through the HTTPS front (nginx connects from loopback and adds X-Forwarded-For): refused.
    assert_error(client.get("/metrics", headers={"X-Forwarded-For": "203.0.113.7"}), 403, "forbidden")
    assert client.post("/metrics").status_code == 405 or client.post("/metrics").status_code == 404


TOKEN = "metrics-token-0123456789abcdef"


@pytest.fixture
def token_client(make_app, make_settings):
    return make_app(make_settings(metrics_token=TOKEN)).test_client()


def test_with_a_token_it_is_required_from_everyone(token_client) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"},
                    {"Authorization": f"Bearer {TOKEN}x"}):
        for environ in ({}, OUTSIDE):
            resp = token_client.get("/metrics", headers=headers, environ_base=environ)
            assert_error(resp, 401, "unauthenticated")
            assert resp.headers["WWW-Authenticate"].startswith("Bearer")
            assert TOKEN not in resp.get_data(as_text=True)
    resp = token_client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, environ_base=OUTSIDE)
    assert resp.status_code == 200 and "gentbox_messages_received_total" in resp.get_data(as_text=True)


def test_the_token_can_come_from_a_file(tmp_path) -> None:
    secret = tmp_path / "metrics_token"
    secret.write_text(TOKEN + "\n")
    settings = load_settings({"GENTBOX_DATA_DIR": str(tmp_path), "GENTBOX_METRICS_TOKEN_FILE": str(secret)},
                             require_secret=False)
    assert settings.metrics_token == TOKEN
    assert TOKEN not in repr(settings)
