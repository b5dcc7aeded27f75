"""Handing a message to a remote MTA: MX lookup, connection, opportunistic STARTTLS, the SMTP
transaction, and each recipient's reply. No business rules: what a reply means (delivered,
retry, bounce) is decided by appliance.services.mail.outbound.

Routing: the domain's MX hosts in preference order (ties in random order, RFC 5321 5.1), else
its A/AAAA (implicit MX); a null MX (RFC 7505) or NXDOMAIN is permanent; SERVFAIL or a timeout
is temporary. A host that cannot be reached, or that answers the greeting or EHLO with an error,
passes the attempt to the next address and the next host. With a smarthost configured, every
message goes there instead (STARTTLS or implicit TLS, verified, with AUTH).

TLS with MX hosts (issue 14): STARTTLS whenever a host offers it, and once a host has offered it
the mail goes over TLS or not at all: a failed handshake or a refused STARTTLS defers (the next
host is tried), never a retry in clear text. A domain with an MTA-STS policy (RFC 8461, looked up
by appliance.services.mail.mtasts_policy and passed in as `policy`) in mode enforce gets its mail only
through MX hosts its policy names, over STARTTLS with a certificate valid for the MX host name
(settings.tls_ca_file or the system CAs), else the attempt defers with the reason; in mode
testing the mail goes as usual and each recipient's reply records what enforce would have refused.

Only public addresses are dialled (outbound SSRF): an MX or address record is the recipient
domain's to publish, so it could point the worker at loopback, the LAN, a cloud metadata service
or the appliance itself. Addresses that are not public (see is_public) or are the appliance's own
are skipped unless settings.deliver_to_private is on; when every host of a domain has only such
addresses the recipients fail permanently (550 5.4.4, as an unroutable domain), since what DNS
points at will not become public by retrying. The smarthost, the operator's own relay, is exempt.
Tenants see generic reasons for failures of hosts they may not learn about (non-public addresses,
the smarthost): the details go to the log.

Sessions (issue 26): given the worker's pool (appliance/delivery_sessions.py), a transaction runs
over a kept session to the same host, address, port and TLS policy, with RSET, MAIL FROM and the
RCPTs in one write where the peer offers PIPELINING; a kept session found closed before the peer
answered MAIL goes again over a new one at once. Without a pool: one session per call, as before.
"""
from __future__ import annotations

import ipaddress
import logging
import random
import re
import smtplib
import socket
import ssl
from dataclasses import dataclass

from appliance.addresses import is_public, permitted
from appliance.config import Settings
from appliance.delivery_sessions import Session, Sessions
from appliance.dns import Outcome, Resolver
from appliance.services.mail.mtasts_policy import Policy

log = logging.getLogger("gentbox.delivery")
_ENHANCED = re.compile(r"^[245]\.\d{1,3}\.\d{1,3}$")


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


NOT_PUBLIC = "5.4.4 Refused: the recipient's mail server address is not public"


def _for_tenants(host: str, ip: str, failure: HostFailed) -> HostFailed:
    """What the sender may read about a failed host: all of it for a public address; for any
    other (deliver_to_private) no address, banner or error text. TLS refusals (4.7.x) are kept:
    they are our own account of the TLS rules (MTA-STS, no clear text after STARTTLS), which the
    sender needs to act on, and name no address."""
    if is_public(ip) or failure.text.startswith("4.7."):
        return failure
    return HostFailed(min(failure.code, 451), f"4.4.1 {host} could not take the message; will retry")


def _result_for_tenants(host: str, ip: str, result: Result) -> Result:
    """A reply as the sender may read it: our own words about a lost connection to a non-public
    address name neither the address nor the error (the peer's own SMTP replies stay)."""
    if is_public(ip) or f"[{ip}]" not in result.text:
        return result
    return Result(result.code, f"4.4.2 The connection to {host} was lost during the transaction; will retry",
                  result.host)


def _via_relay(settings: Settings, mail_from: str, recipients: list[str], raw: bytes,
               sessions: Sessions | None = None) -> dict[str, Result]:
    """The smarthost takes everything (exempt from the address rule: it is the operator's own)."""
    try:
        return _transaction(settings, settings.relay_host, settings.relay_host, settings.relay_port,
                            mail_from, recipients, raw, relay=True, sessions=sessions)
    except HostFailed as failure:
        # The operator's relay: its name, banner and errors are the operator's business.
        log.warning("delivery: the relay %s failed: %s", settings.relay_host, failure)
        status = failure.text.split(" ", 1)[0]
        status = status if _ENHANCED.match(status) else "4.4.1"
        text = f"{status} The outbound relay did not take the message; will retry"
        return {r: Result(failure.code, text) for r in recipients}


