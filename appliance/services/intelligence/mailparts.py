"""What the builtin intelligence reads of a message: one parse of its raw bytes into the parts the
phishing rules, the naive Bayes tokens and the next step look at (issue 21).

The raw bytes are parsed here, not the stored row's fields, because the rules need what the stored
copy's display form drops: the original HTML (forms, link text next to its `href`), the
List-Unsubscribe header, and attachment bytes (a password-protected ZIP). Parsing never raises:
hostile input yields what could be read.
"""
from __future__ import annotations

import html.parser
import re
from dataclasses import dataclass, field
from email import policy
from email.header import decode_header, make_header
from email.message import Message
from email.parser import BytesParser
from email.utils import getaddresses
from urllib.parse import urlsplit

MAX_TEXT = 200_000  # characters of body read: enough for any rule, bounded for hostile mail
MAX_LINKS = 200
MAX_PARTS = 100


@dataclass
class Link:
    text: str  # the visible text of <a>, or the URL itself for a bare link in text
    href: str
    host: str  # lower case, without port; "" when the href has none (mailto:, relative)


@dataclass
class Part:
    filename: str
    content_type: str
    content: bytes


@dataclass
class Mail:
    subject: str = ""
    from_email: str = ""
    from_name: str = ""
    reply_to: list[str] = field(default_factory=list)
    to: list[str] = field(default_factory=list)
    text: str = ""
    html: str = ""
    links: list[Link] = field(default_factory=list)
    attachments: list[Part] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)  # lower-case name -> value, the few read
    has_form: bool = False
    has_password_field: bool = False


_READ_HEADERS = ("list-unsubscribe", "list-id", "precedence", "auto-submitted", "content-type")
_URL = re.compile(r"\bhttps?://[^\s<>\"')\]]+", re.I)


def host_of(url: str) -> str:
    """The lower-case host of a URL ('' when it has none or cannot be read)."""
    try:
        host = urlsplit(url.strip()).hostname or ""
    except ValueError:
        return ""
    return host.rstrip(".").lower()


class _Anchors(html.parser.HTMLParser):
    """Links with their visible text, and whether the HTML holds a form or a password field."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[Link] = []
        self.text: list[str] = []
        self.has_form = self.has_password = False
        self._href: str | None = None
        self._anchor: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        values = {k: (v or "") for k, v in attrs}
        if tag == "a" and "href" in values:
            self._href, self._anchor = values["href"], []
        elif tag == "form":
            self.has_form = True
        elif tag == "input" and values.get("type", "").lower() == "password":
            self.has_password = True
        elif tag in ("script", "style"):
            self._skip += 1
        elif tag in ("br", "p", "div", "tr", "li"):
            self.text.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._href is not None:
            if len(self.links) < MAX_LINKS:
                self.links.append(Link(" ".join("".join(self._anchor).split()), self._href, host_of(self._href)))
            self._href = None
        elif tag in ("script", "style") and self._skip:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        self.text.append(data)
        if self._href is not None:
            self._anchor.append(data)


def _text(part: Message) -> str:
    payload = part.get_payload(decode=True) or b""
    if isinstance(payload, str):
        return payload
    try:
        return payload.decode(part.get_content_charset() or "utf-8", "replace")
    except LookupError:  # an unknown charset name
        return payload.decode("utf-8", "replace")


def _decoded(value: object) -> str:
    """A header value with its RFC 2047 encoded words decoded."""
    try:
        return str(make_header(decode_header(str(value))))
    except Exception:  # noqa: BLE001 - a malformed encoded word: the value as it came
        return str(value)


def _addresses(msg: Message, name: str) -> list[tuple[str, str]]:
    try:
        values = [str(v) for v in msg.get_all(name, [])]
        return [(_decoded(n).strip(), a.strip().lower()) for n, a in getaddresses(values) if a]
    except Exception:  # noqa: BLE001 - an unparseable header counts as absent
        return []


def read_mail(raw: bytes) -> Mail:
    """The parts of raw the rules read; never raises. Parsed with the compat32 policy: the default
    policy's header objects cost several times the whole rule set, and the few headers read here
    are decoded by hand."""
    mail = Mail()
    try:
        msg = BytesParser(policy=policy.compat32).parsebytes(raw)
        _fill_headers(mail, msg)
        _fill_body(mail, msg)
    except Exception:  # noqa: BLE001 - hostile input: keep what was read
        pass
    return mail


def _fill_headers(mail: Mail, msg: Message) -> None:
    try:
        mail.subject = " ".join(_decoded(msg.get("Subject", "")).split())[:998]
    except Exception:  # noqa: BLE001
        mail.subject = ""
    senders = _addresses(msg, "From")
    if senders:
        mail.from_name, mail.from_email = senders[0]
    mail.reply_to = [a for _, a in _addresses(msg, "Reply-To")]
    mail.to = [a for _, a in _addresses(msg, "To") + _addresses(msg, "Cc")]
    for name in _READ_HEADERS:
        try:
            value = msg.get(name)
        except Exception:  # noqa: BLE001
            value = None
        if value is not None:
            mail.headers[name] = str(value)[:2000]


def _fill_body(mail: Mail, msg: Message) -> None:
    texts: list[str] = []
    for index, part in enumerate(msg.walk()):
        if index >= MAX_PARTS:
            break
        if part.is_multipart():
            continue
        ctype = part.get_content_type()
        filename = _decoded(part.get_filename() or "")
        if filename or part.get_content_disposition() == "attachment" or part.get_content_maintype() != "text":
            payload = part.get_payload(decode=True) or b""
            mail.attachments.append(Part(filename, ctype, payload if isinstance(payload, bytes) else b""))
            continue
        content = _text(part)
        if ctype == "text/html" and not mail.html:
            mail.html = content[:MAX_TEXT]
        elif ctype == "text/calendar":
            mail.attachments.append(Part("", ctype, content.encode("utf-8", "replace")))
        elif ctype == "text/plain":
            texts.append(content)
    mail.text = "\n".join(texts)[:MAX_TEXT]
    _fill_links(mail)


def _fill_links(mail: Mail) -> None:
    if mail.html:
        anchors = _Anchors()
        try:
            anchors.feed(mail.html)
            anchors.close()
        except Exception:  # noqa: BLE001 - broken markup: the links read so far
            pass
        mail.links, mail.has_form, mail.has_password_field = anchors.links, anchors.has_form, anchors.has_password
        if not mail.text:
            mail.text = "".join(anchors.text)[:MAX_TEXT]
    seen = {link.href for link in mail.links}
    for url in _URL.findall(mail.text):
        if url not in seen and len(mail.links) < MAX_LINKS:
            seen.add(url)
            mail.links.append(Link(url, url, host_of(url)))
