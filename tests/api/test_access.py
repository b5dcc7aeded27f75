"""Contract section 1 through the API: waitlist, sign-up links, sessions and GET /v1/users/me/.

Every test runs on SQLite and on PostgreSQL (the `backend` fixture behind `client` and `world`).
"""
from __future__ import annotations

import datetime as dt
import email
import email.policy
import json
import threading
import time
from urllib.parse import parse_qs, urlparse

from sqlalchemy import func, select

from appliance import clock
from appliance.clock import utcnow
from appliance.ids import new_id
from appliance.models import Domain, Inbox, Message, SignupToken, SystemMail, User, UserSession, WaitlistEntry
from appliance.security import digest
from appliance.services.identity import waitlist
from tests.world import PASSWORD
from tests.helpers import assert_error, where_stored

STRONG = "a long and unusual passphrase"
REQUEST_HEADERS_THAT_VARY = {"X-Request-Id", "X-RateLimit-Remaining", "X-RateLimit-Reset", "RateLimit"}  # RateLimit: r and t


# --- helpers -------------------------------------------------------------------------------
def without_request_id(resp) -> tuple[int, dict]:
    body = resp.get_json()
    body.pop("request_id")
    return resp.status_code, body


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def approve(store, settings, address: str) -> str:
    """Approve address on the waitlist (as the CLI does) and return the raw sign-up token."""
    with store.session() as db:
        approval = waitlist.approve(db, settings, address, decided_by="operator")
    return parse_qs(urlparse(approval.signup_url).query)["signup_token"][0]


def request_and_approve(client, store, settings, address: str) -> str:
    assert client.post("/v1/waitlist/", json={"email": address}).status_code == 202
    return approve(store, settings, address)


def sign_up(client, address: str, token: str, password: str = STRONG, ip: str = "127.0.0.1", **extra):
    return client.post("/auth/signup/", json={"email": address, "signup_token": token,
                                              "password": password, **extra},
                       environ_base={"REMOTE_ADDR": ip})


def log_in(client, address: str, password: str = PASSWORD, **kw):
    return client.post("/auth/login/", json={"email": address, "password": password}, **kw)


def wait_for_fresh_login_window(window: int = 900) -> None:
    """Limits are counted in fixed windows (15 minutes for logins); do not straddle a boundary."""
    into = time.time() % window
    if into > window - 30:
        time.sleep(window - into + 0.5)


# --- waitlist ------------------------------------------------------------------------------
def test_waitlist_is_idempotent(client, store):
    for address in ("new@example.com", "NEW@Example.com", " new@example.com "):
        resp = client.post("/v1/waitlist/", json={"email": address})
        assert resp.status_code == 202
        assert resp.get_json() == {"status": "pending"}
    with store.session() as db:
        entries = db.scalars(select(WaitlistEntry)).all()
    assert [(e.email, e.status, e.request_count) for e in entries] == [("new@example.com", "pending", 3)]


def test_waitlist_answers_are_byte_identical_whatever_the_address_state(client, world, store):
    client.post("/v1/waitlist/", json={"email": "known@example.com"})
    approved_token = world.signup_link("approved@example.com")
    client.post("/v1/waitlist/", json={"email": "rejected@example.com"})
    with store.session() as db:
        waitlist.reject(db, "rejected@example.com", decided_by="operator")
    world.owner("redeemed@example.com")

    answers = {}
    for address in ("new@example.com", "known@example.com", "approved@example.com",
                    "rejected@example.com", "redeemed@example.com"):
        resp = client.post("/v1/waitlist/", json={"email": address})
        headers = sorted((k, v) for k, v in resp.headers.items() if k not in REQUEST_HEADERS_THAT_VARY)
        answers[address] = (resp.status_code, resp.get_data(), headers)
    first = answers["new@example.com"]
    assert first[0] == 202
    assert json.loads(first[1]) == {"status": "pending"}
    for address, answer in answers.items():
        assert answer == first, address

    # Asking again changes no decision: the approved link still works, the others keep their state.
    with store.session() as db:
        states = dict(db.execute(select(WaitlistEntry.email, WaitlistEntry.status)).all())
    assert states == {"new@example.com": "pending", "known@example.com": "pending",
                      "approved@example.com": "approved", "rejected@example.com": "rejected",
                      "redeemed@example.com": "redeemed"}
    resp = client.get("/v1/waitlist/validate/",
                      query_string={"email": "approved@example.com", "signup_token": approved_token})
    assert resp.status_code == 200 and resp.get_json() == {"email": "approved@example.com"}


