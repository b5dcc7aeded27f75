"""Shared input rules: email addresses and free text (no CR/LF, no control characters)."""
from __future__ import annotations

import unicodedata

from email_validator import EmailNotValidError, validate_email

from appliance.errors import ValidationError


def normalize_email(value: str, field: str = "email") -> str:
    """A validated address: lower case, IDN domain in punycode. Raises ValidationError."""
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(f"{field} is required", field=field, fix="Send an address like name@example.com")
    reject_control_chars(value, field)
    try:
        # test_environment admits the reserved .test TLD (RFC 6761) used by local installs and tests.
        info = validate_email(value.strip(), check_deliverability=False, test_environment=True)
    except EmailNotValidError as exc:
        raise ValidationError(f"{field} is not an email address: {exc}", field=field,
                              fix="Send an address like name@example.com") from None
    return f"{info.local_part}@{info.ascii_domain}".lower()


def reject_control_chars(value: str, field: str) -> str:
    """Refuse CR, LF, NUL and other control characters (header injection, log forging)."""
    for char in value:
        if char in "\r\n\x00" or (unicodedata.category(char) == "Cc" and char != "\t"):
            raise ValidationError(f"{field} must not contain line breaks or control characters",
                                  field=field, fix="Remove line breaks and control characters")
    return value