def deliver(settings: Settings, resolver: Resolver, domain: str, mail_from: str, recipients: list[str],
            raw: bytes, policy: Policy | None = None, sessions: Sessions | None = None) -> dict[str, Result]:
    """Try to hand raw to domain's MX (or the smarthost); a Result per recipient address. policy:
    the domain's MTA-STS policy (enforce or testing), None for opportunistic TLS. sessions: the
    worker's kept SMTP sessions (none: a session of its own, closed after the message)."""
    if settings.relay_host:
        return _via_relay(settings, mail_from, recipients, raw, sessions)
    found = route(resolver, domain)
    if found.code:
        return {r: Result(found.code, found.text) for r in recipients}
    found = _sts_route(found, policy, domain)
    if found.code:
        return {r: Result(found.code, found.text) for r in recipients}
    last = HostFailed(451, f"4.4.1 No MX host of {domain} could be reached; will retry")
    refused = 0
    for host in found.hosts:
        ips, why = addresses(resolver, host)
        if not ips:
            last = HostFailed(451, f"4.4.3 {host} has no address ({why}); will retry")
            continue
        allowed = [ip for ip in ips if permitted(settings, ip)]
        if not allowed:
            log.warning("delivery: not dialling %s of %s: no public address (%s)", host, domain, ", ".join(ips))
            refused += 1
            continue
        for ip in allowed:
            try:
                results = _transaction(settings, host, ip, settings.delivery_port, mail_from, recipients, raw,
                                       policy=policy, sessions=sessions)
            except HostFailed as failure:
                log.info("delivery: %s [%s] failed: %s", host, ip, failure)
                last = _for_tenants(host, ip, failure)
                continue
            return {r: _result_for_tenants(host, ip, result) for r, result in results.items()}
    if found.hosts and refused == len(found.hosts):
        return {r: Result(550, NOT_PUBLIC) for r in recipients}
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


def _open(settings: Settings, host: str, ip: str, port: int, *, relay: bool,
          policy: Policy | None = None) -> tuple[smtplib.SMTP, str]:
    """A session ready for MAIL FROM: connected, greeted, TLS where possible (required for a
    relay with STARTTLS, and under an enforced MTA-STS policy), authenticated to a relay; and
    what an MTA-STS policy in mode testing would have refused ("" when nothing)."""
    smtp = _connect(settings, host, ip, port, relay=relay)
    try:
        _hello(smtp, host)
        if not relay:
            return _direct_tls(settings, smtp, host, ip, port, policy)
        if settings.relay_tls == "starttls":
            if not smtp.has_extn("starttls"):
                raise HostFailed(451, f"4.7.5 The relay {host} does not offer STARTTLS; refusing to send "
                                      "credentials or mail in clear")
            try:
                code, text = smtp.starttls(context=_relay_context(settings))
            except (ssl.SSLError, OSError, smtplib.SMTPException) as exc:
                raise HostFailed(451, f"4.7.5 STARTTLS with the relay {host} failed: {_describe(exc)}") from None
            if code != 220:
                raise HostFailed(451, f"4.7.5 The relay {host} refused STARTTLS: {_text(text)}")
            _hello(smtp, host)
        if settings.relay_username:
            try:
                smtp.login(settings.relay_username, settings.relay_password)
            except smtplib.SMTPAuthenticationError as exc:
                raise HostFailed(451, f"4.7.8 The relay {host} refused our credentials: "
                                      f"{exc.smtp_code} {_text(exc.smtp_error)}") from None
            except smtplib.SMTPException as exc:
                raise HostFailed(451, f"4.7.8 Could not authenticate to the relay {host}: {_describe(exc)}") from None
        return smtp, ""
    except HostFailed:
        _close(smtp)
        raise
    except (OSError, smtplib.SMTPException) as exc:
        _close(smtp)
        raise HostFailed(451, f"4.4.2 {host} [{ip}] dropped the session: {_describe(exc)}") from None


# --- TLS with MX hosts: opportunistic, or as an MTA-STS policy says ------------------------------
class _CertificateRefused(Exception):
    """The host's certificate did not verify (untrusted, expired, or not for the MX host name)."""


def _verified_context(settings: Settings) -> ssl.SSLContext:
    """MTA-STS (RFC 8461 4.2): a certificate valid for the MX host name, from a trusted CA."""
    return ssl.create_default_context(cafile=str(settings.tls_ca_file) if settings.tls_ca_file else None)


