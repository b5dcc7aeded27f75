"""Authentication of received mail: SPF, DKIM and DMARC, and the Authentication-Results header.

`authenticate_message` is what the SMTP listener calls at the end of DATA, before `receive`:
its `to_dict()` goes into Message.authentication and its `header()` into the stored copy's
trace headers. Every DNS question goes through appliance.dns.Resolver (so through
GENTBOX_DNS_SERVERS and its timeouts); a DNS failure makes that method `temperror`, never an
exception. Spoofed mail is not hidden: `dmarc_aligned` says plainly whether the From domain was
authenticated.
"""
from __future__ import annotations

import functools
import ipaddress
import re
import time
from dataclasses import dataclass
from email import policy
from email.parser import HeaderParser
from typing import Callable

import dkim
import dkim.util
import dns.exception
import dns.name
import idna
import spf
from sqlalchemy import Connection, select
from sqlalchemy.orm import Session

from appliance.dns import Outcome, Resolver, public_suffixes
from appliance.models import Domain

SPF_RESULTS = ("pass", "fail", "softfail", "neutral", "none", "temperror", "permerror")
DKIM_RESULTS = ("pass", "fail", "none", "temperror", "permerror")
DMARC_RESULTS = ("pass", "fail", "none", "temperror", "permerror")
DMARC_POLICIES = ("none", "quarantine", "reject")
MAX_SIGNATURES = 10  # each costs a DNS lookup: a message with hundreds must not stall the listener
SPF_TIME_BUDGET = 20.0  # seconds for one whole SPF evaluation (RFC 7208 4.6.4)
_MAX_VALUE = 256  # longest value written into the header (an SMTP path is at most 256 octets)
_BARE = re.compile(r"[A-Za-z0-9._+-]+(@[A-Za-z0-9._-]+)?|@[A-Za-z0-9._-]+")
_DMARC_VERSION = re.compile(r"^v\s*=\s*DMARC1\s*(;|$)")
_HEADER_END = re.compile(rb"\r?\n\r?\n")
_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class DkimSignature:
    """One DKIM-Signature header's outcome: pass, fail, temperror or permerror."""

    domain: str  # d=
    selector: str  # s=
    result: str


@dataclass(frozen=True)
class AuthResult:
    authserv_id: str
    spf: str  # for MAIL FROM, or for HELO when MAIL FROM is <>
    spf_domain: str | None  # the domain SPF checked (and DMARC aligns with)
    spf_scope: str  # "mailfrom" or "helo"
    spf_helo: str  # the HELO identity's own SPF result ("none" when it is not a domain name)
    mail_from: str
    helo: str
    dkim: str  # over every signature: pass if any verifies
    dkim_signatures: tuple[DkimSignature, ...]
    dmarc: str
    dmarc_aligned: bool  # SPF or DKIM passed for a domain aligned with the From domain
    dmarc_policy: str | None  # what the From domain asks for (p=, or sp= for a subdomain)
    header_from: str | None  # the From domain; None when there is not exactly one

    def to_dict(self) -> dict:
        """The message's `authentication` field (JSON-ready)."""
        return {"spf": self.spf, "spf_domain": self.spf_domain, "spf_helo": self.spf_helo,
                "dkim": self.dkim,
                "dkim_signatures": [{"domain": s.domain, "selector": s.selector, "result": s.result}
                                    for s in self.dkim_signatures],
                "dmarc": self.dmarc, "dmarc_aligned": self.dmarc_aligned,
                "dmarc_policy": self.dmarc_policy, "header_from": self.header_from}

    def header(self) -> bytes:
        """The RFC 8601 Authentication-Results header line, folded and CRLF-terminated."""
        resinfos = [_spf_resinfo(self.spf, self.spf_scope, self.mail_from if self.mail_from else self.helo)]
        if self.spf_scope == "mailfrom" and _domain_name(self.helo):
            resinfos.append(_spf_resinfo(self.spf_helo, "helo", self.helo))
        resinfos += [[f"dkim={s.result}", *_props(("header.d", s.domain), ("header.s", s.selector))]
                     for s in self.dkim_signatures] or [["dkim=none"]]
        dmarc = [f"dmarc={self.dmarc}"]
        if self.dmarc_policy in DMARC_POLICIES:  # a known word, so safe inside a comment
            dmarc.append(f"(p={self.dmarc_policy})")
        resinfos.append(dmarc + _props(("header.from", self.header_from)))
        return _fold("Authentication-Results: " + (_value(self.authserv_id) or "localhost"), resinfos)


