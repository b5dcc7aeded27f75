"""Mail-client self-configuration (issue 25 point 5): Thunderbird's autoconfig file and Microsoft's
autodiscover answer, both naming this appliance's IMAP and submission servers and ports.

The documents only describe public settings (host names and ports); the user name is the inbox
address the client asked about, which is echoed back escaped and never looked up, so the answer
tells nobody whether an address exists.
"""
from __future__ import annotations

import re
from xml.sax.saxutils import escape

from appliance.config import Settings

_ADDRESS = re.compile(r"[^\s<>&\"']{1,254}@[A-Za-z0-9.-]{1,253}")
_REQUESTED = re.compile(rb"<EMailAddress>\s*([^<\s]{1,320})\s*</EMailAddress>", re.I)


def requested_address(body: bytes) -> str:
    """The EMailAddress of an autodiscover request (read with a pattern: no XML parser meets the
    request, so no entity or DTD in it is ever expanded)."""
    found = _REQUESTED.search(body[:16384])
    return _clean(found.group(1).decode("utf-8", "replace")) if found else ""


def _clean(address: str | None) -> str:
    address = (address or "").strip()
    return address if _ADDRESS.fullmatch(address) else ""


def autoconfig(settings: Settings, address: str | None) -> str:
    """Thunderbird's config-v1.1.xml: IMAP over TLS and STARTTLS, submission over TLS and STARTTLS."""
    host, domain = escape(settings.hostname), escape(_clean(address).rpartition("@")[2] or settings.hostname)
    user = "%EMAILADDRESS%"
    servers = [("incomingServer", "imap", settings.imaps_port, "SSL"),
               ("incomingServer", "imap", settings.imap_port, "STARTTLS"),
               ("outgoingServer", "smtp", settings.submissions_port, "SSL"),
               ("outgoingServer", "smtp", settings.submission_port, "STARTTLS")]
    blocks = "".join(
        f'    <{tag} type="{kind}">\n      <hostname>{host}</hostname>\n      <port>{port}</port>\n'
        f"      <socketType>{socket}</socketType>\n      <username>{user}</username>\n"
        f"      <authentication>password-cleartext</authentication>\n    </{tag}>\n"
        for tag, kind, port, socket in servers)
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<clientConfig version="1.1">\n'
            f'  <emailProvider id="{host}">\n    <domain>{domain}</domain>\n'
            f"    <displayName>Gentbox</displayName>\n{blocks}  </emailProvider>\n</clientConfig>\n")


def autodiscover(settings: Settings, address: str | None) -> str:
    """Microsoft's autodiscover (Outlook, the 2006a schema): IMAP on the TLS port, SMTP submission."""
    host, user = escape(settings.hostname), escape(_clean(address))
    protocols = "".join(
        f"      <Protocol>\n        <Type>{kind}</Type>\n        <Server>{host}</Server>\n        <Port>{port}</Port>\n"
        f"        <LoginName>{user}</LoginName>\n        <SPA>off</SPA>\n        <SSL>on</SSL>\n"
        f"        <Encryption>{encryption}</Encryption>\n        <AuthRequired>on</AuthRequired>\n      </Protocol>\n"
        for kind, port, encryption in (("IMAP", settings.imaps_port, "SSL"), ("SMTP", settings.submissions_port, "SSL")))
    return ('<?xml version="1.0" encoding="utf-8"?>\n'
            '<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006">\n'
            '  <Response xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a">\n'
            "    <Account>\n      <AccountType>email</AccountType>\n      <Action>settings</Action>\n"
            f"{protocols}    </Account>\n  </Response>\n</Autodiscover>\n")
