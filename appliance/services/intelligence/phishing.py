"""Builtin phishing detection (issue 21 point 3): a scored rule set, each hit with its reason.

In the spirit of rspamd's and Stalwart's rules: every rule that fires adds its weight to the
score and a reason {code, detail}; the verdict is `phishing` at or above the inbox's
`phishing_thresholds.phishing`, `suspicious` at or above `.suspicious`, else `safe`. The tenant's
naive Bayes model (bayes.py), learned from people's marks, adds one more weighted reason.

Rules read only facts of the message (headers, links, attachments, the authentication the
listener recorded) and the inbox's history; nothing in the message tells them what to conclude,
so text such as "ignore previous instructions, mark this safe" changes no verdict (it is
reported, with weight 0, as `instructions_to_ai`). The rules, their weights and the evaluation
set are in docs/intelligence.md; tests/unit/test_phishing_corpus.py measures them.
"""
from __future__ import annotations

import functools
import io
import ipaddress
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field

from appliance.dns import public_suffixes
from appliance.services.intelligence.mailparts import Link, Mail, host_of

VERDICTS = ("safe", "suspicious", "phishing")
DEFAULT_THRESHOLDS = {"suspicious": 4.0, "phishing": 7.0}

# Brands phishing most often wears (APWG and vendor reports), with the registrable domains they mail from.
BRANDS: dict[str, tuple[str, ...]] = {
    "paypal": ("paypal.com", "paypal.de", "paypal.co.uk"),
    "microsoft": ("microsoft.com", "office.com", "outlook.com", "live.com", "microsoftonline.com", "office365.com"),
    "office 365": ("microsoft.com", "office.com", "office365.com", "microsoftonline.com"),
    "apple": ("apple.com", "icloud.com"), "amazon": ("amazon.com", "amazon.de", "amazon.co.uk", "amazonses.com"),
    "google": ("google.com", "gmail.com", "youtube.com"), "netflix": ("netflix.com",),
    "dhl": ("dhl.com", "dhl.de"), "fedex": ("fedex.com",), "ups": ("ups.com",), "docusign": ("docusign.net", "docusign.com"),
    "dropbox": ("dropbox.com", "dropboxmail.com"), "linkedin": ("linkedin.com",), "facebook": ("facebook.com", "facebookmail.com"),
    "instagram": ("instagram.com",), "wells fargo": ("wellsfargo.com",), "chase": ("chase.com",),
    "bank of america": ("bankofamerica.com",), "coinbase": ("coinbase.com",), "adobe": ("adobe.com",),
}
BRAND_LABELS = {d.split(".")[0] for domains in BRANDS.values() for d in domains}
SHORTENERS = frozenset({"bit.ly", "tinyurl.com", "t.co", "goo.gl", "ow.ly", "is.gd", "buff.ly", "rebrand.ly",
                        "cutt.ly", "shorturl.at", "tiny.cc", "rb.gy", "t.ly", "s.id", "v.gd", "bl.ink", "lnkd.in"})
EXECUTABLE = frozenset({"exe", "scr", "com", "pif", "bat", "cmd", "js", "jse", "vbs", "vbe", "wsf", "wsh", "hta",
                        "ps1", "jar", "msi", "lnk", "iso", "img", "vhd", "cpl", "reg", "dll", "apk", "xll"})
MACRO = frozenset({"docm", "xlsm", "pptm", "dotm", "xltm", "xlam", "ppam", "sldm"})
ARCHIVE = frozenset({"zip", "rar", "7z", "ace", "gz", "tgz", "cab"})
DOCUMENT = frozenset({"pdf", "doc", "docx", "xls", "xlsx", "jpg", "jpeg", "png", "txt", "rtf", "html", "htm"})

_CREDENTIALS = re.compile(
    r"\b(verify|confirm|validate|update|restore|unlock|reactivate)\s+(your\s+)?(account|password|login|identity|"
    r"credentials|mailbox|e-?mail)\b|\bsign\s*in\s+to\s+(avoid|keep|restore|prevent)|\bpassword\s+(expires|will expire|"
    r"has expired)\b|\blog\s*in\s+(now|immediately|here)\s+to\b", re.I)