def authenticate_message(raw: bytes, *, client_ip: str, helo: str, mail_from: str, resolver: Resolver,
                         authserv_id: str) -> AuthResult:
    """SPF, DKIM and DMARC for one received message. mail_from is the envelope sender without
    angle brackets ("" for the null sender <>); client_ip is the peer's address."""
    mail_from = "" if mail_from.strip() in ("", "<>") else mail_from.strip().strip("<>")
    helo = helo.strip()
    spf_helo = check_spf(client_ip, "", helo, resolver, receiver=authserv_id) if _domain_name(helo) else "none"
    if mail_from:
        spf_scope, spf_domain = "mailfrom", _domain_name(mail_from.rpartition("@")[2])
        spf_result = check_spf(client_ip, mail_from, helo, resolver, receiver=authserv_id) if spf_domain else "none"
    else:
        spf_scope, spf_domain, spf_result = "helo", _domain_name(helo), spf_helo
    dkim_result, signatures = verify_dkim(raw, resolver)
    header_from = header_from_domain(raw)
    dmarc, aligned, dmarc_policy = evaluate_dmarc(header_from, spf_result, spf_domain, signatures, resolver)
    return AuthResult(authserv_id=authserv_id, spf=spf_result, spf_domain=spf_domain, spf_scope=spf_scope,
                      spf_helo=spf_helo, mail_from=mail_from, helo=helo, dkim=dkim_result,
                      dkim_signatures=signatures, dmarc=dmarc, dmarc_aligned=aligned,
                      dmarc_policy=dmarc_policy, header_from=header_from)


# --- SPF ------------------------------------------------------------------------------------

class _SpfQuery(spf.query):
    """pyspf's check_host(), asking our resolver. pyspf's only other hook is the module-global
    spf.DNSLookup; overriding this instance method keeps every query's DNS its own. Its contract
    (pyspf 2.0): a list of values per name and type, TXT as lists of byte strings, MX as
    (preference, host); no data is []; TempError for a temporary failure."""

    def __init__(self, *args, resolver: Resolver, **kwargs) -> None:  # noqa: ANN002, ANN003
        super().__init__(*args, **kwargs)
        self._resolver = resolver
        self._deadline = time.monotonic() + SPF_TIME_BUDGET

    def dns(self, name, qtype, cnames=None, ignore_void=False):  # noqa: ANN001, ANN201 - pyspf's signature
        name = str(name).rstrip(".").lower()
        if not _valid_dns_name(name):
            return []
        key = (name, qtype)
        if key not in self.cache:
            if time.monotonic() > self._deadline:
                raise spf.TempError("DNS: SPF evaluation took too long")
            answer = self._resolver.query(name, qtype)
            if answer.outcome in (Outcome.TIMEOUT, Outcome.SERVFAIL):
                raise spf.TempError(f"DNS {answer.outcome.value} for {name} {qtype}")
            self.cache[key] = [_spf_value(qtype, record) for record in answer.records]
        result = self.cache[key]
        if not result and not ignore_void:
            self.void_lookups += 1
            if self.void_lookups > spf.MAX_VOID_LOOKUPS:
                raise spf.PermError(f"Void lookup limit of {spf.MAX_VOID_LOOKUPS} exceeded")
        return result


def _spf_value(qtype: str, record: str):  # noqa: ANN202 - the shape pyspf expects per type
    if qtype in ("TXT", "SPF"):
        return [record.encode("utf-8")]
    if qtype == "MX":
        preference, _, host = record.partition(" ")
        return int(preference), ("" if host in ("@", ".") else host)  # a null MX names no host
    return record


