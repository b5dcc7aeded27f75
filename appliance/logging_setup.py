"""One logging setup for every process (`gentbox web|smtp|worker`): one line per record on stdout.

log_format = json (the default unless stdout is a terminal; journald gets it): {"time", "level",
"logger", "message"}, plus request_id / message_id / queue_id when the code handling the record
set them (the web request hook, the SMTP handler per message, the worker per queue row), and
"exception" with the traceback. log_format = text (the default on a terminal, as under
`make run`): the same as plain lines.

Secrets never reach the output: every line passes through redact() after formatting, so a
bearer token, an agent token, a password or a sign-up token in a message, an argument or a
traceback is replaced by [redacted].
"""
from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
import re
import sys
from typing import IO

from appliance.config import Settings

FIELDS = ("request_id", "message_id", "queue_id")
_vars: dict[str, contextvars.ContextVar[str | None]] = {
    name: contextvars.ContextVar(f"gentbox_{name}", default=None) for name in FIELDS}

# What must never be written: the value part of each match is replaced.
_SECRETS = [
    re.compile(r"(?i)(\bbearer\s+)([^\s\"',;]+)"),
    re.compile(r"(?i)(\bbasic\s+)([A-Za-z0-9+/=]{8,})"),
    re.compile(r"()(\bgent_[A-Za-z0-9_\-]{8,})"),  # agent tokens, wherever they appear
]
# key=value, key: value, "key": "value" (its quotes escaped too, inside a JSON line) for keys that
# name secrets; a quoted value is redacted up to its closing quote, spaces and all.
_KEYS = (r"(?:password|passphrase|secret|secret_key|token|access_token|refresh_token|signup_token"
         r"|api_key|authorization|totp_code)")
_QUOTED = re.compile(r"(?i)(" + _KEYS + r"(?:\\?[\"'])?\s*[:=]\s*(\\?[\"']))(.*?)(\2)")
_BARE = re.compile(r"(?i)(" + _KEYS + r"(?:\\?[\"'])?\s*[:=]\s*)([^\s\"'\\&,;}]+)")
REDACTED = "[redacted]"
# A word that each pattern above needs: a line with none of them (most lines, every access line)
# is returned after one scan instead of five substitutions.
_MAYBE_SECRET = re.compile(r"(?i)bearer|basic|gent_|password|passphrase|secret|token|api_key|authorization"
                           r"|totp_code")


def redact(text: str) -> str:
    """text with every secret-looking value replaced by [redacted]."""
    if not _MAYBE_SECRET.search(text):
        return text
    for pattern in _SECRETS:
        text = pattern.sub(lambda m: m.group(1) + REDACTED, text)
    text = _QUOTED.sub(lambda m: m.group(1) + REDACTED + m.group(4), text)
    return _BARE.sub(lambda m: m.group(1) + REDACTED, text)


def set_log_fields(**fields: str | None) -> None:
    """Attach request_id / message_id / queue_id to every record logged from this context on
    (an asyncio task, a thread, or a request), until set again."""
    for name, value in fields.items():
        _vars[name].set(value)


def log_fields() -> dict[str, str]:
    """The fields set in this context."""
    return {name: value for name, var in _vars.items() if (value := var.get()) is not None}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        body = {"time": dt.datetime.fromtimestamp(record.created, dt.timezone.utc).isoformat(timespec="milliseconds")
                .replace("+00:00", "Z"), "level": record.levelname, "logger": record.name,
                "message": record.getMessage(), **log_fields()}
        if record.exc_info:
            body["exception"] = self.formatException(record.exc_info)
        elif record.stack_info:
            body["exception"] = self.formatStack(record.stack_info)
        return redact(json.dumps(body, ensure_ascii=False, default=str))


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = log_fields()
        if fields:
            line += " [" + " ".join(f"{k}={v}" for k, v in fields.items()) + "]"
        return redact(line)


def make_handler(settings: Settings, stream: IO[str] | None = None) -> logging.Handler:
    """A handler writing this appliance's log lines to stream (stdout by default)."""
    stream = stream or sys.stdout
    handler = logging.StreamHandler(stream)
    text = settings.log_format == "text" or (settings.log_format == "auto" and stream.isatty())
    handler.setFormatter(TextFormatter() if text else JsonFormatter())
    return handler


def setup_logging(settings: Settings, stream: IO[str] | None = None) -> logging.Handler:
    """Route every logger of this process through one handler; returns it."""
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    handler = make_handler(settings, stream)
    root.addHandler(handler)
    root.setLevel(settings.log_level)
    # aiosmtpd logs every SMTP command at INFO; keep its warnings and errors.
    logging.getLogger("mail.log").setLevel("DEBUG" if settings.log_level == "DEBUG" else "WARNING")
    for name in ("gunicorn.error", "gunicorn.access"):
        logger = logging.getLogger(name)
        for old in list(logger.handlers):
            logger.removeHandler(old)
        logger.propagate = True
    logging.captureWarnings(True)
    return handler