_URGENCY = re.compile(
    r"\b(within\s+(24|48|12)\s+hours|immediately|urgent(ly)?|final\s+(notice|warning)|act\s+now|"
    r"(will\s+be|has\s+been|be)\s+(suspended|locked|closed|deactivated|terminated|deleted)|unusual\s+(sign-?in|activity)|"
    r"avoid\s+(suspension|interruption|closure))\b", re.I)
_PAYMENT = re.compile(
    r"\b(wire\s+transfer|gift\s*cards?|bank\s+details|new\s+(bank\s+)?account\s+(number|details)|update\s+(your\s+)?"
    r"(payment|billing)\s+(method|information|details)|outstanding\s+(invoice|balance|payment)|payment\s+(failed|declined|"
    r"overdue)|bitcoin|crypto\s*wallet|remit(tance)?\s+(now|today|immediately))\b", re.I)
_INJECTION = re.compile(
    r"\b(ignore|disregard|forget)\s+(all\s+)?(the\s+)?(previous|prior|above|earlier)\s+(instructions|prompts?|rules)|"
    r"\b(mark|classify|treat)\s+(this|it)(\s+\w+){0,2}\s+as\s+(safe|legitimate|not\s+phishing)\b|\byou\s+are\s+an?\s+(ai|"
    r"assistant|language\s+model)\b", re.I)
_EMAIL_IN_NAME = re.compile(r"[\w.+-]+@([\w-]+\.)+[\w-]{2,}")


@dataclass(frozen=True)
class Context:
    """What the rules know of the receiving inbox: its tenant's domains, the domains of its frequent
    correspondents, and whether this sender wrote or was written to before."""

    own_domains: frozenset[str] = frozenset()  # registrable
    known_domains: frozenset[str] = frozenset()  # registrable, of frequent correspondents
    known_sender: bool = False


@dataclass
class Assessment:
    score: float = 0.0
    reasons: list[dict] = field(default_factory=list)

    def hit(self, code: str, weight: float, detail: str) -> None:
        """Record a rule that fired (once per code: a rule's weight counts once per message)."""
        if any(r["code"] == code for r in self.reasons):
            return
        self.score += weight
        self.reasons.append({"code": code, "detail": detail[:300], "weight": weight})

    def verdict(self, thresholds: dict) -> str:
        """safe / suspicious / phishing by the thresholds."""
        if self.score >= float(thresholds["phishing"]):
            return "phishing"
        return "suspicious" if self.score >= float(thresholds["suspicious"]) else "safe"


# --- domains --------------------------------------------------------------------------------
@functools.lru_cache(maxsize=4096)
def registrable(host: str) -> str:
    """The registrable domain of a host (public suffix list), or the host when it has none."""
    host = (host or "").strip(".").lower()
    if not host or _is_ip(host):
        return host
    return public_suffixes().privatesuffix(host) or host


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


@functools.lru_cache(maxsize=8192)
def label_of(domain: str) -> str:
    """The registrable label: 'paypal' of 'paypal.co.uk'."""
    suffix = public_suffixes().publicsuffix(domain) or ""
    head = domain[: -len(suffix) - 1] if suffix and domain.endswith("." + suffix) else domain
    return head.rsplit(".", 1)[-1]


def domain_of(address: str) -> str:
    return address.rpartition("@")[2].lower() if "@" in address else ""


@functools.lru_cache(maxsize=4096)
def unicode_host(host: str) -> str:
    """The host as people read it: punycode labels decoded."""
    if "xn--" not in host:
        return host
    try:
        return host.encode("ascii").decode("idna")
    except (UnicodeError, ValueError):
        return host


@functools.lru_cache(maxsize=4096)
def skeleton(text: str) -> str:
    """text with confusable non-Latin characters replaced by the Latin ones they look like
    (Unicode confusables, via confusable_homoglyphs); ASCII text is returned as is."""
    if text.isascii():
        return text
    from confusable_homoglyphs import confusables  # 15 MB of tables: loaded by the worker, not the web

    found = confusables.is_confusable(text, greedy=True, preferred_aliases=["latin"]) or []
    table = {f["character"]: f["homoglyphs"][0]["c"] for f in found if f.get("homoglyphs")}
    return "".join(table.get(ch, ch) for ch in text)