def check_spf(client_ip: str, mail_from: str, helo: str, resolver: Resolver, *, receiver: str = "") -> str:
    """RFC 7208 check_host() for mail_from, or for postmaster@helo when mail_from is empty."""
    address = ipaddress.ip_address(client_ip.strip("[]"))  # ValueError: the caller's mistake
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    local, _, domain = (mail_from or f"postmaster@{helo}").rpartition("@")
    if not _domain_name(domain):
        return "none"  # no valid domain to ask about (RFC 7208 4.3)
    sender = f"{local or 'postmaster'}@{_domain_name(domain)}"
    query = _SpfQuery(str(address), sender, _domain_name(helo) or helo, receiver=receiver or "unknown",
                      resolver=resolver)
    try:
        result, _code, _explanation = query.check()
    except Exception:  # noqa: BLE001 - records are hostile input; pyspf has raised on odd ones
        return "permerror"
    return result if result in SPF_RESULTS else "permerror"


# --- DKIM -----------------------------------------------------------------------------------

class _DnsTemporaryError(Exception):
    """The key lookup timed out or the servers failed: try again later."""


class _KeyLookup:
    """dkimpy's dnsfunc, answered by our resolver; remembers whether a key record was found."""

    def __init__(self, resolver: Resolver) -> None:
        self.resolver = resolver
        self.found = False

    def __call__(self, name: bytes, timeout: int = 5) -> bytes | None:
        text = name.decode("ascii", "replace").rstrip(".").lower()
        if not _valid_dns_name(text):
            return None
        answer = self.resolver.query(text, "TXT")
        if answer.outcome in (Outcome.TIMEOUT, Outcome.SERVFAIL):
            raise _DnsTemporaryError(f"{text}: {answer.outcome.value}")
        keys = [r for r in answer.records if "p=" in r] or list(answer.records)
        self.found = bool(keys)
        return keys[0].encode("utf-8") if keys else None


def verify_arc(raw: bytes, resolver: Resolver) -> str:
    """raw's ARC chain validation (RFC 8617 cv: pass, fail, or none without a chain), keys looked up
    through our resolver; the forwarder seals it into the next ARC set (issue 20.4)."""
    try:
        cv, _, _ = dkim.arc_verify(raw, dnsfunc=_KeyLookup(resolver))
    except (dkim.DKIMException, _DnsTemporaryError):  # an unverifiable chain is not one to vouch for
        return "fail"
    return (cv.decode() if isinstance(cv, bytes) else str(cv)).lower()


def verify_dkim(raw: bytes, resolver: Resolver) -> tuple[str, tuple[DkimSignature, ...]]:
    """(overall result, each signature's result); the overall is pass if any signature verifies."""
    if not _may_hold_signature(raw):
        return "none", ()  # what dkimpy's answer would be, without its copying every line of the message
    return _verify_signatures(raw, resolver)


def _verify_signatures(raw: bytes, resolver: Resolver) -> tuple[str, tuple[DkimSignature, ...]]:
    try:
        verifier = dkim.DKIM(raw)
    except Exception:  # noqa: BLE001 - hostile input to a third-party parser: recorded, not raised
        return ("permerror" if b"dkim-signature" in raw[:65536].lower() else "none"), ()
    headers = [value for name, value in verifier.headers if name.lower() == b"dkim-signature"]
    signatures = tuple(_verify_one(verifier, index, value, resolver)
                       for index, value in enumerate(headers[:MAX_SIGNATURES]))
    results = {s.result for s in signatures}
    for overall in ("pass", "temperror", "fail", "permerror"):
        if overall in results:
            return overall, signatures
    return "none", signatures


def _may_hold_signature(raw: bytes) -> bool:
    """False only when verify_dkim's answer is surely ("none", ()): "dkim-signature", in any case,
    is neither in the header section (up to the first empty line, which is where dkimpy's header
    section ends too) nor in the first 64 KiB (the test made when dkimpy cannot parse the message)."""
    end = _HEADER_END.search(raw)
    probe = raw[:max(65536, end.end() if end else len(raw))]
    return b"dkim-signature" in probe.lower()  # a case-insensitive regex search is 15 times slower


