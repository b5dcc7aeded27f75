"""HTTP details that both web edges (the API and the web UI) share, free of Flask, so that neither
edge imports the other."""
from __future__ import annotations

from urllib.parse import quote


def content_disposition(filename: str) -> str:
    """A download header that no file name can break: an ASCII fallback and RFC 5987 UTF-8."""
    fallback = "".join(c if c.isascii() and c.isprintable() and c not in '"\\;%' else "_" for c in filename)
    return f"attachment; filename=\"{fallback or 'download'}\"; filename*=UTF-8''{quote(filename, safe='')}"