def _sts_route(found: Route, policy: Policy | None, domain: str) -> Route:
    """Under an enforced policy, only the MX hosts it names (none left: defer, no connection)."""
    if policy is None or policy.mode != "enforce":
        return found
    allowed = tuple(host for host in found.hosts if policy.allows(host))
    if allowed:
        return Route(hosts=allowed)
    log.warning("delivery: no MX host of %s (%s) is allowed by its MTA-STS policy (mx: %s)", domain,
                ", ".join(found.hosts), ", ".join(policy.mx))
    return Route(code=451, text=f"4.7.5 No MX host of {domain} ({', '.join(found.hosts)[:300]}) matches its "
                                f"MTA-STS policy (mx: {', '.join(policy.mx)[:300]}); not delivering; will retry")


def _direct_tls(settings: Settings, smtp: smtplib.SMTP, host: str, ip: str, port: int,
                policy: Policy | None) -> tuple[smtplib.SMTP, str]:
    """STARTTLS with an MX host: verified under an MTA-STS policy (enforce: or defer; testing:
    note the failure, then go on with unverified TLS), else opportunistic. Never clear text
    once the host has offered STARTTLS."""
    mode = policy.mode if policy is not None else "none"
    domain = policy.domain if policy is not None else ""
    report = f"MX host {host} is not in the policy" if mode == "testing" and not policy.allows(host) else ""
    if not smtp.has_extn("starttls"):
        if mode == "enforce":
            raise HostFailed(451, f"4.7.4 {host} does not offer STARTTLS, which the MTA-STS policy of {domain} "
                                  "requires; not delivering in clear text; will retry")
        return smtp, "; ".join(filter(None, [report, f"{host} does not offer STARTTLS" if mode == "testing" else ""]))
    if mode == "none":
        _starttls(smtp, host, _unverified_context())
        return smtp, ""
    try:
        _starttls(smtp, host, _verified_context(settings))
        return smtp, report
    except _CertificateRefused as refused:
        if mode == "enforce":
            raise HostFailed(451, f"4.7.5 The TLS certificate of {host} is not valid for it ({refused}), as the "
                                  f"MTA-STS policy of {domain} requires; not delivering; will retry") from None
        report = "; ".join(filter(None, [report, f"the TLS certificate of {host} is not valid ({refused})"]))
    _close(smtp)  # testing: the verified handshake failed; a new session with opportunistic TLS
    smtp = _connect(settings, host, ip, port, relay=False)
    try:
        _hello(smtp, host)
        if not smtp.has_extn("starttls"):
            raise HostFailed(451, f"4.7.4 {host} offered STARTTLS, then did not; not delivering in clear text")
        _starttls(smtp, host, _unverified_context())
    except BaseException:
        _close(smtp)
        raise
    return smtp, report


def _starttls(smtp: smtplib.SMTP, host: str, context: ssl.SSLContext) -> None:
    """STARTTLS and EHLO again; HostFailed (defer, never clear text) if the host refuses it or the
    handshake fails, _CertificateRefused if only the certificate's verification failed."""
    try:
        code, text = smtp.starttls(context=context)
    except ssl.SSLCertVerificationError as exc:
        raise _CertificateRefused(exc.verify_message or _describe(exc)) from None
    except (ssl.SSLError, OSError, smtplib.SMTPException) as exc:
        raise HostFailed(451, f"4.7.5 TLS with {host} failed after it offered STARTTLS: {_describe(exc)}; "
                              "not retrying in clear text; will retry") from None
    if code != 220:
        raise HostFailed(451, f"4.7.5 {host} offered STARTTLS, then refused it: {_text(text)}; not delivering "
                              "in clear text; will retry")
    _hello(smtp, host)


def _transaction(settings: Settings, host: str, ip: str, port: int, mail_from: str, recipients: list[str],
                 raw: bytes, *, relay: bool = False, policy: Policy | None = None,
                 sessions: Sessions | None = None) -> dict[str, Result]:
    """One message to host [ip] over a kept session when sessions holds one, else a new one. A
    kept session found closed before the peer answered MAIL FROM (it timed out while idle) costs
    the message nothing: it goes at once over a new session."""
    own = sessions is None
    sessions = sessions or Sessions(settings)  # none given: one session, QUIT after the message
    key = (host, ip, port, relay, policy.mode if policy else "", policy.domain if policy else "")
    try:
        fresh = False
        while True:
            session = sessions.acquire(key, fresh=fresh)
            reused = session is not None
            if session is None:
                session = _new_session(settings, sessions, key, host, ip, port, relay, policy)
            try:
                results = _transaction_on(session, host, ip, mail_from, recipients, raw, reused=reused)
            except BaseException:
                session.broken = True  # in an unknown state (e.g. an address smtplib refuses): not kept
                raise
            finally:
                sessions.release(key, session, keep=not session.broken)
            if results is not None:
                break
            fresh = True
    finally:
        if own:
            sessions.close_idle()
    if session.report:  # MTA-STS testing: delivered as usual, and each recipient's reply says what failed
        return {r: Result(res.code, f"{res.text} [MTA-STS testing, not enforced: {session.report}]"[:900], res.host)
                for r, res in results.items()}
    return results


