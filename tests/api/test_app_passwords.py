"""App passwords (issue 25 point 2): per inbox, shown once, stored as a digest, revocable, only
for people; and the mail-client sign-in they feed (IMAP and SMTP submission): app password,
the owner's own password without TOTP, or an agent token of that inbox; throttled failures."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pyotp
import pytest
from sqlalchemy import select

from appliance.errors import RateLimitedError, UnauthorizedError
from appliance.models import AppPassword, AuditEntry, Event
from appliance.security import digest
from appliance.services.identity import app_passwords, totp
from appliance.services.identity.auth import authenticate
from tests.helpers import assert_error
from tests.world import PASSWORD


def _address(store, inbox_id: str) -> str:  # noqa: ANN001
    from appliance.models import Inbox
    with store.session() as db:
        return db.get(Inbox, inbox_id).address


def _sign_in(store, settings, username: str, password: str, ip: str = "192.0.2.7"):  # noqa: ANN001, ANN202
    with store.session() as db, store.counter_sessions() as counters:
        try:
            login = app_passwords.authenticate(db, counters, settings, username, password, ip)
            db.commit()
            return login
        finally:
            counters.commit()


def test_an_app_password_is_shown_once_stored_as_a_digest_listed_and_revoked(client, world, store, settings):
    owner = world.owner()
    inbox_id = world.inbox(owner)
    resp = client.post("/v1/app-passwords/", json={"inbox_id": inbox_id, "label": "Thunderbird"}, headers=owner.auth)
    assert resp.status_code == 201, resp.get_data(as_text=True)
    body = resp.get_json()
    raw = body["password"]
    assert raw.startswith("gapp_") and body["inbox_id"] == inbox_id and body["label"] == "Thunderbird"
    with store.session() as db:
        row = db.get(AppPassword, body["app_password_id"])
        assert row.secret_hash == digest(raw) and raw not in repr(row.__dict__)
        assert db.scalar(select(Event.type).where(Event.resource_id == row.id)) == "app_password.created"
        entry = db.scalars(select(AuditEntry).where(AuditEntry.resource_id == row.id)).one()
        assert entry.action == "app_passwords.create_app_password" and raw not in str(entry.pii)
    listed = client.get("/v1/app-passwords/", headers=owner.auth).get_json()["results"]
    assert [p["app_password_id"] for p in listed] == [body["app_password_id"]]
    assert "password" not in listed[0] or listed[0]["password"] is None
    login = _sign_in(store, settings, _address(store, inbox_id).upper(), raw)
    assert (login.via, login.principal.kind, login.inbox.id) == ("app_password", "user", inbox_id)
    assert client.delete(f"/v1/app-passwords/{body['app_password_id']}/", headers=owner.auth).status_code == 204
    with pytest.raises(UnauthorizedError):
        _sign_in(store, settings, _address(store, inbox_id), raw)
    assert client.get("/v1/app-passwords/", headers=owner.auth).get_json()["results"] == []
    assert_error(client.delete(f"/v1/app-passwords/{body['app_password_id']}/", headers=owner.auth), 404, "not_found")


def test_app_passwords_are_for_people_their_own_inboxes_and_their_own_tenant(client, world, store, settings):
    owner, other = world.owner(), world.owner()
    inbox_id, foreign = world.inbox(owner), world.inbox(other)
    agent = world.agent(owner, inbox_id, ["email:read"])
    assert_error(client.post("/v1/app-passwords/", json={"inbox_id": inbox_id}, headers=agent.auth), 403, "session_required")
    assert_error(client.post("/v1/app-passwords/", json={"inbox_id": foreign}, headers=owner.auth), 404, "not_found")
    member = world.member(owner)  # granted no inbox
    assert_error(client.post("/v1/app-passwords/", json={"inbox_id": inbox_id}, headers=member.auth), 404, "not_found")
    made = client.post("/v1/app-passwords/", json={"inbox_id": inbox_id}, headers=owner.auth).get_json()
    # Another tenant cannot see or revoke it; neither can the member of the same tenant.
    assert_error(client.delete(f"/v1/app-passwords/{made['app_password_id']}/", headers=other.auth), 404, "not_found")
    assert_error(client.delete(f"/v1/app-passwords/{made['app_password_id']}/", headers=member.auth), 404, "not_found")
    assert client.get("/v1/app-passwords/", headers=other.auth).get_json()["results"] == []
    # An app password opens only its own inbox.
    with pytest.raises(UnauthorizedError):
        _sign_in(store, settings, _address(store, foreign), made["password"])
    assert_error(client.post("/v1/app-passwords/", json={"inbox_id": inbox_id, "label": "a\x00b"},
                             headers=owner.auth), 400, "validation_error")


def test_the_owner_password_signs_in_without_totp_only(world, store, settings):
    owner = world.owner()
    inbox_id = world.inbox(owner)
    address = _address(store, inbox_id)
    login = _sign_in(store, settings, address, PASSWORD)
    assert (login.via, login.principal.user.id) == ("password", owner.user_id)
    with pytest.raises(UnauthorizedError):
        _sign_in(store, settings, address, PASSWORD + "x")
    with pytest.raises(UnauthorizedError):
        _sign_in(store, settings, "nobody@nowhere.test", PASSWORD)
    from appliance.models import User
    with store.session() as db, store.counter_sessions() as counters:
        user = db.get(User, owner.user_id)
        uri = totp.begin_enrolment(db, settings, user)
        totp.confirm_enrolment(db, counters, settings, user, pyotp.parse_uri(uri).now(), None)
        db.commit()
        counters.commit()
    with pytest.raises(UnauthorizedError):  # a second factor: the password alone no longer opens mail
        _sign_in(store, settings, address, PASSWORD)


def test_an_agent_token_signs_in_to_its_own_inbox_as_itself(world, store, settings):
    owner = world.owner()
    inbox_id, other_inbox = world.inbox(owner), world.inbox(owner)
    agent = world.agent(owner, inbox_id, ["email:send"], requires_approval=["email:send"])
    login = _sign_in(store, settings, _address(store, inbox_id), agent.raw)
    assert (login.via, login.principal.kind, login.credential_id) == ("token", "agent", agent.token_id)
    assert login.principal.requires_approval == ("email:send",)
    with pytest.raises(UnauthorizedError):
        _sign_in(store, settings, _address(store, other_inbox), agent.raw)


def test_failed_mail_sign_ins_are_throttled_per_account(world, store, settings):
    owner = world.owner()
    address = _address(store, world.inbox(owner))
    for _ in range(settings.login_failures_account):
        with pytest.raises(UnauthorizedError):
            _sign_in(store, settings, address, "wrong password")
    with pytest.raises(RateLimitedError):  # even the right password waits now
        _sign_in(store, settings, address, PASSWORD)


def test_guessing_app_passwords_is_limited_per_ip_and_parallel_clients_never_wait(client, world, store, settings):
    owner = world.owner()
    inbox_id = world.inbox(owner)
    address = _address(store, inbox_id)
    raw = client.post("/v1/app-passwords/", json={"inbox_id": inbox_id}, headers=owner.auth).get_json()["password"]
    # A mail client opens several connections at once: more than the account's free failures.
    with ThreadPoolExecutor(settings.login_failures_account * 2) as pool:
        logins = list(pool.map(lambda _: _sign_in(store, settings, address, raw),
                                range(settings.login_failures_account * 2)))
    assert {login.via for login in logins} == {"app_password"}
    for _ in range(settings.login_failures_ip):
        with pytest.raises(UnauthorizedError):
            _sign_in(store, settings, address, "gapp_" + "x" * 44, ip="198.51.100.4")
    with pytest.raises(RateLimitedError):  # that address guessed too often: even the right one waits
        _sign_in(store, settings, address, raw, ip="198.51.100.4")
    assert _sign_in(store, settings, address, raw).via == "app_password"  # another address is not held up