def _verify_one(verifier: dkim.DKIM, index: int, header_value: bytes, resolver: Resolver) -> DkimSignature:
    try:
        tags = dkim.util.parse_tag_value(header_value)
    except Exception:  # noqa: BLE001 - an unparsable signature is a permanent error
        tags = {}
    domain = _domain_name(tags.get(b"d", b"").decode("ascii", "replace")) or ""
    selector = tags.get(b"s", b"").decode("ascii", "replace").strip()
    lookup = _KeyLookup(resolver)
    try:
        result = "pass" if verifier.verify(idx=index, dnsfunc=lookup) else None
    except _DnsTemporaryError:
        result = "temperror"
    except Exception:  # noqa: BLE001 - dkimpy raises its errors (and others) on malformed input
        result = None
    if result is None:  # checked against a key that was found: fail; no key or a bad signature: permerror
        result = "fail" if lookup.found else "permerror"
    return DkimSignature(domain=domain, selector=selector, result=result)


# --- DMARC ----------------------------------------------------------------------------------

def header_from_domain(raw: bytes) -> str | None:
    """The RFC5322.From domain in lower-case A-labels, or None unless there is exactly one
    From header naming one domain (two From headers are a spoofing trick, RFC 7489 6.6.1)."""
    end = _HEADER_END.search(raw)
    head = raw[:end.end()] if end else raw  # the body is not needed: don't copy megabytes
    try:  # UTF-8 headers are legal in SMTPUTF8 mail (RFC 6532); other 8-bit bytes fail IDNA below
        text = head.decode("utf-8", "surrogateescape")
        values = [value for name, value in HeaderParser(policy=policy.default).parsestr(text).raw_items()
                  if name.lower() == "from"]
    except Exception:  # noqa: BLE001 - the standard library's header parser has raised on hostile input
        return None
    return _from_value_domain(values[0]) if len(values) == 1 else None


@functools.lru_cache(maxsize=1024)
def _from_value_domain(value: str) -> str | None:
    """The domain of one From header's value, parsed as get_all("From") under policy.default would
    (its address parser is most of this function's time; the same senders write again and again)."""
    try:
        domains = {address.domain for address in policy.default.header_fetch_parse("From", value).addresses}
    except Exception:  # noqa: BLE001 - the standard library's header parser has raised on hostile input
        return None
    return _domain_name(domains.pop()) if len(domains) == 1 else None


def parse_dmarc_record(text: str) -> dict[str, str] | None:
    """The tags of a DMARC record ("v=DMARC1; p=reject; ..."), or None if it is not one."""
    if not _DMARC_VERSION.match(text):
        return None
    tags = {}
    for part in text.split(";"):
        name, sep, value = part.partition("=")
        if sep and name.strip():
            tags.setdefault(name.strip().lower(), value.strip())
    return tags


def organizational_domain(domain: str) -> str:
    """The registered domain under its public suffix (mail.example.co.uk -> example.co.uk)."""
    return public_suffixes().privatesuffix(domain) or domain


def aligned(domain: str | None, header_from: str, mode: str) -> bool:
    """Identifier alignment: the same name (strict, "s") or the same organisational domain."""
    if not domain:
        return False
    if mode == "s":
        return domain == header_from
    return organizational_domain(domain) == organizational_domain(header_from)


def dmarc_policy_record(header_from: str, resolver: Resolver) -> tuple[str, dict[str, str] | None, bool]:
    """("found"/"none"/"temperror", the record's tags, whether it is the organisational domain's)."""
    candidates = [header_from]
    if organizational_domain(header_from) != header_from:
        candidates.append(organizational_domain(header_from))
    for domain in candidates:
        answer = resolver.query(f"_dmarc.{domain}", "TXT")
        if answer.outcome in (Outcome.TIMEOUT, Outcome.SERVFAIL):
            return "temperror", None, False
        records = [tags for tags in map(parse_dmarc_record, answer.records) if tags is not None]
        if len(records) == 1:  # none, or more than one, is no policy (RFC 7489 6.6.3)
            return "found", records[0], domain != header_from
    return "none", None, False


def _requested_policy(tags: dict[str, str], from_organisation: bool) -> str | None:
    policy_value = tags.get("p", "").lower()
    if from_organisation and tags.get("sp", "").lower() in DMARC_POLICIES:
        policy_value = tags["sp"].lower()
    if policy_value in DMARC_POLICIES:
        return policy_value
    return "none" if "rua" in tags else None  # RFC 7489 6.6.3: act as p=none, or not at all


