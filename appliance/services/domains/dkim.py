"""Per-domain DKIM keys (generation, encrypted storage, signing-key lookup, rotation) and the
outbound signature itself.

Signing guards against replay and tampering in two ways (issue 14): every field in the signed
set is listed in h= once more than the message has it (over-signing, RFC 6376 8.15), so nobody
can add a Reply-To, a Cc or a second Subject to a signed message, even where we sent none; and
the signature carries x= (settings.dkim_expiry after t=), so a captured message cannot be
replayed for ever.

Each domain signs with two keys (issue 26): RSA-2048 (rsa-sha256, what every receiver checks)
and Ed25519 (ed25519-sha256, RFC 8463), each under its own selector. dkimpy canonicalises the
message and selects the signed fields; the signature step itself runs in OpenSSL through
`cryptography`, with each private key unsealed and loaded once per process (`_loaded`), not parsed
per message as dkimpy's pure-Python RSA does.
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from email import policy
from email.parser import BytesHeaderParser

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa, utils
from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from appliance.clock import utcnow
from appliance.config import Settings
from appliance.errors import ConflictError
from appliance.ids import new_id
from appliance.models import DkimKey, Domain
from appliance.security import seal, unseal

FIRST_SELECTOR = "gent"
FIRST_ED25519_SELECTOR = "gented"
ALGORITHMS = ("rsa", "ed25519")
ROTATION_GRACE = dt.timedelta(days=7)
KEY_BITS = 2048


def encrypt_private_key(settings: Settings, pem: bytes, key_id: str) -> bytes:
    return seal(settings.secret_key, "dkim-private-keys", pem, key_id)


def decrypt_private_key(settings: Settings, blob: bytes, key_id: str) -> bytes:
    return unseal(settings.secret_key, "dkim-private-keys", blob, key_id)


def _generate(algorithm: str) -> tuple[bytes, str]:
    """(private key PEM, p= value) of a fresh key: SubjectPublicKeyInfo for RSA, the raw 32
    bytes for Ed25519 (RFC 8463 section 4)."""
    if algorithm == "ed25519":
        private = ed25519.Ed25519PrivateKey.generate()
        public = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    else:
        private = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
        public = private.public_key().public_bytes(serialization.Encoding.DER,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo)
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return pem, base64.b64encode(public).decode()


def new_key(db: Session, settings: Settings, domain: Domain, selector: str, status: str,
            algorithm: str = "rsa") -> DkimKey:
    """Generate a key pair (RSA-2048 or Ed25519) for domain and store it (private part encrypted)."""
    pem, public = _generate(algorithm)
    key = DkimKey(id=new_id("dk"), domain_id=domain.id, selector=selector, public_key=public,
                  algorithm=algorithm, status=status, created_at=utcnow(),
                  activated_at=utcnow() if status == "active" else None)
    key.private_key_enc = encrypt_private_key(settings, pem, key.id)
    db.add(key)
    return key


def ensure_ed25519_key(db: Session, settings: Settings, domain: Domain) -> DkimKey | None:
    """A domain made before Ed25519 signing (migration 0041) gets its Ed25519 key, pending until
    its record is seen in DNS; None when the domain has one already."""
    if db.scalar(select(DkimKey.id).where(DkimKey.domain_id == domain.id, DkimKey.algorithm == "ed25519",
                                          DkimKey.status.in_(("active", "pending"))).limit(1)) is not None:
        return None
    return new_key(db, settings, domain, _next_selector(db, domain.id, "ed25519"), "pending", "ed25519")


def listed_keys(db: Session, domain_id: str) -> list[DkimKey]:
    """Keys whose records the owner should publish: active, pending and still-retiring ones."""
    now = utcnow()
    keys = db.scalars(select(DkimKey).where(DkimKey.domain_id == domain_id,
                                            DkimKey.status.in_(("active", "pending", "retiring")))
                      .order_by(DkimKey.created_at, DkimKey.algorithm.desc())).all()
    # Read-only: a key past its grace period is left out here and marked retired by a writer.
    return [k for k in keys if not (k.status == "retiring" and k.retire_at is not None and k.retire_at <= now)]


def ed25519_selector(db: Session, domain_id: str) -> str | None:
    """The Ed25519 selector whose record should be published: the signing key's, else the one
    waiting for DNS (None when the domain has no Ed25519 key yet). For the doctor's warning."""
    keys = db.execute(select(DkimKey.selector, DkimKey.status).where(
        DkimKey.domain_id == domain_id, DkimKey.algorithm == "ed25519",
        DkimKey.status.in_(("active", "pending"))).order_by(DkimKey.created_at)).all()
    by_status = {status: selector for selector, status in keys}
    return by_status.get("active") or by_status.get("pending")


