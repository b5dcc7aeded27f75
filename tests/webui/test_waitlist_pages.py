"""The public waitlist form, the operators' waitlist page and the sign-up page of the emailed link."""
from __future__ import annotations

import datetime as dt
import email
import email.policy
import re
from urllib.parse import parse_qs, urlparse

from sqlalchemy import select

from appliance import clock
from appliance.models import SystemMail, User, WaitlistEntry
from tests.webui.conftest import text_of
from tests.world import PASSWORD

STRONG = "a long and unusual passphrase"


def _entries(store) -> dict[str, str]:
    with store.session() as db:
        return {e.email: e.status for e in db.scalars(select(WaitlistEntry))}


def _signup_links(store, address: str) -> list[str]:
    """The sign-up links mailed to address, oldest first, read from the outbound system mail."""
    with store.session() as db:
        mails = db.scalars(select(SystemMail).where(SystemMail.rcpt_to == address,
                                                    SystemMail.kind == "signup_link")
                           .order_by(SystemMail.created_at)).all()
    links = []
    for mail in mails:
        body = email.message_from_bytes(mail.raw, policy=email.policy.default).get_body().get_content()
        links.append(re.search(r"(http\S+/signup/\?\S+)", body).group(1))
    return links


def test_the_request_form_answers_the_same_for_every_address(web, store):
    answers = []
    for address in ("new@example.com", "new@example.com", "NEW@example.com"):
        resp = web.post("/waitlist/", {"email": address})
        assert resp.status_code == 200
        answers.append(re.sub(r'value="[^"]+"', "", text_of(resp)))
    assert answers[0] == answers[1] == answers[2]
    assert _entries(store) == {"new@example.com": "pending"}
    resp = web.post("/waitlist/", {"email": "not an address"})
    assert resp.status_code == 400 and 'class="flash flash-error" role="alert"' in text_of(resp)


def test_the_request_form_shares_the_apis_rate_limit(make_settings, make_app):
    from tests.webui.conftest import WebClient
    app = make_app(make_settings(rate_limit_waitlist=2))
    web, api = WebClient(app.test_client()), app.test_client()
    assert web.post("/waitlist/", {"email": "a@example.com"}).status_code == 200
    assert api.post("/v1/waitlist/", json={"email": "b@example.com"}).status_code == 202
    resp = web.post("/waitlist/", {"email": "c@example.com"})
    assert resp.status_code == 429 and "Retry-After" in resp.headers


def test_operator_approves_one_or_many_and_the_links_are_queued(web, store, operator):
    for address in ("a@example.com", "b@example.com", "c@example.com"):
        web.post("/waitlist/", {"email": address})
    web.sign_in(operator)
    page = text_of(web.get("/admin/waitlist/"))
    assert all(a in page for a in ("a@example.com", "b@example.com", "c@example.com"))
    assert re.search(r'Pending <span class="count">3</span>', page)
    assert re.search(r'Waitlist <span class="badge"[^>]*>3</span>', page)  # the nav badge

    resp = web.post("/admin/waitlist/approve/", {"email": "a@example.com"}, follow_redirects=True)
    assert "Approved a@example.com" in text_of(resp)
    resp = web.client.post("/admin/waitlist/approve/", data={
        "csrf_token": web.csrf_token(), "email": ["b@example.com", "c@example.com"]}, follow_redirects=True)
    assert "Approved b@example.com, c@example.com" in text_of(resp)
    assert _entries(store) == dict.fromkeys(("a@example.com", "b@example.com", "c@example.com"), "approved")
    assert len(_signup_links(store, "b@example.com")) == 1
    assert "No pending requests." in text_of(web.get("/admin/waitlist/"))


def test_resend_replaces_the_link_and_reject_asks_first(web, store, operator, client):
    web.post("/waitlist/", {"email": "a@example.com"})
    web.sign_in(operator)
    web.post("/admin/waitlist/approve/", {"email": "a@example.com"})
    resp = web.post("/admin/waitlist/resend/", {"email": "a@example.com"}, follow_redirects=True)
    assert "Sent a new link to a@example.com" in text_of(resp)
    first, second = _signup_links(store, "a@example.com")
    assert web.get(urlparse(first)._replace(scheme="", netloc="").geturl()).status_code == 400
    assert web.get(urlparse(second)._replace(scheme="", netloc="").geturl()).status_code == 200

    resp = web.post("/admin/waitlist/reject/", {"email": "a@example.com"})
    assert resp.status_code == 200 and "Please confirm" in text_of(resp)
    assert _entries(store)["a@example.com"] == "approved"
    resp = web.post("/admin/waitlist/reject/", {"email": "a@example.com", "confirm": "yes"}, follow_redirects=True)
    assert "Rejected a@example.com." in text_of(resp)
    assert _entries(store)["a@example.com"] == "rejected"
    assert web.get(urlparse(second)._replace(scheme="", netloc="").geturl()).status_code == 400
    assert "a@example.com" in text_of(web.get("/admin/waitlist/?status=rejected"))


