"""MTA-STS (RFC 8461): the policy served at https://mta-sts.<domain>/.well-known/mta-sts.txt."""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from appliance.config import Settings
from appliance.errors import NotFoundError
from appliance.models import Domain

MAX_AGE = 7 * 86400  # a week: long enough to protect, short enough to change mode


def policy_for_host(db: Session, settings: Settings, host: str) -> str:
    """The policy text for an `mta-sts.<domain>` host of a hosted, verified domain."""
    host = (host or "").split(":", 1)[0].strip().lower().rstrip(".")
    if not host.startswith("mta-sts."):
        raise NotFoundError("MTA-STS policies are served on mta-sts.<domain> hosts.")
    domain = db.scalar(select(Domain).where(Domain.name == host[len("mta-sts."):]))
    if domain is None or domain.status != "verified":
        raise NotFoundError("No MTA-STS policy for this host.")
    # testing first: receivers report (TLS-RPT) but still deliver while TLS is being set up.
    return (f"version: STSv1\r\nmode: testing\r\nmx: {settings.hostname}\r\n"
            f"max_age: {MAX_AGE}\r\n")