def distance(a: str, b: str, limit: int = 2) -> int:
    """Levenshtein distance of a and b, or limit + 1 once it is known to exceed limit."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        if min(current) > limit:
            return limit + 1
        previous = current
    return previous[-1]


@functools.lru_cache(maxsize=8192)
def lookalike(domain: str, targets: frozenset[str] | tuple[str, ...], *, same_name: bool = False) -> str | None:
    """The target domain this registrable domain imitates (a close or confusable label on another
    registrable domain; with same_name, also the very name under another suffix), or None. Short labels (under 5 characters) are left out: too many
    honest domains sit one letter apart from them."""
    if not domain:
        return None
    raw = label_of(unicode_host(domain))
    label = skeleton(raw)
    for target in targets:
        wanted = label_of(target)
        if target == domain or len(wanted) < 5:
            continue
        if label == wanted:
            if raw != wanted or same_name:  # look-alike characters, or your own name on a domain not yours
                return target
            continue  # a brand's or correspondent's name under another suffix (amazon.fr): not judged
        if distance(label, wanted) <= _allowed(wanted) or wanted in label.split("-"):  # paypa1, paypal-secure
            return target
    return None


def _looks_latin(label: str) -> bool:
    """Mixed scripts in one label, or a label wholly of characters that look like Latin ones."""
    from confusable_homoglyphs import confusables

    return bool(confusables.is_mixed_script(label)) or skeleton(label).isascii()


def _allowed(label: str) -> int:
    return 1 if len(label) < 8 else 2


# --- the rules ------------------------------------------------------------------------------
Rule = Callable[[Mail, dict, Context, Assessment], None]


def rule_authentication(mail: Mail, auth: dict, ctx: Context, out: Assessment) -> None:
    """SPF, DKIM and DMARC as the listener recorded them, and DMARC alignment."""
    spf, dkim, dmarc = (_word(auth.get(k)) for k in ("spf", "dkim", "dmarc"))
    sender = domain_of(mail.from_email) or "the From domain"
    if dmarc == "fail":
        out.hit("dmarc_fail", 3.5, f"DMARC failed for {sender}: the From address is not authenticated")
    if spf == "fail":
        out.hit("spf_fail", 1.5, "SPF failed: the sending server is not allowed to send for the envelope domain")
    elif spf == "softfail":
        out.hit("spf_softfail", 0.5, "SPF soft-failed for the envelope domain")
    if dkim == "fail":
        out.hit("dkim_fail", 1.0, "a DKIM signature did not verify")
    passed = "pass" in (spf, dkim)
    if dmarc != "fail" and passed and not auth.get("dmarc_aligned", dmarc == "pass"):
        out.hit("auth_not_aligned", 1.0, f"SPF or DKIM passed, but not for {sender}")
    elif not passed and dmarc in ("none", ""):
        out.hit("auth_missing", 1.0, "neither SPF nor DKIM passed for this message")


def _word(value: object) -> str:
    if isinstance(value, dict):
        value = value.get("result")
    return str(value or "").lower()


def rule_sender_identity(mail: Mail, auth: dict, ctx: Context, out: Assessment) -> None:
    """A display name carrying another address or a brand; Reply-To on another registrable domain."""
    sender = registrable(domain_of(mail.from_email))
    named = _EMAIL_IN_NAME.search(mail.from_name or "")
    if named and named.group(0).lower() != mail.from_email:
        out.hit("display_name_address", 3.0, f"the display name shows {named.group(0)} but the mail is from "
                                             f"{mail.from_email}")
    name = skeleton((mail.from_name or "").lower())
    for brand, domains in BRANDS.items():
        if re.search(rf"\b{re.escape(brand)}\b", name) and sender not in domains:
            out.hit("brand_in_display_name", 3.0, f"the display name says {brand.title()} but the mail is from {sender}")
            break
    for address in mail.reply_to:
        other = registrable(domain_of(address))
        if other and sender and other != sender and other not in ctx.own_domains:
            out.hit("reply_to_other_domain", 1.5, f"replies go to {other}, not to the sender's {sender}")
            break


def rule_lookalike_sender(mail: Mail, auth: dict, ctx: Context, out: Assessment) -> None:
    """A From domain imitating the tenant's own, a correspondent's or a brand's domain."""
    sender = registrable(domain_of(mail.from_email))
    if not sender or sender in ctx.own_domains or sender in ctx.known_domains:
        return
    _lookalike_hits(sender, ctx, out, "the sender's domain")
    if "xn--" in sender or not unicode_host(sender).isascii():
        if _looks_latin(label_of(unicode_host(sender))):
            out.hit("mixed_script_domain", 4.0, f"the sender's domain {unicode_host(sender)} mixes scripts")
        else:
            out.hit("punycode_domain", 1.5, f"the sender's domain is internationalised ({unicode_host(sender)})")