def test_unknown_addresses_and_redeemed_requests_flash_the_typed_error(web, world, operator):
    web.sign_in(operator)
    resp = web.post("/admin/waitlist/approve/", {"email": "nobody@example.com"}, follow_redirects=True)
    assert "nobody@example.com is not on the waitlist." in text_of(resp)
    owner = world.owner()
    resp = web.post("/admin/waitlist/resend/", {"email": owner.email}, follow_redirects=True)
    assert f"{owner.email} has already signed up." in text_of(resp)
    assert owner.email in text_of(web.get("/admin/waitlist/?status=redeemed"))
    assert web.get("/admin/waitlist/?status=bogus").status_code == 400


def _path(link: str) -> str:
    parsed = urlparse(link)
    return f"{parsed.path}?{parsed.query}"


def test_the_signup_page_validates_the_link_then_creates_the_account(web, world, store):
    raw = world.signup_link("ada@example.com")
    path = f"/signup/?email=ada%40example.com&signup_token={raw}"
    page = web.get(path)
    assert page.status_code == 200 and 'value="ada@example.com"' in text_of(page)
    form = {"email": "ada@example.com", "signup_token": raw, "name": "Ada"}
    resp = web.post("/signup/", {**form, "password": STRONG, "password_again": STRONG + "x"})
    assert resp.status_code == 400 and "The two passwords differ" in text_of(resp)
    resp = web.post("/signup/", {**form, "password": "password1", "password_again": "password1"})
    assert resp.status_code == 400 and "too common" in text_of(resp)
    resp = web.post("/signup/", {**form, "password": STRONG, "password_again": STRONG})
    assert resp.status_code == 200 and "The account ada@example.com is ready" in text_of(resp)
    with store.session() as db:
        user = db.scalar(select(User).where(User.email == "ada@example.com"))
        assert user.role == "owner" and user.name == "Ada"
    again = web.get(path)
    assert again.status_code == 400 and "This link was already used" in text_of(again)
    web.sign_in("ada@example.com", STRONG)


def test_the_signup_page_explains_bad_and_expired_links(web, world):
    raw = world.signup_link("bob@example.com")
    resp = web.get(f"/signup/?email=bob%40example.com&signup_token={raw}x")
    assert resp.status_code == 400 and "This link is not valid" in text_of(resp)
    resp = web.get(f"/signup/?email=eve%40example.com&signup_token={raw}")
    assert resp.status_code == 400 and "This link is not valid" in text_of(resp)
    resp = web.get("/signup/")
    assert resp.status_code == 400 and "This link is not valid" in text_of(resp)
    clock.advance(dt.timedelta(days=8))
    resp = web.get(f"/signup/?email=bob%40example.com&signup_token={raw}")
    assert resp.status_code == 400 and "This link has expired" in text_of(resp)
    resp = web.post("/signup/", {"email": "bob@example.com", "signup_token": raw, "password": STRONG,
                                 "password_again": STRONG})
    assert resp.status_code == 400 and "This link has expired" in text_of(resp)


def test_a_link_of_the_signup_mail_leads_through_the_page(web, world, operator, store):
    web.post("/waitlist/", {"email": "cy@example.com"})
    web.sign_in(operator)
    web.post("/admin/waitlist/approve/", {"email": "cy@example.com"})
    [link] = _signup_links(store, "cy@example.com")
    assert parse_qs(urlparse(link).query)["email"] == ["cy@example.com"]
    visitor = type(web)(web.client.application.test_client())
    assert visitor.get(_path(link)).status_code == 200
    token = parse_qs(urlparse(link).query)["signup_token"][0]
    resp = visitor.post("/signup/", {"email": "cy@example.com", "signup_token": token, "password": PASSWORD,
                                     "password_again": PASSWORD})
    assert resp.status_code == 200
