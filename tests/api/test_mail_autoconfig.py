"""Mail clients configure themselves (issue 25 point 5): Thunderbird's autoconfig file and Outlook's
autodiscover answer name the appliance's IMAP and submission servers, read by real XML parsers."""
from __future__ import annotations

import xml.etree.ElementTree as ET

from tests.helpers import assert_error

MS = {"a": "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"}


def test_thunderbird_autoconfig_names_imap_and_submission_with_tls(client, settings) -> None:
    resp = client.get("/.well-known/autoconfig/mail/config-v1.1.xml",
                      query_string={"emailaddress": "ana@acme.example"})
    assert resp.status_code == 200 and resp.mimetype == "application/xml"
    root = ET.fromstring(resp.data)
    provider = root.find("emailProvider")
    assert provider.findtext("domain") == "acme.example"
    servers = [(s.tag, s.get("type"), int(s.findtext("port")), s.findtext("socketType"), s.findtext("hostname"),
                s.findtext("username")) for s in provider if s.tag.endswith("Server")]
    host = settings.hostname
    assert servers == [
        ("incomingServer", "imap", settings.imaps_port, "SSL", host, "%EMAILADDRESS%"),
        ("incomingServer", "imap", settings.imap_port, "STARTTLS", host, "%EMAILADDRESS%"),
        ("outgoingServer", "smtp", settings.submissions_port, "SSL", host, "%EMAILADDRESS%"),
        ("outgoingServer", "smtp", settings.submission_port, "STARTTLS", host, "%EMAILADDRESS%")]
    assert_error(client.get("/.well-known/autoconfig/mail/config-v1.1.xml", query_string={"x": "1"}), 400,
                 "validation_error")


def test_outlook_autodiscover_answers_the_requested_address_and_expands_no_entities(client, settings) -> None:
    request = (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
               b"<Autodiscover><Request><EMailAddress>ana@acme.example</EMailAddress>"
               b"<AcceptableResponseSchema>&e;</AcceptableResponseSchema></Request></Autodiscover>")
    resp = client.post("/autodiscover/autodiscover.xml", data=request, content_type="text/xml")
    assert resp.status_code == 200 and b"root:" not in resp.data
    protocols = ET.fromstring(resp.data).findall("a:Response/a:Account/a:Protocol", MS)
    found = [(p.findtext("a:Type", namespaces=MS), int(p.findtext("a:Port", namespaces=MS)),
              p.findtext("a:Server", namespaces=MS), p.findtext("a:LoginName", namespaces=MS)) for p in protocols]
    assert found == [("IMAP", settings.imaps_port, settings.hostname, "ana@acme.example"),
                     ("SMTP", settings.submissions_port, settings.hostname, "ana@acme.example")]
    odd = client.post("/autodiscover/autodiscover.xml", content_type="text/xml",
                      data=b"<EMailAddress>&lt;script&gt;@x</EMailAddress>")
    assert odd.status_code == 200 and b"<script" not in odd.data and b"&lt;script" not in odd.data