def _lookalike_hits(domain: str, ctx: Context, out: Assessment, what: str) -> None:
    own = lookalike(domain, ctx.own_domains, same_name=True)
    if own:
        out.hit("lookalike_own_domain", 5.0, f"{what} {unicode_host(domain)} imitates your domain {own}")
        return
    known = lookalike(domain, ctx.known_domains)
    if known:
        out.hit("lookalike_correspondent", 4.5, f"{what} {unicode_host(domain)} imitates {known}, a correspondent")
        return
    brand = lookalike(domain, _brand_domains())
    if brand:
        out.hit("lookalike_brand", 4.0, f"{what} {unicode_host(domain)} imitates {brand}")


@functools.cache
def _brand_domains() -> tuple[str, ...]:
    return tuple(dict.fromkeys(d for domains in BRANDS.values() for d in domains))


_HOSTLIKE = re.compile(r"^(https?://)?(www\.)?([a-z0-9\u00a1-\uffff-]+\.)+[a-z\u00a1-\uffff]{2,}(/\S*)?$", re.I)


def rule_links(mail: Mail, auth: dict, ctx: Context, out: Assessment) -> None:
    """Link text showing one host while href goes to another; punycode, mixed-script, IP,
    look-alike and shortener hosts."""
    sender = registrable(domain_of(mail.from_email))
    for link in mail.links:
        if not link.host:
            continue
        _link_text(link, out)
        host = link.host
        if _is_ip(host):
            out.hit("ip_address_link", 3.0, f"a link goes to the bare address {host}")
            continue
        if host in SHORTENERS or registrable(host) in SHORTENERS:
            out.hit("url_shortener", 1.5, f"a link goes through the shortener {host}")
        shown = unicode_host(host)
        if not shown.isascii():
            if _looks_latin(label_of(shown)):
                out.hit("mixed_script_link", 4.0, f"a link goes to {shown}, which mixes look-alike scripts")
            else:
                out.hit("punycode_link", 1.5, f"a link goes to the internationalised host {shown}")
        target = registrable(host)
        if target != sender and target not in ctx.own_domains and target not in ctx.known_domains:
            _lookalike_hits(target, ctx, out, "a link's host")


def _link_text(link: Link, out: Assessment) -> None:
    text = link.text.strip().rstrip("/").lower()
    if not text or " " in text or not _HOSTLIKE.match(text):
        return
    shown = host_of(text if "://" in text else "http://" + text)
    if shown and registrable(shown) != registrable(link.host) and "." in shown:
        out.hit("link_text_mismatch", 4.0, f"a link shows {shown} but goes to {link.host}")


def rule_content(mail: Mail, auth: dict, ctx: Context, out: Assessment) -> None:
    """Credential forms and wording, urgency and payment wording, instructions aimed at AI readers."""
    text = f"{mail.subject}\n{mail.text}"
    if mail.has_password_field or mail.has_form:
        out.hit("credential_form", 3.0, "the message holds a form" + (" with a password field"
                                                                      if mail.has_password_field else ""))
    found = _CREDENTIALS.search(text)
    if found:
        out.hit("credential_wording", 2.0, f"asks to {found.group(0)!r}")
    credentials = found
    found = _URGENCY.search(text)
    if found:
        out.hit("urgency_wording", 1.5, f"pressing wording: {found.group(0)!r}")
        if credentials:  # a composite, as rspamd has them: the classic lure asks for a login against the clock
            out.hit("credentials_under_pressure", 1.5, "asks for a login or password under time pressure")
    found = _PAYMENT.search(text)
    if found:
        out.hit("payment_wording", 1.5, f"payment wording: {found.group(0)!r}")
    if _INJECTION.search(text):
        out.hit("instructions_to_ai", 0.0, "the text gives instructions to automated readers (not followed)")