def test_waitlist_under_concurrent_requests_stays_one_entry(make_app, settings, store):
    apps = [make_app(settings) for _ in range(4)]
    barrier = threading.Barrier(len(apps))
    answers: list[tuple[int, bytes]] = []

    def ask(app, ip: str) -> None:
        client = app.test_client()
        barrier.wait()
        resp = client.post("/v1/waitlist/", json={"email": "racer@example.com"}, environ_base={"REMOTE_ADDR": ip})
        answers.append((resp.status_code, resp.get_data()))

    # Distinct client addresses: one address's rate-limit counter row would serialize the calls.
    threads = [threading.Thread(target=ask, args=(app, f"192.0.2.{i + 1}")) for i, app in enumerate(apps)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert answers == [(202, b'{"status":"pending"}')] * len(apps)
    with store.session() as db:
        entries = db.scalars(select(WaitlistEntry)).all()
    assert [(e.email, e.request_count) for e in entries] == [("racer@example.com", len(apps))]


def test_waitlist_is_strictly_rate_limited_per_ip(make_app, make_settings):
    client = make_app(make_settings(rate_limit_waitlist=3)).test_client()
    wait_for_fresh_login_window(3600)
    for i in range(3):
        resp = client.post("/v1/waitlist/", json={"email": f"w{i}@example.com"})
        assert resp.status_code == 202
        assert resp.headers["X-RateLimit-Limit"] == "3"
        assert resp.headers["X-RateLimit-Remaining"] == str(2 - i)
    resp = client.post("/v1/waitlist/", json={"email": "w9@example.com"})
    assert_error(resp, 429, "rate_limited")
    assert 1 <= int(resp.headers["Retry-After"]) <= 3600
    assert client.post("/v1/waitlist/", json={"email": "w9@example.com"},
                       environ_base={"REMOTE_ADDR": "192.0.2.9"}).status_code == 202


def test_waitlist_accepts_idn_addresses_in_punycode(client, store):
    resp = client.post("/v1/waitlist/", json={"email": "anna@bücher.example"})
    assert resp.status_code == 202
    with store.session() as db:
        assert db.scalars(select(WaitlistEntry.email)).all() == ["anna@xn--bcher-kva.example"]


def test_waitlist_rejects_invalid_addresses(client, store):
    for bad in ("not-an-email", "a@", "@example.com", "two@@example.com", "", "   ",
                "a@example.com\r\nBcc: victim@example.com", "a@exa mple.com"):
        resp = client.post("/v1/waitlist/", json={"email": bad})
        assert_error(resp, 400, "validation_error", field="email")
    for body in ({}, {"email": 123}, {"email": ["a@example.com"]}):
        assert_error(client.post("/v1/waitlist/", json=body), 400, "validation_error", field="email")
    assert_error(client.post("/v1/waitlist/", json={"email": "a@example.com", "admin": True}),
                 400, "validation_error", field="admin")
    assert_error(client.post("/v1/waitlist/", data="email=a@example.com",
                             content_type="application/x-www-form-urlencoded"),
                 415, "unsupported_media_type")
    with store.session() as db:
        assert db.scalar(select(func.count()).select_from(WaitlistEntry)) == 0


# --- sign-up links -------------------------------------------------------------------------
def test_approval_mails_a_link_and_the_full_signup_flow_works(client, store, settings):
    token = request_and_approve(client, store, settings, "alice@example.com")
    with store.session() as db:
        mails = db.scalars(select(SystemMail)).all()
    assert [(m.kind, m.rcpt_to, m.status) for m in mails] == [("signup_link", "alice@example.com", "queued")]
    body = email.message_from_bytes(mails[0].raw, policy=email.policy.default).get_body().get_content()
    assert f"/signup/?email=alice%40example.com&signup_token={token}" in body

    resp = client.get("/v1/waitlist/validate/", query_string={"email": "alice@example.com", "signup_token": token})
    assert resp.status_code == 200
    assert resp.get_json() == {"email": "alice@example.com"}

    resp = sign_up(client, "Alice@Example.com", token, name="Alice")
    assert resp.status_code == 201
    created = resp.get_json()
    assert set(created) == {"user_id", "email"}
    assert created["email"] == "alice@example.com" and created["user_id"].startswith("usr_")

    login = log_in(client, "alice@example.com", STRONG)
    assert login.status_code == 200
    me = client.get("/v1/users/me/", headers=bearer(login.get_json()["access_token"]))
    assert me.status_code == 200
    assert me.get_json()["user_id"] == created["user_id"]
    assert me.get_json()["role"] == "owner" and me.get_json()["name"] == "Alice"
    with store.session() as db:
        assert db.scalar(select(WaitlistEntry.status)) == "redeemed"
        assert db.get(User, created["user_id"]).tenant_id.startswith("tnt_")


def test_signup_token_is_single_use(client, store, settings):
    token = request_and_approve(client, store, settings, "bob@example.com")
    assert sign_up(client, "bob@example.com", token).status_code == 201
    assert_error(sign_up(client, "bob@example.com", token, password="another long passphrase"),
                 400, "signup_token_redeemed", field="signup_token")
    assert_error(client.get("/v1/waitlist/validate/", query_string={"email": "bob@example.com", "signup_token": token}),
                 400, "signup_token_redeemed", field="signup_token")
    # The first password is the one that counts.
    assert log_in(client, "bob@example.com", STRONG).status_code == 200
    assert log_in(client, "bob@example.com", "another long passphrase").status_code == 401


def test_signup_token_is_single_use_under_concurrency(make_app, settings, store):
    for round_ in range(3):
        address = f"race{round_}@example.com"
        with store.session() as db:
            waitlist.request_access(db, address)
        token = approve(store, settings, address)
        apps = [make_app(settings), make_app(settings)]  # two processes' worth of engines
        barrier = threading.Barrier(2)
        answers: list[tuple[int, dict]] = []

        def redeem(app, password: str, ip: str) -> None:
            client = app.test_client()
            barrier.wait()
            resp = sign_up(client, address, token, password=password, ip=ip)
            answers.append((resp.status_code, resp.get_json()))

        # Distinct client addresses: one address's rate-limit counter row would serialize the calls.
        threads = [threading.Thread(target=redeem, args=(app, f"passphrase number {i} here", f"192.0.2.{i + 1}"))
                   for i, app in enumerate(apps)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert sorted(status for status, _ in answers) == [201, 400], answers
        loser = next(body for status, body in answers if status == 400)
        assert loser["error"]["code"] == "signup_token_redeemed"
        with store.session() as db:
            assert db.scalar(select(func.count()).select_from(User).where(User.email == address)) == 1
            assert db.scalar(select(WaitlistEntry.status).where(WaitlistEntry.email == address)) == "redeemed"


def test_signup_token_expires(client, store, settings):
    token = request_and_approve(client, store, settings, "carol@example.com")
    query = {"email": "carol@example.com", "signup_token": token}
    clock.advance(dt.timedelta(seconds=settings.signup_token_ttl - 60))
    assert client.get("/v1/waitlist/validate/", query_string=query).status_code == 200
    clock.advance(dt.timedelta(seconds=61))
    assert_error(client.get("/v1/waitlist/validate/", query_string=query), 400, "signup_token_expired",
                 field="signup_token")
    assert_error(sign_up(client, "carol@example.com", token), 400, "signup_token_expired", field="signup_token")
    with store.session() as db:
        assert db.scalar(select(func.count()).select_from(User)) == 0
    # An operator re-sends the link: the new one works.
    fresh = approve(store, settings, "carol@example.com")
    assert sign_up(client, "carol@example.com", fresh).status_code == 201


def test_signup_token_only_for_its_address_and_only_the_latest(client, store, settings):
    first = request_and_approve(client, store, settings, "dave@example.com")
    request_and_approve(client, store, settings, "erin@example.com")
    assert_error(client.get("/v1/waitlist/validate/", query_string={"email": "erin@example.com", "signup_token": first}),
                 400, "signup_token_invalid", field="signup_token")
    assert_error(sign_up(client, "erin@example.com", first), 400, "signup_token_invalid")
    for garbage in ("", "x", "A" * 44, first[:-1]):
        assert_error(client.get("/v1/waitlist/validate/",
                                query_string={"email": "dave@example.com", "signup_token": garbage}),
                     400, "signup_token_invalid")
    second = approve(store, settings, "dave@example.com")  # re-sent: the first link dies
    assert_error(client.get("/v1/waitlist/validate/", query_string={"email": "dave@example.com", "signup_token": first}),
                 400, "signup_token_invalid")
    assert_error(sign_up(client, "dave@example.com", first), 400, "signup_token_invalid")
    assert sign_up(client, "dave@example.com", second).status_code == 201
    assert_error(client.get("/v1/waitlist/validate/", query_string={"email": "dave@example.com"}),
                 400, "validation_error", field="signup_token")


def test_rejection_kills_an_issued_link(client, store, settings):
    token = request_and_approve(client, store, settings, "frank@example.com")
    with store.session() as db:
        waitlist.reject(db, "frank@example.com", decided_by="operator")
    assert_error(client.get("/v1/waitlist/validate/", query_string={"email": "frank@example.com", "signup_token": token}),
                 400, "signup_token_invalid")
    assert_error(sign_up(client, "frank@example.com", token), 400, "signup_token_invalid")
    with store.session() as db:
        assert db.scalar(select(func.count()).select_from(User)) == 0


def test_signup_rejects_weak_passwords_without_spending_the_link(client, store, settings):
    token = request_and_approve(client, store, settings, "grace@example.com")
    for weak in ("password1", "PASSWORD", "12345678", "short", "s" * 129):
        assert_error(sign_up(client, "grace@example.com", token, password=weak), 400, "weak_password",
                     field="password")
    # The local part of the address is refused too (9 characters, so only the "common" rule applies).
    token2 = request_and_approve(client, store, settings, "henrietta@example.com")
    assert_error(sign_up(client, "henrietta@example.com", token2, password="Henrietta"), 400, "weak_password",
                 field="password")
    with store.session() as db:
        assert db.scalar(select(func.count()).select_from(User)) == 0
        assert db.scalar(select(func.count()).select_from(SignupToken)
                         .where(SignupToken.redeemed_at.is_not(None))) == 0
    assert_error(sign_up(client, "grace@example.com", token, name="Grace\r\nBcc: x@example.com"), 400,
                 "validation_error", field="name")
    assert_error(sign_up(client, "grace@example.com", token, admin=True), 400, "validation_error", field="admin")
    assert sign_up(client, "grace@example.com", token).status_code == 201


def test_signup_tokens_are_stored_only_as_hashes(client, store, settings):
    token = request_and_approve(client, store, settings, "heidi@example.com")
    # The applicant's queued e-mail must carry the link; nothing else in the store may.
    assert where_stored(store, token) == {("system_mail", "raw")}
    assert ("signup_tokens", "token_hash") in where_stored(store, digest(token))
    assert sign_up(client, "heidi@example.com", token).status_code == 201
    assert where_stored(store, token) == {("system_mail", "raw")}
    assert where_stored(store, STRONG) == set()  # nor the password, only its argon2id hash
    with store.session() as db:
        assert db.scalar(select(User.password_hash)).startswith("$argon2id$")


def test_session_tokens_are_stored_only_as_hashes(client, world, store):
    owner = world.owner()
    first = log_in(client, owner.email).get_json()
    refreshed = client.post("/auth/refresh/", json={"refresh_token": first["refresh_token"]}).get_json()
    for raw in (owner.access_token, owner.refresh_token, first["access_token"], first["refresh_token"],
                refreshed["access_token"]):
        assert where_stored(store, raw) == set(), raw
    assert ("user_sessions", "access_hash") in where_stored(store, digest(refreshed["access_token"]))
    assert ("user_sessions", "refresh_hash") in where_stored(store, digest(first["refresh_token"]))


# --- login, refresh, logout, change-password -----------------------------------------------
def test_login_answers_session_tokens(client, world, settings):
    owner = world.owner()
    resp = log_in(client, owner.email.upper())
    assert resp.status_code == 200
    body = resp.get_json()
    assert set(body) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert body["token_type"] == "Bearer" and body["expires_in"] == settings.access_token_ttl
    assert body["access_token"] != body["refresh_token"]
    me = client.get("/v1/users/me/", headers=bearer(body["access_token"]))
    assert me.status_code == 200 and me.get_json()["user_id"] == owner.user_id


def test_wrong_email_and_wrong_password_look_the_same(client, world):
    owner = world.owner()
    wrong_password = log_in(client, owner.email, "not the right password")
    wrong_email = log_in(client, "nobody@example.com", PASSWORD)
    malformed_email = log_in(client, "nobody", PASSWORD)
    err = assert_error(wrong_password, 401, "unauthenticated")
    assert_error(wrong_email, 401, "unauthenticated")
    assert_error(malformed_email, 401, "unauthenticated")
    assert "field" not in err
    assert without_request_id(wrong_password) == without_request_id(wrong_email) == without_request_id(malformed_email)
    assert wrong_password.headers.get("WWW-Authenticate") == wrong_email.headers.get("WWW-Authenticate")


def test_twenty_failed_logins_from_one_ip_then_429(make_app, make_settings, world):
    app = make_app(make_settings(login_failures_ip=20))
    client = app.test_client()
    owner = world.owner()
    wait_for_fresh_login_window()
    for i in range(20):  # a different account each time: the per-IP limit, not the per-account one
        assert_error(log_in(client, f"guess{i}@example.com", "wrong password"), 401, "unauthenticated")
    resp = log_in(client, owner.email)  # even the right password is refused now
    err = assert_error(resp, 429, "rate_limited")
    assert "X-RateLimit-Limit" in resp.headers
    retry_after = int(resp.headers["Retry-After"])
    assert 1 <= retry_after <= 900
    assert err["fix"] and str(retry_after) in err["fix"]
    # Another client address is not affected.
    other = log_in(client, owner.email, environ_base={"REMOTE_ADDR": "192.0.2.7"})
    assert other.status_code == 200


def test_failed_logins_per_account_are_throttled_across_ips(make_app, make_settings, world):
    app = make_app(make_settings(login_failures_account=3))
    client = app.test_client()
    owner = world.owner()
    wait_for_fresh_login_window()
    for i in range(3):
        assert log_in(client, owner.email, "wrong password",
                      environ_base={"REMOTE_ADDR": f"192.0.2.{i + 1}"}).status_code == 401
    resp = log_in(client, owner.email, environ_base={"REMOTE_ADDR": "192.0.2.50"})
    assert_error(resp, 429, "rate_limited")
    assert int(resp.headers["Retry-After"]) >= 1


def test_failed_logins_per_account_count_every_spelling_of_the_address(make_app, make_settings, world):
    app = make_app(make_settings(login_failures_account=3))
    client = app.test_client()
    world.owner("zoe@bücher.example")
    wait_for_fresh_login_window()
    for i, spelling in enumerate(("zoe@bücher.example", "ZOE@xn--bcher-kva.example", "Zoe@BÜCHER.example")):
        assert_error(log_in(client, spelling, "wrong password", environ_base={"REMOTE_ADDR": f"192.0.2.{i + 1}"}),
                     401, "unauthenticated")
    resp = log_in(client, "zoe@xn--bcher-kva.example", environ_base={"REMOTE_ADDR": "192.0.2.60"})
    assert_error(resp, 429, "rate_limited")


def test_session_tokens_are_not_stored_even_with_an_idempotency_key(client, world, store):
    owner = world.owner()
    login = log_in(client, owner.email, headers={"Idempotency-Key": "login-1"}).get_json()
    refreshed = client.post("/auth/refresh/", json={"refresh_token": owner.refresh_token},
                            headers={"Idempotency-Key": "refresh-1"}).get_json()
    for raw in (login["access_token"], login["refresh_token"], refreshed["access_token"]):
        assert where_stored(store, raw) == set()


def test_logout_revokes_the_session_on_the_next_call(client, world):
    owner = world.owner()
    other = world.login(owner.email)
    resp = client.post("/auth/logout/", headers=owner.auth)
    assert resp.status_code == 204 and resp.get_data() == b""
    assert_error(client.get("/v1/users/me/", headers=owner.auth), 401, "token_revoked")
    assert_error(client.post("/auth/logout/", headers=owner.auth), 401, "token_revoked")
    assert_error(client.post("/auth/refresh/", json={"refresh_token": owner.refresh_token}), 401, "token_revoked")
    # Only that session ended.
    assert client.get("/v1/users/me/", headers=other.auth).status_code == 200


def test_logout_needs_a_session_token(client, world):
    owner = world.owner()
    agent = world.agent(owner, world.inbox(owner), ["email:read"])
    assert_error(client.post("/auth/logout/"), 401, "unauthenticated")
    assert_error(client.post("/auth/logout/", headers=agent.auth), 403, "session_required")
    assert_error(client.post("/auth/logout/", headers=bearer("gsa_" + "x" * 44)), 401, "unauthenticated")
    assert client.get("/v1/users/me/", headers=agent.auth).status_code == 200


def test_refresh_gives_a_new_access_token_and_the_old_one_stops(client, world, settings):
    owner = world.owner()
    resp = client.post("/auth/refresh/", json={"refresh_token": owner.refresh_token})
    assert resp.status_code == 200
    body = resp.get_json()
    assert set(body) == {"access_token", "refresh_token", "expires_in"}
    assert body["expires_in"] == settings.access_token_ttl and body["access_token"] != owner.access_token
    me = client.get("/v1/users/me/", headers=bearer(body["access_token"]))
    assert me.status_code == 200 and me.get_json()["user_id"] == owner.user_id
    assert_error(client.get("/v1/users/me/", headers=owner.auth), 401, "unauthenticated")
    # The new refresh token gives the next pair (the one sent is used up: issue 14, rotation).
    again = client.post("/auth/refresh/", json={"refresh_token": body["refresh_token"]})
    assert again.status_code == 200
    assert_error(client.get("/v1/users/me/", headers=bearer(body["access_token"])), 401, "unauthenticated")


def test_refresh_rejects_unknown_and_misused_tokens(client, world):
    owner = world.owner()
    for bad in ("gsr_" + "A" * 44, owner.access_token, ""):
        assert_error(client.post("/auth/refresh/", json={"refresh_token": bad}), 401, "token_revoked")
    assert_error(client.get("/v1/users/me/", headers=bearer(owner.refresh_token)), 401, "unauthenticated")
    assert_error(client.post("/auth/refresh/", json={}), 400, "validation_error", field="refresh_token")


def test_access_and_refresh_tokens_expire(client, world, settings):
    owner = world.owner()
    clock.advance(dt.timedelta(seconds=settings.access_token_ttl + 1))
    assert_error(client.get("/v1/users/me/", headers=owner.auth), 401, "token_expired")
    fresh = client.post("/auth/refresh/", json={"refresh_token": owner.refresh_token})
    assert fresh.status_code == 200
    assert client.get("/v1/users/me/", headers=bearer(fresh.get_json()["access_token"])).status_code == 200
    clock.advance(dt.timedelta(seconds=settings.refresh_token_ttl))
    assert_error(client.post("/auth/refresh/", json={"refresh_token": owner.refresh_token}), 401, "token_expired")


def test_change_password_revokes_other_sessions_only(client, world, store):
    owner = world.owner()
    other = world.login(owner.email)
    resp = client.post("/auth/change-password/", headers=owner.auth,
                       json={"current_password": PASSWORD, "new_password": STRONG})
    assert resp.status_code == 204 and resp.get_data() == b""
    assert client.get("/v1/users/me/", headers=owner.auth).status_code == 200
    assert client.post("/auth/refresh/", json={"refresh_token": owner.refresh_token}).status_code == 200
    assert_error(client.get("/v1/users/me/", headers=other.auth), 401, "token_revoked")
    assert_error(client.post("/auth/refresh/", json={"refresh_token": other.refresh_token}), 401, "token_revoked")
    assert_error(log_in(client, owner.email, PASSWORD), 401, "unauthenticated")
    assert log_in(client, owner.email, STRONG).status_code == 200
    with store.session() as db:
        live = db.scalar(select(func.count()).select_from(UserSession)
                         .where(UserSession.user_id == owner.user_id, UserSession.revoked_at.is_(None)))
    assert live == 2  # the one that changed it and the new login


def test_change_password_refuses_wrong_current_and_weak_new(client, world):
    owner = world.owner()
    other = world.login(owner.email)
    assert_error(client.post("/auth/change-password/", headers=owner.auth,
                             json={"current_password": "not it at all", "new_password": STRONG}),
                 400, "validation_error", field="current_password")
    for weak in ("password", "qwertyuiop", "1234567", "x" * 129):
        assert_error(client.post("/auth/change-password/", headers=owner.auth,
                                 json={"current_password": PASSWORD, "new_password": weak}),
                     400, "weak_password", field="new_password")
    # Nothing changed: the old password works and no session was ended.
    assert client.get("/v1/users/me/", headers=other.auth).status_code == 200
    assert log_in(client, owner.email, PASSWORD).status_code == 200


def test_passwords_of_8_to_128_characters_are_accepted(client, world):
    owner = world.owner()
    current = PASSWORD
    for new in ("Vq7#kP2z", "Vq7#kP2z" * 16):
        assert len(new) in (8, 128)
        resp = client.post("/auth/change-password/", headers=owner.auth,
                           json={"current_password": current, "new_password": new})
        assert resp.status_code == 204, resp.get_data(as_text=True)
        current = new
    assert log_in(client, owner.email, current).status_code == 200


def test_change_password_needs_a_session_token(client, world):
    owner = world.owner()
    agent = world.agent(owner, world.inbox(owner), ["email:read"])
    body = {"current_password": PASSWORD, "new_password": STRONG}
    assert_error(client.post("/auth/change-password/", json=body), 401, "unauthenticated")
    assert_error(client.post("/auth/change-password/", json=body, headers=agent.auth), 403, "session_required")
    assert log_in(client, owner.email, PASSWORD).status_code == 200


# --- GET /v1/users/me/ and next_step --------------------------------------------------------
def _add_domain(store, tenant_id: str, name: str, status: str = "pending") -> str:
    with store.session() as db:
        domain = Domain(id=new_id("dom"), tenant_id=tenant_id, name=name, status=status,
                        created_at=utcnow(), verification_token="t",
                        verified_at=utcnow() if status == "verified" else None)
        db.add(domain)
    return domain.id


def _verify_domain(store, domain_id: str) -> None:
    with store.session() as db:
        domain = db.get(Domain, domain_id)
        domain.status, domain.verified_at = "verified", utcnow()


def _add_inbox(store, tenant_id: str, domain_id: str, address: str) -> str:
    with store.session() as db:
        inbox = Inbox(id=new_id("inb"), tenant_id=tenant_id, domain_id=domain_id, address=address,
                      display_name="Agent", created_at=utcnow())
        db.add(inbox)
    return inbox.id


def _add_message(store, tenant_id: str, inbox_id: str, direction: str, is_read: bool = False) -> str:
    with store.session() as db:
        message = Message(id=new_id("msg"), tenant_id=tenant_id, inbox_id=inbox_id, thread_id=new_id("thr"),
                          direction=direction, status="received" if direction == "inbound" else "queued",
                          subject="Hello", is_read=is_read, created_at=utcnow())
        db.add(message)
    return message.id


def _mark_read(store, message_id: str) -> None:
    with store.session() as db:
        db.get(Message, message_id).is_read = True


def _step(client, auth: dict) -> dict | None:
    resp = client.get("/v1/users/me/", headers=auth)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    body = resp.get_json()
    assert "next_step" in body
    step = body["next_step"]
    if step is not None:
        assert set(step) == {"code", "method", "path", "message"}
        assert isinstance(step["message"], str) and step["message"]
    return step


def _code(step: dict | None) -> tuple | None:
    return None if step is None else (step["code"], step["method"], step["path"])


def test_me_with_a_session_token_describes_the_user(client, world):
    owner = world.owner("ivan@example.com")
    resp = client.get("/v1/users/me/", headers=owner.auth)
    assert resp.status_code == 200
    body = resp.get_json()
    assert {"user_id", "email", "name", "role", "created_at", "next_step"} <= set(body)
    assert body["user_id"] == owner.user_id and body["email"] == "ivan@example.com"
    assert body["name"] == "Owner" and body["role"] == "owner"
    assert dt.datetime.fromisoformat(body["created_at"].replace("Z", "+00:00")).tzinfo is not None
    assert "token_id" not in body or body["token_id"] is None
    assert_error(client.get("/v1/users/me/"), 401, "unauthenticated")
    assert_error(client.get("/v1/users/me/", headers={"Authorization": "Basic abc"}), 401, "unauthenticated")
    assert_error(client.get("/v1/users/me/", headers=bearer("gent_" + "A" * 44)), 401, "unauthenticated")


def test_next_step_follows_the_store_for_an_owner(client, world, store):
    owner = world.owner()
    bystander = world.owner()
    assert _code(_step(client, owner.auth)) == ("add_domain", "POST", "/v1/domains/")

    domain_id = _add_domain(store, owner.tenant_id, "steps.example.com")
    assert _code(_step(client, owner.auth)) == ("verify_domain", "POST", "/v1/domains/steps.example.com/verify/")
    assert "steps.example.com" in _step(client, owner.auth)["message"]

    _verify_domain(store, domain_id)
    assert _code(_step(client, owner.auth)) == ("create_inbox", "POST", "/v1/inboxes/")

    inbox_id = _add_inbox(store, owner.tenant_id, domain_id, "agent@steps.example.com")
    assert _code(_step(client, owner.auth)) == ("create_token", "POST", "/v1/tokens/")

    resp = client.post("/v1/tokens/", headers=owner.auth,
                       json={"inbox_id": inbox_id, "label": "bot", "scopes": ["email:send", "email:read"]})
    assert resp.status_code == 201
    assert _code(_step(client, owner.auth)) == ("send_first_message", "POST", "/v1/messages/")

    _add_message(store, owner.tenant_id, inbox_id, "outbound")
    assert _code(_step(client, owner.auth)) == ("read_inbox", "GET", "/v1/messages/")

    unread = _add_message(store, owner.tenant_id, inbox_id, "inbound")
    assert _code(_step(client, owner.auth)) == ("read_inbox", "GET", "/v1/messages/")

    _mark_read(store, unread)
    assert _step(client, owner.auth) is None

    # Another tenant's progress is not ours, and ours is not theirs.
    assert _code(_step(client, bystander.auth)) == ("add_domain", "POST", "/v1/domains/")


def test_next_step_asks_to_verify_while_no_domain_is_verified(client, world, store):
    owner = world.owner()
    other = world.owner()
    _add_domain(store, other.tenant_id, "theirs.example.com", status="verified")
    _add_domain(store, owner.tenant_id, "first.example.com")
    _add_domain(store, owner.tenant_id, "second.example.com")
    assert _step(client, owner.auth)["code"] == "verify_domain"


def test_next_step_of_an_agent_token_is_limited_by_its_scopes(client, world, store):
    owner = world.owner()
    inbox_id = world.inbox(owner)
    other_inbox = world.inbox(owner)
    both = world.agent(owner, inbox_id, ["email:read", "email:send"])
    reader = world.agent(owner, inbox_id, ["email:read"])
    sender = world.agent(owner, inbox_id, ["email:send"])
    neither = world.agent(owner, inbox_id, ["labels:read", "contacts:write"])

    body = client.get("/v1/users/me/", headers=both.auth).get_json()
    assert body["token_id"] == both.token_id and body["inbox_id"] == inbox_id
    assert body["address"].endswith(".example.com") and body["address"].startswith("agent")
    assert sorted(body["scopes"]) == ["email:read", "email:send"] and body["requires_approval"] == []
    assert "user_id" not in body and "email" not in body and "role" not in body

    assert _code(_step(client, both.auth)) == ("send_first_message", "POST", "/v1/messages/")
    assert _code(_step(client, reader.auth)) == ("read_inbox", "GET", "/v1/messages/")
    assert _code(_step(client, sender.auth)) == ("send_first_message", "POST", "/v1/messages/")
    assert _step(client, neither.auth) is None

    # Messages of another inbox do not count for this token.
    _add_message(store, owner.tenant_id, other_inbox, "outbound")
    _add_message(store, owner.tenant_id, other_inbox, "inbound", is_read=True)
    assert _code(_step(client, both.auth)) == ("send_first_message", "POST", "/v1/messages/")
    assert _code(_step(client, reader.auth)) == ("read_inbox", "GET", "/v1/messages/")

    _add_message(store, owner.tenant_id, inbox_id, "outbound")
    assert _code(_step(client, both.auth)) == ("read_inbox", "GET", "/v1/messages/")
    assert _step(client, sender.auth) is None
    assert _code(_step(client, reader.auth)) == ("read_inbox", "GET", "/v1/messages/")

    _add_message(store, owner.tenant_id, inbox_id, "inbound", is_read=True)
    assert _step(client, both.auth) is None
    assert _step(client, reader.auth) is None
    assert _step(client, owner.auth) is None