def _new_session(settings: Settings, sessions: Sessions, key: tuple, host: str, ip: str, port: int, relay: bool,
                 policy: Policy | None) -> Session:
    """Open a session in the slot sessions reserved (freed again if the host fails us)."""
    try:
        smtp, report = _open(settings, host, ip, port, relay=relay, policy=policy)
    except BaseException:
        sessions.forget(key)
        raise
    if report:
        log.warning("delivery: MTA-STS policy of %s (testing) not met: %s", policy.domain, report)
    return Session(smtp, report)


class _Stale(Exception):
    """The session failed before the peer answered MAIL FROM: the peer took nothing of this message."""


def _transaction_on(session: Session, host: str, ip: str, mail_from: str, recipients: list[str],
                    raw: bytes, *, reused: bool) -> dict[str, Result] | None:
    """One SMTP transaction on an open session, which stays open for the next one. None when a
    reused session turned out stale (retry on a new one); session.broken when it failed."""
    smtp = session.smtp
    session.messages += 1
    results: dict[str, Result] = {}
    try:
        options = [f"SIZE={len(raw)}"] if smtp.has_extn("size") else []
        if smtp.has_extn("8bitmime") and any(b > 0x7F for b in raw):
            options.append("BODY=8BITMIME")
        code, text = _envelope(session, host, mail_from, options, recipients, results, reused=reused)
        session.aborted = True  # until the peer has answered the message itself
        if code != 250:
            return {r: Result(code, _text(text), host) for r in recipients}
        accepted = [r for r in recipients if results[r].code in (250, 251)]
        if not accepted:
            return results
        code, text = smtp.data(raw)
        session.aborted = False
        for rcpt in accepted:
            results[rcpt] = Result(code, _text(text), host)
        return results
    except (_Stale, OSError, smtplib.SMTPException) as exc:
        session.broken = True
        if isinstance(exc, _Stale):
            if reused:
                log.info("delivery: a kept session with %s [%s] had closed (%s); opening a new one", host, ip,
                         exc)
                return None
            exc = exc.__cause__ or exc
        # Lost mid-transaction: nothing was confirmed, so everyone not refused retries (if the
        # peer had stored it before the line dropped, the retry duplicates it: at least once).
        reply = Result(451, f"4.4.2 Connection to {host} [{ip}] lost during the transaction: {_describe(exc)}", host)
        return {r: results[r] if r in results and results[r].code >= 500 else reply for r in recipients}


def _envelope(session: Session, host: str, mail_from: str, options: list[str], recipients: list[str],
              results: dict[str, Result], *, reused: bool) -> tuple[int, bytes]:
    """MAIL FROM and each RCPT TO; MAIL's reply, each RCPT's into results. With PIPELINING (RFC
    2920) all in one write, after an RSET on a reused session (free: no round trip of its own),
    then the replies in order; without it a command at a time, RSET only after an aborted
    transaction. _Stale when the session fails (or says 421) before the peer answered MAIL."""
    smtp = session.smtp
    commands = [f"MAIL FROM:{smtplib.quoteaddr(mail_from)}{''.join(' ' + o for o in options)}"]
    commands += [f"RCPT TO:{smtplib.quoteaddr(r)}" for r in recipients]
    if any("\r" in c or "\n" in c for c in commands):  # as smtplib's own putcmd refuses them
        raise ValueError("an address contains a line break")
    pipelined = smtp.has_extn("pipelining")
    reset = reused if pipelined else session.aborted
    try:
        if pipelined:
            smtp.send("".join(f"{c}\r\n" for c in (["RSET"] if reset else []) + commands))
        if reset:
            code, text = smtp.getreply() if pipelined else smtp.rset()
            if code != 250:
                raise smtplib.SMTPResponseException(code, text)
        if not pipelined:
            smtp.send(f"{commands[0]}\r\n")
        code, text = smtp.getreply()
        if code == 421 and reused:
            raise smtplib.SMTPResponseException(code, text)
    except (OSError, smtplib.SMTPException) as exc:
        raise _Stale(_describe(exc)) from exc
    for rcpt, command in zip(recipients, commands[1:]):
        if not pipelined:
            if code != 250:
                break  # MAIL refused: no RCPT
            smtp.send(f"{command}\r\n")
        rcpt_code, rcpt_text = smtp.getreply()
        results[rcpt] = Result(rcpt_code, _text(rcpt_text), host)
    return code, text


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
