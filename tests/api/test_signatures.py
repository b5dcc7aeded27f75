"""Issue 27, point 2: the inbox's signature, appended by the one send path (compose) to the text
part and to the HTML part of mail sent through the API, once per message, and not again when a
reply's quoted text already holds it. Read back from the stored raw bytes with `email`."""
from __future__ import annotations

from email import message_from_bytes, policy

import pytest

from tests.api.test_send import Mailbox, receiving_box, sending_box

SIG_TEXT = "Ann Example\nSales, Alpha Ltd"
SIG_HTML = "<p><b>Ann Example</b><br>Sales, Alpha Ltd</p><script>alert(1)</script>"


@pytest.fixture
def alice(world) -> Mailbox:
    box = sending_box(world, world.owner(), "sales@alpha.test")
    return box


@pytest.fixture
def bob(world) -> Mailbox:
    return receiving_box(world, world.owner(), "bob@beta.test")


def _sign(client, box: Mailbox, **values) -> None:
    resp = client.patch(f"/v1/inboxes/{box.inbox_id}/settings/", headers=box.owner.auth, json=values)
    assert resp.status_code == 200, resp.json


def _send(client, box: Mailbox, **body) -> str:
    resp = client.post("/v1/messages/", headers=box.auth, json=body)
    assert resp.status_code == 201, resp.json
    return resp.json["message_id"]


def _parts(client, box: Mailbox, message_id: str) -> tuple[str, str | None]:
    raw = client.get(f"/v1/messages/{message_id}/raw/", headers=box.auth).data
    mail = message_from_bytes(raw, policy=policy.default)
    text = mail.get_body(("plain",)).get_content().replace("\r\n", "\n")
    html = mail.get_body(("html",))
    return text, html.get_content().replace("\r\n", "\n") if html is not None else None


def test_a_sent_message_carries_the_signature_once_in_each_part(client, alice, bob) -> None:
    _sign(client, alice, signature_text=SIG_TEXT, signature_html=SIG_HTML)
    message_id = _send(client, alice, to=[{"email": bob.address}], subject="Offer",
                       text_body="Here is our offer.", html_body="<html><body><p>Here is our offer.</p></body></html>")
    text, html = _parts(client, alice, message_id)
    assert text.count("Ann Example") == 1 and text.rstrip().endswith("-- \nAnn Example\nSales, Alpha Ltd")
    assert html.count("Ann Example") == 1 and "<script" not in html
    assert html.index("Ann Example") < html.index("</body>")  # inside the document, not after it


def test_each_part_gets_the_one_signature_that_is_set(client, alice, bob) -> None:
    _sign(client, alice, signature_text=SIG_TEXT)
    text, html = _parts(client, alice, _send(client, alice, to=[{"email": bob.address}], subject="HTML only",
                                             html_body="<p>Only <i>HTML</i> here.</p>"))
    assert text.count("Ann Example") == 1 and html.count("Ann Example") == 1
    assert "-- \nAnn Example" in text


def test_a_reply_quoting_the_signature_carries_it_once(client, alice, bob) -> None:
    _sign(client, alice, signature_text=SIG_TEXT, signature_html=SIG_HTML)
    first = _send(client, alice, to=[{"email": bob.address}], subject="Offer", text_body="Here is our offer.",
                  html_body="<p>Here is our offer.</p>")
    first_text, first_html = _parts(client, alice, first)
    quoted = "\n".join(f"> {line}" if line else ">" for line in first_text.splitlines())
    reply = _send(client, alice, reply_to_message_id=first,
                  text_body=f"Any news?\n\nOn Monday, Ann wrote:\n{quoted}\n",
                  html_body=f"<p>Any news?</p><blockquote>{first_html}</blockquote>")
    text, html = _parts(client, alice, reply)
    assert text.count("Ann Example") == 1 and "> -- \n> Ann Example" in text
    assert html.count("Ann Example") == 1
    # a reply that does not quote it gets it, once
    fresh_text, fresh_html = _parts(client, alice, _send(client, alice, reply_to_message_id=first,
                                                         text_body="Any news?"))
    assert fresh_text.count("Ann Example") == 1 and fresh_html is None


def test_no_signature_set_leaves_the_message_as_written(client, alice, bob) -> None:
    text, html = _parts(client, alice, _send(client, alice, to=[{"email": bob.address}], subject="Plain",
                                             text_body="Just this."))
    assert text.strip() == "Just this." and html is None
