"""Handing a message to a remote MTA: MX lookup, connection, opportunistic STARTTLS, the SMTP
transaction, and each recipient's reply. No business rules: what a reply means (delivered,
retry, bounce) is decided by appliance.services.mail.outbound.

Routing: the domain's MX hosts in preference order (ties in random order, RFC 5321 5.1), else
its A/AAAA (implicit MX); a null MX (RFC 7505) or NXDOMAIN is permanent; SERVFAIL or a timeout
is temporary. A host that cannot be reached, or that answers the greeting or EHLO with an error,
passes the attempt to the next address and the next host. With a smarthost configured, every
message goes there instead (STARTTLS or implicit TLS, verified, with AUTH).
"""
from __future__ import annotations

import ipaddress
import logging
import random
import smtplib
import socket
import ssl
from dataclasses import dataclass

from appliance.config import Settings
from appliance.dns import Outcome, Resolver

log = logging.getLogger("gentbox.delivery")


@dataclass(frozen=True)
class Result:
    """One recipient's reply from an attempt."""

    code: int
    text: str
    host: str = ""


@dataclass(frozen=True)
class Route:
    hosts: tuple[str, ...] = ()  # MX (or A fallback) host names, in the order to try
    code: int = 0  # set when there is nowhere to go: 4xx retry, 5xx bounce
    text: str = ""


class HostFailed(Exception):
    """This host could not take the transaction (unreachable, or refused us before MAIL):
    try the next one. code/text: what to report if no host does better."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(f"{code} {text}")
        self.code, self.text = code, text


def route(resolver: Resolver, domain: str) -> Route:
    mx = resolver.query(domain, "MX")
    if mx.outcome == Outcome.ANSWER:
        entries = []
        for record in mx.records:
            preference, _, host = record.partition(" ")
            entries.append((int(preference), random.random(), host.rstrip(".").lower()))
        entries.sort()
        if len(entries) == 1 and entries[0][2] in ("", "."):
            return Route(code=556, text=f"5.1.10 {domain} accepts no mail (null MX, RFC 7505)")
        return Route(hosts=tuple(host for _, _, host in entries if host not in ("", ".")))
    if mx.outcome == Outcome.NXDOMAIN:
        return Route(code=550, text=f"5.1.2 {domain} does not exist (NXDOMAIN)")
    if mx.outcome == Outcome.NODATA:
        return Route(hosts=(domain,))  # implicit MX: the domain's own address records
    return Route(code=451, text=f"4.4.3 DNS lookup of the MX of {domain} failed ({mx.outcome.value}); will retry")


def addresses(resolver: Resolver, host: str) -> tuple[list[str], str]:
    """The host's IPv4 then IPv6 addresses, and a reason when there are none."""
    try:
        return [str(ipaddress.ip_address(host))], ""
    except ValueError:
        pass
    found, reasons = [], []
    for rdtype in ("A", "AAAA"):
        answer = resolver.query(host, rdtype)
        if answer.outcome == Outcome.ANSWER:
            found += list(answer.records)
        else:
            reasons.append(f"{rdtype} {answer.outcome.value}")
    return found, ", ".join(reasons)


def deliver(settings: Settings, resolver: Resolver, domain: str, mail_from: str, recipients: list[str],
            raw: bytes) -> dict[str, Result]:
    """Try to hand raw to domain's MX (or the smarthost); a Result per recipient address."""
    if settings.relay_host:
        try:
            return _transaction(settings, settings.relay_host, settings.relay_host, settings.relay_port,
                                mail_from, recipients, raw, relay=True)
        except HostFailed as failure:
            return {r: Result(failure.code, failure.text, settings.relay_host) for r in recipients}
    found = route(resolver, domain)
    if found.code:
        return {r: Result(found.code, found.text) for r in recipients}
    last = HostFailed(451, f"4.4.1 No MX host of {domain} could be reached; will retry")
    for host in found.hosts:
        ips, why = addresses(resolver, host)
        if not ips:
            last = HostFailed(451, f"4.4.3 {host} has no address ({why}); will retry")
            continue
        for ip in ips:
            try:
                return _transaction(settings, host, ip, settings.delivery_port, mail_from, recipients, raw)
            except HostFailed as failure:
                log.info("delivery: %s [%s] failed: %s", host, ip, failure)
                last = failure
    code = last.code if 400 <= last.code < 600 else 451
    if code >= 500:  # every host refused us before MAIL: that is not the recipient's fault; retry
        code = 451
        last = HostFailed(451, f"4.4.2 {last.text}")
    return {r: Result(code, last.text, found.hosts[-1] if found.hosts else "") for r in recipients}