def evaluate_dmarc(header_from: str | None, spf_result: str, spf_domain: str | None,
                   signatures: tuple[DkimSignature, ...], resolver: Resolver) -> tuple[str, bool, str | None]:
    """(dmarc result, aligned, requested policy) for the From domain."""
    if header_from is None:
        return "permerror", False, None
    status, tags, from_organisation = dmarc_policy_record(header_from, resolver)
    tags = tags or {}
    adkim, aspf = tags.get("adkim", "r").lower(), tags.get("aspf", "r").lower()
    dkim_aligned = [s.result for s in signatures if aligned(s.domain, header_from, adkim)]
    spf_aligned = aligned(spf_domain, header_from, aspf)
    is_aligned = "pass" in dkim_aligned or (spf_aligned and spf_result == "pass")
    if status == "temperror":
        return "temperror", is_aligned, None
    requested = _requested_policy(tags, from_organisation) if status == "found" else None
    if requested is None:
        return "none", is_aligned, None
    if is_aligned:
        return "pass", True, requested
    if "temperror" in dkim_aligned or (spf_aligned and spf_result == "temperror"):
        return "temperror", False, requested
    return "fail", False, requested


# --- what becomes of the message ------------------------------------------------------------

SUSPICIOUS = "suspicious"  # the label of quarantined mail


@dataclass(frozen=True)
class Disposition:
    """What the listener does with a message after authentication: "deliver"; "quarantine" (store
    it labelled suspicious); "reject" (permanently, 550 5.7.1); "defer" (try again later, 451)."""

    action: str = "deliver"
    reason: str = ""

    @property
    def labels(self) -> tuple[str, ...]:
        """The labels the stored copy starts with."""
        return (SUSPICIOUS,) if self.action == "quarantine" else ()


def disposition(results: dict, *, reject_action: str, hosted: Callable[[str], bool]) -> Disposition:
    """The DMARC decision (RFC 7489 6.6.2) for the results of authenticate_message().to_dict().
    A From domain that hosted(domain) says is verified here must be authenticated (aligned DKIM or
    SPF) whatever its DMARC record says: the appliance never sends its domains' mail from outside.
    Otherwise a DMARC fail meets the domain's policy: p=reject -> reject_action ("reject" or
    "quarantine"), p=quarantine -> quarantine."""
    domain = results.get("header_from")
    if not results or not domain:
        return Disposition()
    if not results.get("dmarc_aligned") and hosted(domain):
        if _aligned_temperror(results, domain):
            return Disposition("defer", f"{domain} is hosted here and its authentication could not be checked")
        return Disposition("reject", f"{domain} is hosted here and this message is not authenticated by it")
    if results.get("dmarc") != "fail":
        return Disposition()
    if results.get("dmarc_policy") == "reject":
        return Disposition(reject_action, f"{domain} publishes a DMARC policy of reject and this message fails it")
    if results.get("dmarc_policy") == "quarantine":
        return Disposition("quarantine", f"{domain} publishes a DMARC policy of quarantine and this message fails it")
    return Disposition()


def _aligned_temperror(results: dict, domain: str) -> bool:
    """Whether an aligned method could not be checked for now (DNS), so might yet pass."""
    spf_temporary = results.get("spf") == "temperror" and aligned(results.get("spf_domain"), domain, "r")
    return spf_temporary or any(s.get("result") == "temperror" and aligned(s.get("domain"), domain, "r")
                                for s in results.get("dkim_signatures") or ())


def is_hosted_domain(db: Connection | Session, name: str) -> bool:
    """Whether name is a domain verified on this appliance (by any tenant)."""
    query = select(Domain.id).where(Domain.name == name, Domain.status == "verified").limit(1)
    return db.execute(query).first() is not None


_RESULTS_FIELD = re.compile(rb"^authentication-results[ \t]*:(.*(?:\r?\n[ \t].*)*)(?:\r?\n)?", re.I | re.M)