def retire_expired(db: Session, domain_id: str) -> None:
    """Mark retiring keys whose grace period has passed as retired."""
    db.execute(update(DkimKey).where(DkimKey.domain_id == domain_id, DkimKey.status == "retiring",
                                     DkimKey.retire_at <= utcnow()).values(status="retired"))


def signing_key(db: Session, settings: Settings, domain_id: str) -> tuple[str, bytes] | None:
    """(selector, private key PEM) of the domain's active RSA key (ARC sealing, tests)."""
    key = db.scalar(select(DkimKey).where(DkimKey.domain_id == domain_id, DkimKey.status == "active",
                                          DkimKey.algorithm == "rsa"))
    if key is None:
        return None
    return key.selector, decrypt_private_key(settings, key.private_key_enc, key.id)


@dataclass(frozen=True)
class SigningKey:
    selector: str
    algorithm: str  # rsa | ed25519
    private: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


_LOADED: OrderedDict[tuple[str, str], object] = OrderedDict()
_LOADED_MAX = 4096
_LOADED_LOCK = threading.Lock()


def _loaded(settings: Settings, key: DkimKey) -> rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey:
    """key's private key as an OpenSSL object, unsealed and parsed once per process. Keyed by the
    secret too, so a wrong secret fails to unseal as before instead of hitting the cache."""
    cache_key = (hashlib.sha256(settings.secret_key.encode()).hexdigest(), key.id)
    with _LOADED_LOCK:
        private = _LOADED.get(cache_key)
        if private is not None:
            _LOADED.move_to_end(cache_key)
            return private
    pem = decrypt_private_key(settings, key.private_key_enc, key.id)
    private = serialization.load_pem_private_key(pem, password=None)
    with _LOADED_LOCK:
        _LOADED[cache_key] = private
        while len(_LOADED) > _LOADED_MAX:
            _LOADED.popitem(last=False)
    return private


def signing_keys(db: Session, settings: Settings, domain_id: str) -> list[SigningKey]:
    """The domain's active keys, Ed25519 first then RSA (so RSA's signature ends on top)."""
    keys = db.scalars(_ACTIVE_KEYS, {"domain_id": domain_id}).all()
    return [SigningKey(k.selector, k.algorithm, _loaded(settings, k)) for k in keys]


_ACTIVE_KEYS = (select(DkimKey).where(DkimKey.domain_id == bindparam("domain_id"), DkimKey.status == "active")
                .order_by(DkimKey.algorithm))  # built once: every send asks


def _next_selector(db: Session, domain_id: str, algorithm: str = "rsa") -> str:
    used = set(db.scalars(select(DkimKey.selector).where(DkimKey.domain_id == domain_id)))
    base = FIRST_ED25519_SELECTOR if algorithm == "ed25519" else "gent"
    if algorithm == "ed25519" and base not in used:
        return base
    numbers = [int(m.group(1)) for s in used if (m := re.fullmatch(rf"{base}(\d+)", s))]
    return f"{base}{max(numbers + [1]) + 1}"


def start_rotation(db: Session, settings: Settings, domain: Domain) -> DkimKey:
    """Add a pending key of each algorithm under new selectors; each signs once DNS shows it.
    An Ed25519 key still waiting from an earlier rotation is dropped (it never signed)."""
    pending = db.scalars(select(DkimKey).where(DkimKey.domain_id == domain.id, DkimKey.status == "pending")).all()
    waiting = next((k for k in pending if k.algorithm == "rsa"), None)
    if waiting is not None:
        raise ConflictError(f"A rotation is already waiting for {waiting.selector}._domainkey to be published.",
                            fix=f"Publish the {waiting.selector}._domainkey record, then verify the domain.")
    for key in pending:
        key.status = "retired"
    db.flush()
    key = new_key(db, settings, domain, _next_selector(db, domain.id), "pending")
    db.flush()  # listed in the order made: RSA first, as on a new domain
    new_key(db, settings, domain, _next_selector(db, domain.id, "ed25519"), "pending", "ed25519")
    return key


def finish_rotation(db: Session, domain_id: str, published_selectors: set[str]) -> list[DkimKey]:
    """Promote each pending key whose record is published; the active key of its algorithm
    retires after a grace period. RSA and Ed25519 go on their own, as their records appear.
    Returns the promoted keys that replaced one (a first Ed25519 key replaces none: no rotation)."""
    keys = db.scalars(select(DkimKey).where(DkimKey.domain_id == domain_id)).all()
    now = utcnow()
    rotated = []
    for pending in [k for k in keys if k.status == "pending" and k.selector in published_selectors]:
        replaced = [k for k in keys if k.status == "active" and k.algorithm == pending.algorithm]
        for key in replaced:
            key.status, key.retire_at = "retiring", now + ROTATION_GRACE
        pending.status, pending.activated_at = "active", now
        if replaced:
            rotated.append(pending)
    return rotated