def _unverified_context() -> ssl.SSLContext:
    """Opportunistic TLS between MTAs (RFC 7435): encrypt when offered, accept any certificate."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _relay_context(settings: Settings) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(settings.relay_ca_file) if settings.relay_ca_file else None)


def _connect(settings: Settings, host: str, ip: str, port: int, *, relay: bool) -> smtplib.SMTP:
    timeout = settings.delivery_timeout
    try:
        if relay and settings.relay_tls == "implicit":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(local_hostname=settings.hostname, timeout=timeout,
                                                  context=_relay_context(settings))
        else:
            smtp = smtplib.SMTP(local_hostname=settings.hostname, timeout=timeout)
        smtp._host = host  # the name TLS sends (SNI) and, for a relay, checks the certificate against
        code, text = smtp.connect(ip, port)
    except (OSError, smtplib.SMTPException) as exc:
        raise HostFailed(451, f"4.4.1 Could not connect to {host} [{ip}]: {_describe(exc)}") from None
    if code != 220:
        _close(smtp)
        raise HostFailed(code if code >= 400 else 451, f"{_text(text)} (greeting of {host})")
    return smtp


def _hello(smtp: smtplib.SMTP, host: str) -> None:
    code, text = smtp.ehlo()
    if code != 250:
        code, text = smtp.helo()
        if code != 250:
            raise HostFailed(code if code >= 400 else 451, f"{_text(text)} (HELO to {host})")


def _open(settings: Settings, host: str, ip: str, port: int, *, relay: bool) -> smtplib.SMTP:
    """A session ready for MAIL FROM: connected, greeted, TLS where possible (required for a
    relay with STARTTLS), authenticated to a relay."""
    smtp = _connect(settings, host, ip, port, relay=relay)
    try:
        _hello(smtp, host)
        wants_tls = not relay or settings.relay_tls == "starttls"
        if wants_tls and smtp.has_extn("starttls"):
            context = _relay_context(settings) if relay else _unverified_context()
            try:
                code, text = smtp.starttls(context=context)
            except (ssl.SSLError, OSError, smtplib.SMTPException) as exc:
                if relay:
                    raise HostFailed(451, f"4.7.5 STARTTLS with the relay {host} failed: {_describe(exc)}") from None
                # Opportunistic: a peer whose TLS is broken still gets the mail in clear, as
                # Postfix does (the next connection goes without STARTTLS).
                _close(smtp)
                smtp = _connect(settings, host, ip, port, relay=False)
                _hello(smtp, host)
                return smtp
            if code != 220:
                if relay:
                    raise HostFailed(451, f"4.7.5 The relay {host} refused STARTTLS: {_text(text)}")
            else:
                _hello(smtp, host)
        elif relay and settings.relay_tls == "starttls":
            raise HostFailed(451, f"4.7.5 The relay {host} does not offer STARTTLS; refusing to send credentials "
                                  "or mail in clear")
        if relay and settings.relay_username:
            try:
                smtp.login(settings.relay_username, settings.relay_password)
            except smtplib.SMTPAuthenticationError as exc:
                raise HostFailed(451, f"4.7.8 The relay {host} refused our credentials: "
                                      f"{exc.smtp_code} {_text(exc.smtp_error)}") from None
            except smtplib.SMTPException as exc:
                raise HostFailed(451, f"4.7.8 Could not authenticate to the relay {host}: {_describe(exc)}") from None
        return smtp
    except HostFailed:
        _close(smtp)
        raise
    except (OSError, smtplib.SMTPException) as exc:
        _close(smtp)
        raise HostFailed(451, f"4.4.2 {host} [{ip}] dropped the session: {_describe(exc)}") from None


def _transaction(settings: Settings, host: str, ip: str, port: int, mail_from: str, recipients: list[str],
                 raw: bytes, *, relay: bool = False) -> dict[str, Result]:
    smtp = _open(settings, host, ip, port, relay=relay)
    results: dict[str, Result] = {}
    try:
        options = [f"SIZE={len(raw)}"] if smtp.has_extn("size") else []
        if smtp.has_extn("8bitmime") and any(b > 0x7F for b in raw):
            options.append("BODY=8BITMIME")
        code, text = smtp.mail(mail_from, options)
        if code != 250:
            smtp.rset()
            return {r: Result(code, _text(text), host) for r in recipients}
        accepted = []
        for rcpt in recipients:
            code, text = smtp.rcpt(rcpt)
            results[rcpt] = Result(code, _text(text), host)
            if code in (250, 251):
                accepted.append(rcpt)
        if not accepted:
            smtp.rset()
            return results
        code, text = smtp.data(raw)
        for rcpt in accepted:
            results[rcpt] = Result(code, _text(text), host)
        try:
            smtp.quit()
        except (OSError, smtplib.SMTPException):
            pass
        return results
    except (OSError, smtplib.SMTPException) as exc:
        # Lost mid-transaction: nothing was confirmed, so everyone not refused retries (if the
        # peer had stored it before the line dropped, the retry duplicates it: at least once).
        reply = Result(451, f"4.4.2 Connection to {host} [{ip}] lost during the transaction: {_describe(exc)}", host)
        return {r: results[r] if r in results and results[r].code >= 500 else reply for r in recipients}
    finally:
        _close(smtp)


def _close(smtp: smtplib.SMTP) -> None:
    try:
        smtp.close()
    except OSError:
        pass


def _text(value: bytes | str) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return " ".join(value.split())[:900]


def _describe(exc: BaseException) -> str:
    if isinstance(exc, socket.timeout):
        return "timed out"
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"{exc.smtp_code} {_text(exc.smtp_error)}"
    return _text(str(exc)) or type(exc).__name__