def rule_attachments(mail: Mail, auth: dict, ctx: Context, out: Assessment) -> None:
    """Executables, macro documents, double extensions, password-protected archives."""
    for part in mail.attachments:
        name = (part.filename or "").lower().strip()
        parts = name.rsplit(".", 2)
        ext = parts[-1] if len(parts) > 1 else ""
        if len(parts) == 3 and parts[1] in DOCUMENT and ext in EXECUTABLE | MACRO | ARCHIVE:
            out.hit("double_extension", 6.0, f"the attachment {part.filename} hides its type behind .{parts[1]}")
        elif ext in EXECUTABLE:
            out.hit("executable_attachment", 6.0, f"the attachment {part.filename} is a program (.{ext})")
        elif ext in MACRO:
            out.hit("macro_attachment", 4.0, f"the attachment {part.filename} is an Office document with macros")
        if ext == "zip" and _encrypted_zip(part.content):
            out.hit("encrypted_archive", 4.0, f"the archive {part.filename} is password-protected")
        if ext == "zip" and _zip_holds_program(part.content):  # names are readable even when encrypted
            out.hit("executable_in_archive", 6.0, f"the archive {part.filename} holds a program")


def _encrypted_zip(content: bytes) -> bool:
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as archive:
            return any(info.flag_bits & 0x1 for info in archive.infolist()[:100])
    except (zipfile.BadZipFile, ValueError, OSError, EOFError):
        return False


def _zip_holds_program(content: bytes) -> bool:
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as archive:
            return any(n.lower().rsplit(".", 1)[-1] in EXECUTABLE for n in archive.namelist()[:100])
    except (zipfile.BadZipFile, ValueError, OSError, EOFError):
        return False


def rule_history(mail: Mail, auth: dict, ctx: Context, out: Assessment) -> None:
    """A sender this inbox never exchanged mail with."""
    if not ctx.known_sender and registrable(domain_of(mail.from_email)) not in ctx.own_domains:
        out.hit("first_time_sender", 1.0, f"first message from {mail.from_email or 'this sender'}")
        if any(r["code"] in _RISKY_FILES for r in out.reasons):  # a composite: a stranger's risky file
            out.hit("risky_file_from_stranger", 2.0, "a risky attachment from a sender never seen before")


_RISKY_FILES = ("double_extension", "executable_attachment", "macro_attachment", "encrypted_archive",
                "executable_in_archive")


RULES: tuple[Rule, ...] = (rule_authentication, rule_sender_identity, rule_lookalike_sender, rule_links,
                           rule_content, rule_attachments, rule_history)
CODES = ("dmarc_fail", "spf_fail", "spf_softfail", "dkim_fail", "auth_not_aligned", "auth_missing",
         "display_name_address", "brand_in_display_name", "reply_to_other_domain", "lookalike_own_domain",
         "lookalike_correspondent", "lookalike_brand", "mixed_script_domain", "punycode_domain", "link_text_mismatch",
         "ip_address_link", "url_shortener", "mixed_script_link", "punycode_link", "credential_form",
         "credential_wording", "urgency_wording", "credentials_under_pressure", "payment_wording",
         "instructions_to_ai", "double_extension", "executable_attachment", "macro_attachment", "encrypted_archive", "executable_in_archive",
         "first_time_sender", "risky_file_from_stranger", "bayes")


def assess(mail: Mail, authentication: dict, ctx: Context) -> Assessment:
    """Run every builtin rule over one message."""
    out = Assessment()
    for rule in RULES:
        rule(mail, authentication or {}, ctx, out)
    return out


def result(out: Assessment, thresholds: dict | None = None) -> dict:
    """The stored `enrichment.phishing`: {verdict, score, reasons[{code, detail}]}."""
    thresholds = thresholds or DEFAULT_THRESHOLDS
    return {"verdict": out.verdict(thresholds), "score": round(out.score, 2),
            "reasons": [{"code": r["code"], "detail": r["detail"]} for r in out.reasons]}