# --- signing ----------------------------------------------------------------------------------
DEFAULT_EXPIRY = 7 * 86400
_A_TAG = {"rsa": b"rsa-sha256", "ed25519": b"ed25519-sha256"}


def oversigned_headers(raw: bytes, names: tuple[str, ...]) -> list[bytes]:
    """Each name in h= once more than raw's header has it (a missing one once), so that adding
    any of these fields, even one we never sent, breaks the signature."""
    head = BytesHeaderParser(policy=policy.compat32).parsebytes(raw)
    found = [name.lower() for name in head.keys()]
    return [name.lower().encode() for name in names for _ in range(found.count(name.lower()) + 1)]


class _Signer:
    """One message, parsed and canonicalised by dkimpy once (relaxed/relaxed), signed by each key.
    The tags, their order, the folding and the hashed header fields are dkimpy 1.1's own (its
    DKIM.sign and gen_header) plus x= after t=; only the signature step is OpenSSL's."""

    def __init__(self, raw: bytes, names: tuple[str, ...], expiry: int) -> None:
        import dkim as dkimpy  # noqa: PLC0415 - the web process loads dkimpy on its first send only
        from dkim.canonicalization import CanonicalizationPolicy  # noqa: PLC0415
        self._dkim = dkimpy
        headers, body = dkimpy.rfc822_parse(raw)
        self.canon = CanonicalizationPolicy.from_c_value(b"relaxed/relaxed")
        self.headers = self.canon.canonicalize_headers(headers)
        self.body_hash = base64.b64encode(hashlib.sha256(self.canon.canonicalize_body(body)).digest())
        # as oversigned_headers, from the fields dkimpy parsed (not a second parse of the whole message)
        found = [name.lower() for name, _ in headers]
        self.include = [name.lower().encode() for name in names for _ in range(found.count(name.lower().encode()) + 1)]
        self.expiry = expiry

    def signature(self, key: SigningKey, domain: bytes, now: int) -> bytes:
        """One DKIM-Signature field, CRLF-terminated."""
        dkimpy = self._dkim
        fields = [(b"v", b"1"), (b"a", _A_TAG[key.algorithm]), (b"c", b"relaxed/relaxed"), (b"d", domain),
                  (b"i", b"@" + domain), (b"q", b"dns/txt"), (b"s", key.selector.encode()),
                  (b"t", str(now).encode()), (b"x", str(now + self.expiry).encode()),
                  (b"h", b" : ".join(self.include)), (b"bh", self.body_hash),
                  (b"b", b"0" * 60)]  # as dkimpy: b= folds onto its own line, so filling it moves nothing
        value = dkimpy.fold(b"; ".join(b"=".join(f) for f in fields), namelen=14, linesep=b"\r\n")
        hasher = hashlib.sha256()
        dkimpy.hash_headers(hasher, self.canon, self.headers, self.include,
                            (b"DKIM-Signature", b" " + dkimpy.RE_BTAG.sub(b"\\1", value)), dict(fields))
        fields[-1] = (b"b", base64.b64encode(_sign_digest(key, hasher.digest())))
        return b"DKIM-Signature: " + dkimpy.fold(b"; ".join(b"=".join(f) for f in fields) + b"\r\n",
                                                  namelen=14, linesep=b"\r\n")


def _sign_digest(key: SigningKey, digest: bytes) -> bytes:
    """RSASSA-PKCS1-v1_5 over the SHA-256 digest (RFC 6376 3.3.1); Ed25519 signs the digest itself
    (PureEdDSA over the SHA-256 hash, RFC 8463 section 3)."""
    if key.algorithm == "ed25519":
        return key.private.sign(digest)
    return key.private.sign(digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))


def sign_with_keys(raw: bytes, domain: str, keys: list[SigningKey], names: tuple[str, ...], *,
                   expiry: int = DEFAULT_EXPIRY, now: int | None = None) -> bytes:
    """raw with one DKIM-Signature per key on top (the last key's first): relaxed/relaxed, no l=,
    names over-signed, x= expiry seconds after t=."""
    signer = _Signer(raw, names, expiry)
    stamp = int(time.time()) if now is None else now
    signatures = [signer.signature(key, domain.encode(), stamp) for key in keys]
    return b"".join(reversed(signatures)) + raw


def sign_message(raw: bytes, selector: str, domain: str, private_key_pem: bytes, names: tuple[str, ...],
                 *, expiry: int = DEFAULT_EXPIRY) -> bytes:
    """raw with an rsa-sha256 DKIM-Signature on top, from a PEM key (ARC tests, restore checks)."""
    private = serialization.load_pem_private_key(private_key_pem, password=None)
    return sign_with_keys(raw, domain, [SigningKey(selector, "rsa", private)], names, expiry=expiry)
