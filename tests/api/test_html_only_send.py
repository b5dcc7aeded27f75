"""Issue 14.10 (third bullet): an HTML-only send goes out as multipart/alternative with a readable
text/plain part first, made from the sanitised HTML (rspamd scores MIME_HTML_ONLY otherwise).

Sent through the real Flask app; the stored bytes (what the worker sends) are read back through
GET .../raw/ and parsed with the standard library's `email` package.
"""
from __future__ import annotations

from email import message_from_bytes, policy

HTML = ("<html><head><title>Internal title</title><style>p { color: red }</style></head><body>"
        "<h1>Quarterly numbers</h1>"
        '<p>Numbers are <b>up</b>, see <a href="https://example.org/report?q=1&amp;y=2" onclick="steal()">'
        "the report</a>.</p>"
        "<script>alert('owned')</script>"
        "<ul><li>Revenue</li><li>Margin</li></ul>"
        '<p>Questions: <a href="mailto:ann@example.org">ann@example.org</a> or '
        '<a href="javascript:alert(1)">this</a>.</p><img src="x" onerror="alert(2)"></body></html>')


def test_an_html_only_send_carries_a_readable_text_alternative_first(world, client) -> None:
    owner = world.owner()
    agent = world.sender(owner, "agent@html-only.example")
    resp = client.post("/v1/messages/", headers=agent.auth, json={
        "to": [{"email": "bob@partner.example"}], "subject": "Numbers", "html_body": HTML})
    assert resp.status_code == 201, resp.get_data(as_text=True)
    raw = client.get(f"/v1/messages/{resp.json['message_id']}/raw/", headers=agent.auth).data
    msg = message_from_bytes(raw, policy=policy.default)
    assert msg.get_content_type() == "multipart/alternative"
    text_part, html_part = msg.get_payload()
    assert (text_part.get_content_type(), html_part.get_content_type()) == ("text/plain", "text/html")
    assert html_part.get_content().rstrip() == HTML  # the HTML itself goes out as written
    text = text_part.get_content()
    lines = [line for line in text.splitlines() if line]
    assert lines == ["Quarterly numbers", "Numbers are up, see the report (https://example.org/report?q=1&y=2).",
                     "Revenue", "Margin", "Questions: ann@example.org or this."]
    for leftover in ("<", ">", "owned", "color", "alert", "Internal title", "javascript", "steal"):
        assert leftover not in text, (leftover, text)


def test_a_text_and_html_send_keeps_the_agents_own_text(world, client) -> None:
    owner = world.owner()
    agent = world.sender(owner, "agent@html-and-text.example")
    resp = client.post("/v1/messages/", headers=agent.auth, json={
        "to": [{"email": "bob@partner.example"}], "subject": "Numbers", "text_body": "My own words.\n",
        "html_body": HTML})
    assert resp.status_code == 201, resp.get_data(as_text=True)
    raw = client.get(f"/v1/messages/{resp.json['message_id']}/raw/", headers=agent.auth).data
    text_part, _ = message_from_bytes(raw, policy=policy.default).get_payload()
    assert text_part.get_content().rstrip() == "My own words."
