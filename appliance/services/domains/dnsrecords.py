"""The DNS records a domain needs, and how what DNS returns compares to them.

Pure functions of the domain, its options and the settings: no I/O here. Comparison is by
meaning, not by string: TXT records split into several strings are joined before they get here;
case, whitespace, tag order and trailing dots do not matter.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from appliance.config import Settings

SPF_LOOKUP_LIMIT = 10
_LOOKUP_MECHANISMS = ("include:", "a", "mx", "ptr", "exists:", "redirect=")
_DMARC_STRICTNESS = {"none": 0, "quarantine": 1, "reject": 2}


@dataclass(frozen=True)
class DomainSpec:
    name: str  # punycode
    domain_use: str  # existing_domain | dedicated_subdomain
    dmarc_policy: str
    verification_token: str
    # (selector, public key base64[, signs[, algorithm]]) for each listed key. Only the signing
    # RSA key's record is required; a rotation's pending key, a retiring one and every Ed25519 key
    # (RSA verifies without it) are listed but optional.
    dkim: tuple[tuple, ...]
    mta_sts_id: str = ""


@dataclass(frozen=True)
class Record:
    type: str
    host: str  # relative to the domain: "@", "_dmarc", ...
    value: str
    purpose: str
    required: bool
    warnings: tuple[str, ...] = field(default=())

    @property
    def key(self) -> str:
        return f"{self.purpose}:{self.host}"

    def fqdn(self, domain: str) -> str:
        return domain if self.host == "@" else f"{self.host}.{domain}"


# --- building --------------------------------------------------------------------------------
def appliance_spf_mechanisms(settings: Settings) -> list[str]:
    mechs = []
    if settings.public_ipv4:
        mechs.append(f"ip4:{settings.public_ipv4}")
    if settings.public_ipv6:
        mechs.append(f"ip6:{settings.public_ipv6}")
    return mechs or [f"a:{settings.hostname}"]


def spf_terms(value: str) -> list[str]:
    return value.split()[1:] if is_spf(value) else []


def is_spf(value: str) -> bool:
    return value.strip().lower().startswith("v=spf1") and (len(value.strip()) == 6 or value.strip()[6] == " ")


def _before_all(terms: list[str]) -> list[str]:
    """The terms a receiver evaluates: evaluation stops at the first `all` mechanism."""
    end = next((i for i, t in enumerate(terms) if t.lower().lstrip("+-~?") == "all"), len(terms))
    return terms[:end]


def _pass_terms(terms: list[str]) -> set[str]:
    """Terms in lower case with the default `+` qualifier made implicit (`+mx` means `mx`)."""
    return {t.lower().removeprefix("+") for t in terms}


def merge_spf(existing: str | None, mechanisms: list[str], default_all: str) -> str:
    """Our mechanisms added to an existing SPF record before its `all` (or redirect) term."""
    if not existing:
        return " ".join(["v=spf1", *mechanisms, default_all])
    terms = spf_terms(existing)
    present = _pass_terms(_before_all(terms))
    missing = [m for m in mechanisms if m.lower() not in present]
    # A copy of ours after `all` authorises nothing: it moves in front of it.
    moved = {m.lower() for m in missing}
    terms = [t for t in terms if t.lower().removeprefix("+") not in moved]
    lower = [t.lower() for t in terms]
    tail_index = next((i for i, t in enumerate(lower) if t.lstrip("+-~?") == "all" or t.startswith("redirect=")),
                      len(terms))
    merged = terms[:tail_index] + missing + terms[tail_index:]
    return " ".join(["v=spf1", *merged])


def spf_lookup_count(value: str) -> int:
    count = 0
    for term in spf_terms(value):
        term = term.lower().lstrip("+-~?")
        if term.startswith(("include:", "exists:", "redirect=")) or term in ("a", "mx", "ptr") \
                or term.startswith(("a:", "a/", "mx:", "mx/", "ptr:")):
            count += 1
    return count


def build_records(spec: DomainSpec, settings: Settings, existing_spf: str | None = None) -> list[Record]:
    """The five required records and the two optional ones, in the order to publish them."""
    dedicated = spec.domain_use == "dedicated_subdomain"
    spf = merge_spf(existing_spf, appliance_spf_mechanisms(settings), "-all" if dedicated else "~all")
    spf_warnings = ()
    if spf_lookup_count(spf) > SPF_LOOKUP_LIMIT:
        spf_warnings = (f"This SPF record needs {spf_lookup_count(spf)} DNS lookups; receivers stop at "
                        f"{SPF_LOOKUP_LIMIT} and then treat SPF as failed. Replace include: terms with "
                        "ip4:/ip6: ranges.",)
    records = [
        Record("MX", "@", f"10 {settings.hostname}.", "mx", True),
        Record("TXT", "@", spf, "spf", True, spf_warnings),
    ]
    for selector, public_key, *more in spec.dkim:
        signs, algorithm = (more + [True, "rsa"][len(more):])[:2]
        records.append(Record("TXT", f"{selector}._domainkey", f"v=DKIM1; k={algorithm}; p={public_key}", "dkim",
                              signs and algorithm == "rsa"))
    records += [
        Record("TXT", "_dmarc", f"v=DMARC1; p={spec.dmarc_policy}; adkim=r; aspf=r; "
               f"rua=mailto:postmaster@{spec.name}", "dmarc", True),
        Record("TXT", "_gent-verify", f"gent-verify={spec.verification_token}", "verification", True),
        Record("TXT", "_mta-sts", f"v=STSv1; id={spec.mta_sts_id or '1'}", "mta_sts", False),
        Record("TXT", "_smtp._tls", f"v=TLSRPTv1; rua=mailto:postmaster@{spec.name}", "tls_rpt", False),
    ]
    return records


# --- comparing -------------------------------------------------------------------------------
def tags(value: str) -> dict[str, str]:
    """`k=v; k2=v2` tag lists (DKIM, DMARC, MTA-STS, TLS-RPT) as a dict, keys lower case."""
    out: dict[str, str] = {}
    for part in value.split(";"):
        if "=" in part:
            key, _, val = part.partition("=")
            out[key.strip().lower()] = re.sub(r"\s+", "", val) if key.strip().lower() == "p" else val.strip()
    return out


def matches(record: Record, found: list[str], domain: str) -> bool:
    """Does what DNS returned satisfy record, by meaning?"""
    purpose = record.purpose
    if purpose == "mx":
        want = record.value.split()[1].rstrip(".").lower()
        parsed = sorted((int(p), h.rstrip(".").lower()) for p, h in (f.split(None, 1) for f in found))
        return bool(parsed) and any(h == want for p, h in parsed if p == parsed[0][0])
    if purpose == "spf":
        spfs = [f for f in found if is_spf(f)]
        if len(spfs) != 1:  # none, or several (a permanent error for receivers)
            return False
        have = _pass_terms(_before_all(spf_terms(spfs[0])))
        return _pass_terms(_before_all(spf_terms(record.value))) <= have
    if purpose == "dkim":
        want = tags(record.value)
        return any(tags(f).get("p") == want["p"] and tags(f).get("k", "rsa").lower() == want.get("k", "rsa")
                   and tags(f).get("v", "DKIM1").upper() == "DKIM1" for f in found)
    if purpose == "dmarc":
        want = tags(record.value)["p"]
        for f in found:
            have = tags(f)
            if have.get("v", "").upper() == "DMARC1" and \
                    _DMARC_STRICTNESS.get(have.get("p", "").lower(), -1) >= _DMARC_STRICTNESS[want]:
                return True
        return False
    if purpose in ("mta_sts", "tls_rpt"):
        version = tags(record.value)["v"].upper()
        return any(tags(f).get("v", "").upper() == version for f in found)
    return any(f.strip() == record.value for f in found)  # verification token: exact


def existing_spf(found_txt: list[str]) -> str | None:
    spfs = [f for f in found_txt if is_spf(f)]
    return spfs[0] if len(spfs) == 1 else None
