"""A corpus of malformed and hostile messages, shared by the parser's unit tests and the SMTP
listener's malformed-mail tests. Every message uses CRLF line ends (bare CR/LF is refused at the
SMTP edge, which tests/integration/test_smtp_smuggling.py covers) and ends in CRLF."""
from __future__ import annotations

import base64
import io
import zipfile
from dataclasses import dataclass, field

from hypothesis import strategies as st

CRLF = b"\r\n"


@dataclass(frozen=True)
class Case:
    name: str
    raw: bytes
    subject: str | None = None  # the subject the parser must still read, when it is readable
    text_contains: str | None = None  # a piece of the text body the parser must keep
    attachment_names: tuple[str, ...] = ()  # file names (after sanitising) the parser must keep
    parse_error: bool | None = None  # True: parse_error must be set; False: must not be; None: either
    smtp_rejectable: bool = False  # the SMTP edge may refuse it (5xx) instead of storing it
    extra: dict = field(default_factory=dict)


def _headers(subject: str, extra: bytes = b"") -> bytes:
    return (b"From: Mallory <mallory@sender.example>\r\nTo: agent@acme.example\r\n"
            b"Subject: " + subject.encode() + b"\r\nMessage-ID: <" + subject.replace(" ", ".").encode()
            + b"@sender.example>\r\nDate: Mon, 01 Jan 2024 10:00:00 +0000\r\nMIME-Version: 1.0\r\n" + extra)