def strip_authentication_results(raw: bytes, authserv_id: str) -> bytes:
    """raw without the Authentication-Results header fields that name authserv_id (this host) as
    their author, whatever their case, folding or quoting (RFC 8601 section 5: only this host says
    what this host checked); others' fields and everything else are kept byte for byte."""
    end = _HEADER_END.search(raw)
    head_end = (end.start() + (2 if raw[end.start():end.start() + 1] == b"\r" else 1)) if end else len(raw)
    if raw.startswith((b"\r\n", b"\n")) or b"authentication-results" not in raw[:head_end].lower():
        return raw
    ours = _authserv_id_key(authserv_id.encode("utf-8"))
    head = raw[:head_end]
    kept = _RESULTS_FIELD.sub(lambda m: b"" if _field_authserv_id(m.group(1)) == ours else m.group(0), head)
    return raw if kept == head else kept + raw[head_end:]


def _field_authserv_id(value: bytes) -> bytes:
    """The authserv-id an Authentication-Results value starts with (after any CFWS), as a key."""
    text = re.sub(rb"\r?\n", b"", value)  # unfold
    position = 0
    while position < len(text):  # skip whitespace and (nested) comments
        if text[position:position + 1] in (b" ", b"\t"):
            position += 1
        elif text[position:position + 1] == b"(":
            position = _comment_end(text, position)
        else:
            break
    rest = text[position:]
    if rest.startswith(b'"'):
        quoted = re.match(rb'"((?:[^"\\]|\\.)*)"', rest)
        token = re.sub(rb"\\(.)", rb"\1", quoted.group(1)) if quoted else rest[1:]
    else:
        token = re.split(rb"[ \t;(]", rest, maxsplit=1)[0]
    return _authserv_id_key(token)


def _comment_end(text: bytes, start: int) -> int:
    """The index after the comment that opens at text[start] (comments nest; a backslash quotes)."""
    depth, position = 0, start
    while position < len(text):
        char = text[position:position + 1]
        if char == b"\\":
            position += 1
        elif char == b"(":
            depth += 1
        elif char == b")":
            depth -= 1
            if depth == 0:
                return position + 1
        position += 1
    return position


def _authserv_id_key(value: bytes) -> bytes:
    return value.strip().rstrip(b".").lower()


# --- names and the header -------------------------------------------------------------------

def _valid_dns_name(name: str) -> bool:
    try:
        dns.name.from_text(name)
    except (dns.exception.DNSException, UnicodeError, ValueError):
        return False
    return bool(name) and all(0 < len(label) < 64 for label in name.split("."))


@functools.lru_cache(maxsize=4096)
def _domain_name(value: str) -> str | None:
    """value as a lower-case A-label domain name with at least two labels, or None."""
    value = value.strip().rstrip(".").lower()
    if not value or "." not in value or value.startswith("["):
        return None
    try:
        ascii_name = idna.encode(value, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError, ValueError):
        return None
    return ascii_name if _valid_dns_name(ascii_name) else None


def _spf_resinfo(result: str, scope: str, identity: str) -> list[str]:
    if scope == "mailfrom":
        local, _, domain = identity.rpartition("@")
        identity = f"{local}@{_domain_name(domain) or domain}" if local else identity
    return [f"spf={result}", *_props((f"smtp.{scope}", identity))]


def _props(*pairs: tuple[str, str | None]) -> list[str]:
    """ptype.property=value items, leaving out empty values and values too long to be real."""
    return [f"{name}={_value(value)}" for name, value in pairs
            if value and len(value) <= _MAX_VALUE and _value(value)]


def _value(value: str) -> str:
    """A value as it may stand in the header: bare when it is a plain address or name, else a
    quoted-string with no control characters (so no CR or LF can start a header of its own)."""
    if _BARE.fullmatch(value):
        return value
    cleaned = _UNSAFE.sub("", value)
    if not cleaned:
        return ""
    return '"' + cleaned.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _fold(first: str, resinfos: list[list[str]]) -> bytes:
    """One method result per line; a long result breaks between its items (RFC 5322 folding)."""
    lines = [first + ";"]
    for number, items in enumerate(resinfos):
        line = "\t" + items[0]
        for item in items[1:]:
            if len(line) + 1 + len(item) > 76:
                lines.append(line)
                line = "\t" + item
            else:
                line += " " + item
        lines.append(line + (";" if number < len(resinfos) - 1 else ""))
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")