def zip_bomb_shaped() -> bytes:
    """A zip of ~90 KB whose one member (zip64) inflates to 64 MiB of zeros: the shape of a zip
    bomb, kept small enough to send. Nothing in Gentbox may ever decompress it."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        with archive.open("zeros.bin", "w", force_zip64=True) as member:
            chunk = bytes(1 << 20)
            for _ in range(64):
                member.write(chunk)
    return buffer.getvalue()


def _b64_lines(data: bytes) -> bytes:
    return base64.encodebytes(data).replace(b"\n", CRLF)


def build() -> list[Case]:
    cases: list[Case] = []

    # 1. A multipart that names a boundary which never appears.
    cases.append(Case("missing-boundary", _headers(
        "missing boundary", b'Content-Type: multipart/mixed; boundary="never-there"\r\n')
        + b"\r\nThis body has no parts at all.\r\nJust text.\r\n",
        subject="missing boundary", parse_error=True))

    # 2. A multipart without a boundary parameter.
    cases.append(Case("no-boundary-parameter", _headers(
        "no boundary parameter", b"Content-Type: multipart/mixed\r\n")
        + b"\r\n--x\r\nContent-Type: text/plain\r\n\r\nhello\r\n--x--\r\n",
        subject="no boundary parameter", parse_error=True))

    # 3. Parts opened but never closed (no closing boundary).
    cases.append(Case("unterminated-multipart", _headers(
        "unterminated multipart", b'Content-Type: multipart/mixed; boundary="b1"\r\n')
        + b"\r\n--b1\r\nContent-Type: text/plain\r\n\r\nfirst part survives\r\n"
          b"--b1\r\nContent-Type: application/pdf; name=\"report.pdf\"\r\n"
          b"Content-Disposition: attachment; filename=\"report.pdf\"\r\n"
          b"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n",
        subject="unterminated multipart", text_contains="first part survives",
        attachment_names=("report.pdf",), parse_error=True))

    # 4. Broken base64: wrong padding, characters outside the alphabet, truncated quantum.
    cases.append(Case("broken-base64", _headers(
        "broken base64", b'Content-Type: multipart/mixed; boundary="b2"\r\n')
        + b"\r\n--b2\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
          b"SGVsbG8gd29ybGQ=!!**@@\r\nSGVsbG8\r\n"
          b"--b2\r\nContent-Type: image/png\r\nContent-Disposition: attachment; filename=\"pic.png\"\r\n"
          b"Content-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo===\r\n%%%%\r\nA\r\n--b2--\r\n",
        subject="broken base64", attachment_names=("pic.png",)))

    # 5. Raw 8-bit bytes in headers (Latin-1 and invalid UTF-8), no RFC 2047.
    cases.append(Case("8bit-headers",
        b"From: J\xe9r\xf4me <jerome@sender.example>\r\nTo: agent@acme.example\r\n"
        b"Subject: caf\xe9 \xff\xfe na\xefve \xc3\xa9t\xc3\xa9\r\nX-Junk: \x80\x81\x82\xc0\xc1\r\n"
        b"Message-ID: <8bit@sender.example>\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n\r\nBody after 8-bit headers.\r\n",
        text_contains="Body after 8-bit headers."))

    # 6. A 998+ byte line in the body (RFC 5322's limit), and a 5,000 byte one.
    cases.append(Case("long-line-999", _headers("long line 999", b"Content-Type: text/plain\r\n")
        + b"\r\n" + b"a" * 999 + b"\r\nafter the long line\r\n",
        subject="long line 999", text_contains="after the long line", smtp_rejectable=True))
    cases.append(Case("long-line-5000", _headers("long line 5000", b"Content-Type: text/plain\r\n")
        + b"\r\n" + b"b" * 5000 + b"\r\nend\r\n",
        subject="long line 5000", text_contains="end", smtp_rejectable=True))
    # A header line over 998 bytes (one unfolded Subject).
    cases.append(Case("long-header-line", _headers("long header", b"X-Long: " + b"h" * 1200 + b"\r\n")
        + b"\r\nshort body\r\n", subject="long header", text_contains="short body", smtp_rejectable=True))

    # 7. 50,000 headers.
    many = b"".join(b"X-Filler-%d: value %d\r\n" % (i, i) for i in range(50_000))
    cases.append(Case("50000-headers", _headers("fifty thousand headers", many)
        + b"Content-Type: text/plain\r\n\r\nbody under many headers\r\n",
        subject="fifty thousand headers", text_contains="body under many headers"))

    # 8. 200-level nested multiparts, the innermost holding a text part.
    depth = 200
    nested = b"Content-Type: text/plain\r\n\r\ndeep inside\r\n"
    for level in reversed(range(depth)):
        nested = (b'Content-Type: multipart/mixed; boundary="n%d"\r\n\r\n--n%d\r\n' % (level, level)
                  + nested + b"--n%d--\r\n" % level)
    cases.append(Case("nested-200", _headers("nested two hundred") + nested,
                      subject="nested two hundred"))

    # 9. A zip-bomb-shaped attachment: a few KB that inflates to 64 MiB.
    bomb = zip_bomb_shaped()
    cases.append(Case("zip-bomb", _headers("zip bomb", b'Content-Type: multipart/mixed; boundary="z"\r\n')
        + b"\r\n--z\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"
          b"--z\r\nContent-Type: application/zip\r\nContent-Disposition: attachment; filename=\"bomb.zip\"\r\n"
          b"Content-Transfer-Encoding: base64\r\n\r\n" + _b64_lines(bomb) + b"--z--\r\n",
        subject="zip bomb", text_contains="see attached", attachment_names=("bomb.zip",),
        parse_error=False, extra={"attachment": bomb}))

    # 10. A 10 MB base64 attachment.
    big = bytes(range(256)) * (10 * 1024 * 1024 // 256)
    cases.append(Case("10mb-attachment", _headers(
        "ten megabytes", b'Content-Type: multipart/mixed; boundary="big"\r\n')
        + b"\r\n--big\r\nContent-Type: text/plain\r\n\r\nbig one attached\r\n"
          b"--big\r\nContent-Type: application/octet-stream\r\n"
          b"Content-Disposition: attachment; filename=\"big.bin\"\r\n"
          b"Content-Transfer-Encoding: base64\r\n\r\n" + _b64_lines(big) + b"--big--\r\n",
        subject="ten megabytes", text_contains="big one attached", attachment_names=("big.bin",),
        parse_error=False, extra={"attachment": big}))

    # 11. Invalid and unknown charsets, in the body and in encoded words.
    cases.append(Case("invalid-charset", _headers(
        "invalid charset", b"Content-Type: text/plain; charset=x-no-such-charset-42\r\n"
                            b"Content-Transfer-Encoding: 8bit\r\n")
        + b"\r\ncaf\xc3\xa9 and \xff bytes\r\n", subject="invalid charset", text_contains="caf"))
    cases.append(Case("charset-mismatch", _headers(
        "charset mismatch", b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n")
        + b"\r\nlatin-1 \xe9\xe8 in a utf-8 part\r\n", subject="charset mismatch", text_contains="latin-1"))
    cases.append(Case("charset-utf7-html", _headers(
        "utf7 html", b"Content-Type: text/html; charset=utf-7\r\n")
        + b"\r\n+ADw-script+AD4-alert(1)+ADw-/script+AD4-<p>visible words</p>\r\n",
        subject="utf7 html", text_contains="visible words"))

    # 12. RFC 2047 garbage.
    cases.append(Case("rfc2047-garbage",
        b"From: =?utf-8?B?!!!not base64!!!?= <x@sender.example>\r\nTo: =?bogus?Q?=ZZ=?= <agent@acme.example>\r\n"
        b"Subject: =?no-such-charset?B?SGVsbG8=?= =?utf-8?Q?caf=C3=A9?= =?utf-8?B?broken=?= =?utf-8?X?x?=\r\n"
        b"Message-ID: <2047@sender.example>\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: multipart/mixed; boundary=\"e\"\r\n\r\n--e\r\nContent-Type: text/plain\r\n\r\nbody\r\n"
        b"--e\r\nContent-Type: application/octet-stream; name=\"=?utf-8?B?Li4vLi4vZXRjL3Bhc3N3ZA==?=\"\r\n"
        b"Content-Disposition: attachment; filename*=utf-8''..%2F..%2Fetc%2Fshadow%00.txt\r\n\r\nsecret\r\n"
        b"--e--\r\n", text_contains="body"))

    # 13. NUL bytes in headers, body and a file name.
    cases.append(Case("nul-bytes",
        b"From: nul\x00 <nul@sender.example>\r\nTo: agent@acme.example\r\nSubject: has\x00nul\r\n"
        b"Message-ID: <nul@sender.example>\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: multipart/mixed; boundary=\"nn\"\r\n\r\n--nn\r\nContent-Type: text/plain\r\n\r\n"
        b"before\x00after\r\n--nn\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Disposition: attachment; filename=\"a\x00b.txt\"\r\n\r\n\x00\x00\x00\r\n--nn--\r\n",
        text_contains="beforeafter"))

    # 14. Hostile attachment names: paths, control characters, reserved characters, huge.
    cases.append(Case("hostile-filenames", _headers(
        "hostile filenames", b'Content-Type: multipart/mixed; boundary="f"\r\n')
        + b"\r\n--f\r\nContent-Type: text/plain\r\n\r\nnames\r\n"
          b"--f\r\nContent-Disposition: attachment; filename=\"../../../../etc/passwd\"\r\n\r\nx\r\n"
          b"--f\r\nContent-Disposition: attachment; filename=\"C:\\\\Windows\\\\evil.exe\"\r\n\r\nx\r\n"
          b"--f\r\nContent-Disposition: attachment; filename=\"" + b"n" * 600 + b".txt\"\r\n\r\nx\r\n"
          b"--f\r\nContent-Disposition: attachment; filename=\"..\"\r\n\r\nx\r\n"
          b"--f--\r\n",
        subject="hostile filenames", text_contains="names"))

    # 15. A header block with no body at all, and an empty message.
    cases.append(Case("headers-only", b"Subject: headers only\r\n", subject="headers only"))
    cases.append(Case("not-a-message", b"\x00\x01\x02\xff\xfe garbage \r\n\r\n\xff\r\n"))
    cases.append(Case("header-without-colon", b"this is not a header\r\nSubject: late\r\n\r\nbody\r\n",
                      parse_error=True))

    # 16. Many sibling parts (far more than the parser looks at).
    parts = b"".join(b"--m\r\nContent-Type: application/octet-stream\r\n"
                     b"Content-Disposition: attachment; filename=\"f%d.bin\"\r\n\r\n%d\r\n" % (i, i)
                     for i in range(3000))
    cases.append(Case("3000-parts", _headers("three thousand parts",
                                             b'Content-Type: multipart/mixed; boundary="m"\r\n')
                      + b"\r\n" + parts + b"--m--\r\n", subject="three thousand parts", parse_error=True))

    # 17. quoted-printable garbage and a message/rfc822 that is not a message.
    cases.append(Case("qp-garbage", _headers(
        "qp garbage", b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n")
        + b"\r\n=ZZ=4=\r\n=C3=A9t=C3=A9 soft=\r\nbreak\r\n", subject="qp garbage", text_contains="t"))
    cases.append(Case("bad-rfc822", _headers(
        "bad rfc822", b'Content-Type: multipart/mixed; boundary="r"\r\n')
        + b"\r\n--r\r\nContent-Type: text/plain\r\n\r\nouter\r\n--r\r\nContent-Type: message/rfc822\r\n"
          b"Content-Transfer-Encoding: base64\r\n\r\n\xff\xfe\x00not a message\r\n--r--\r\n",
        subject="bad rfc822", text_contains="outer"))
    # 18. Unknown transfer encoding and a Content-Type that is nonsense.
    cases.append(Case("nonsense-content-type", _headers(
        "nonsense type", b"Content-Type: ;;;/;; charset==\r\nContent-Transfer-Encoding: x-uuencode-ish\r\n")
        + b"\r\nstill text\r\n", subject="nonsense type", text_contains="still text"))
    return cases


# hypothesis strategies: messages built from random headers, parts, encodings and bytes

HEADER_NAMES = ["Subject", "From", "To", "Cc", "Reply-To", "Message-ID", "In-Reply-To", "References",
                "Date", "Content-Type", "Content-Transfer-Encoding", "Content-Disposition", "Content-ID",
                "MIME-Version", "X-Random"]
CHARSETS = ["utf-8", "iso-8859-1", "us-ascii", "utf-16", "utf-7", "x-bogus", "", "utf-8\x00", "big5",
            "cp1252", "'\"", "utf-32"]
ENCODINGS = ["7bit", "8bit", "binary", "base64", "quoted-printable", "x-gzip", "", "base64 base64"]
TYPES = ["text/plain", "text/html", "application/octet-stream", "image/png", "application/zip",
         "message/rfc822", "multipart/mixed", "text/", "/", "x", "message/delivery-status",
         "multipart/alternative", "text/calendar"]

raw_bytes = st.binary(max_size=300).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"\r\n"))
header_text = st.one_of(
    st.text(max_size=120).map(lambda s: s.encode("utf-8", "surrogatepass")),
    raw_bytes.map(lambda b: b.replace(b"\r\n", b" ")),
    st.builds(lambda cs, enc, payload: b"=?%s?%s?%s?=" % (cs.encode("utf-8", "replace"), enc, payload),
              st.sampled_from(CHARSETS), st.sampled_from([b"B", b"Q", b"b", b"X", b""]),
              st.binary(max_size=40).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))),
    st.sampled_from([b"<a@b>", b"<>", b"<<<", b"\"x\" <y@z>", b"a@b, c@d, ,,", b"undisclosed-recipients:;",
                     b"=?utf-8?B?PGFAYj4=?=", b"Mon, 32 Foo 99999 25:61:61 +9999"]))


def header_line(name: bytes, value: bytes) -> bytes:
    return name + b": " + value.replace(b"\r", b"").replace(b"\n", b"") + b"\r\n"


@st.composite
def parts(draw, depth: int = 0) -> bytes:
    ctype = draw(st.sampled_from(TYPES))
    headers = []
    boundary = draw(st.sampled_from([b"b%d" % depth, b"", b"--", b"\"q\"", b"b%d" % (depth + 1)]))
    params = draw(st.sampled_from([b"", b"; charset=" + draw(st.sampled_from(CHARSETS)).encode(),
                                   b'; name="' + draw(raw_bytes).replace(b"\r\n", b"")[:60] + b'"']))
    if ctype.startswith("multipart/"):
        params += b'; boundary="' + boundary + b'"'
    headers.append(header_line(b"Content-Type", ctype.encode() + params))
    if draw(st.booleans()):
        headers.append(header_line(b"Content-Transfer-Encoding", draw(st.sampled_from(ENCODINGS)).encode()))
    if draw(st.booleans()):
        headers.append(header_line(b"Content-Disposition", draw(st.sampled_from(
            [b"attachment", b"inline", b"bogus", b""])) + b'; filename="' + draw(header_text)[:80] + b'"'))
    for _ in range(draw(st.integers(0, 3))):
        headers.append(header_line(draw(st.sampled_from(HEADER_NAMES)).encode(), draw(header_text)))
    if ctype.startswith("multipart/") and depth < 4:
        children = draw(st.lists(parts(depth + 1), max_size=4))
        close = draw(st.booleans())
        body = b"".join(b"--" + boundary + b"\r\n" + child for child in children)
        body += (b"--" + boundary + b"--\r\n") if close else b""
    else:
        body = draw(st.one_of(raw_bytes, raw_bytes.map(lambda b: base64.encodebytes(b)
                                                       .replace(b"\n", b"\r\n"))))
    return b"".join(headers) + b"\r\n" + body + b"\r\n"


@st.composite
def messages(draw) -> bytes:
    top = [header_line(draw(st.sampled_from(HEADER_NAMES)).encode(), draw(header_text))
           for _ in range(draw(st.integers(0, 12)))]
    if draw(st.booleans()):
        top.append(header_line(draw(st.text(min_size=1, max_size=20)).encode("utf-8", "surrogatepass")
                               .replace(b":", b""), draw(header_text)))
    body = draw(st.one_of(parts(), raw_bytes))
    return b"".join(top) + draw(st.sampled_from([b"", b"MIME-Version: 1.0\r\n"])) + body


