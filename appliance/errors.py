"""Typed errors raised by services; every edge renders them the same way."""
from __future__ import annotations


class GentError(Exception):
    """Base of every expected failure: a stable code, an HTTP status, a message and a fix."""

    status = 400
    code = "invalid_request"
    default_message = "The request is invalid."

    def __init__(self, message: str | None = None, *, field: str | None = None,
                 fix: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        self.message = message or self.default_message
        self.field = field
        self.fix = fix
        if code is not None:
            self.code = code
        self.headers = headers or {}
        super().__init__(self.message)

    def to_dict(self) -> dict:
        body: dict = {"code": self.code, "message": self.message}
        if self.field is not None:
            body["field"] = self.field
        fix = self.fix if self.fix is not None else default_fix(self.code)
        if fix is not None:
            body["fix"] = fix
        body["docs_url"] = docs_url(self.code)
        return body


class ValidationError(GentError):
    status = 400
    code = "validation_error"
    default_message = "The request body or query failed validation."


class InvalidRequestError(GentError):
    status = 400
    code = "invalid_request"


class UnauthorizedError(GentError):
    status = 401
    code = "unauthenticated"
    default_message = "A valid bearer token is required."


class ForbiddenError(GentError):
    status = 403
    code = "forbidden"
    default_message = "You may not do this."


class NotFoundError(GentError):
    status = 404
    code = "not_found"
    default_message = "No such resource."


class MethodNotAllowedError(GentError):
    status = 405
    code = "method_not_allowed"
    default_message = "This method is not allowed on this path."


class ConflictError(GentError):
    status = 409
    code = "conflict"
    default_message = "The request conflicts with the current state."


class PayloadTooLargeError(GentError):
    status = 413
    code = "payload_too_large"
    default_message = "The request body is too large."


class UnsupportedMediaTypeError(GentError):
    status = 415
    code = "unsupported_media_type"
    default_message = "Send the body as JSON with Content-Type: application/json."


class RateLimitedError(GentError):
    status = 429
    code = "rate_limited"
    default_message = "Too many requests; slow down."

    def __init__(self, retry_after: int, message: str | None = None, **kw) -> None:
        self.retry_after = max(1, int(retry_after))
        kw.setdefault("fix", f"Retry after {self.retry_after} seconds.")
        super().__init__(message, **kw)
        self.headers["Retry-After"] = str(self.retry_after)


class UnavailableError(GentError):
    status = 503
    code = "unavailable"
    default_message = "The service is temporarily unavailable; retry shortly."


class ConfigError(Exception):
    """A setting is missing or malformed; raised at load time with a clear message."""


# The reference of every error code, served at GET /v1/reference/errors/.
ERROR_CODES: dict[str, tuple[int, str]] = {
    "validation_error": (400, "A field is missing, has the wrong type or an invalid value; `field` names it."),
    "invalid_request": (400, "The request cannot be processed as sent (malformed JSON, bad parameter)."),
    "signup_token_invalid": (400, "The sign-up link is not valid for this address."),
    "signup_token_expired": (400, "The sign-up link has expired; ask for a new one."),
    "signup_token_redeemed": (400, "The sign-up link was already used."),
    "weak_password": (400, "The password is too short, too long or too common."),
    "domain_not_verified": (400, "The domain must be verified before this can be done."),
    "approval_expired": (400, "The held action's approval expired (24 h by default); it will never be carried out."),
    "approval_decided": (400, "The approval was already approved, rejected or expired; it can be decided once."),
    "label_type_mismatch": (400, "The label is typed for contacts (or messages) only; use one of type `any` or the "
                                 "right type."),
    "template_value_missing": (400, "The template needs a value for the variable `field` names (template_values.<name>)."),
    "recipe_invalid": (400, "A workflow recipe has problems; nothing was installed (validate lists them all)."),
    "webhook_target_forbidden": (400, "A webhook target must be https:// and resolve only to public addresses "
                                      "(unless the operator set webhook_allow_private)."),
    "invalid_time": (400, "A time or duration could not be read; `fix` lists the accepted forms (docs/time.md)."),
    "unauthenticated": (401, "No token, an unknown token, or wrong credentials."),
    "otp_required": (401, "The account has a second factor: send its current TOTP code in otp."),
    "otp_invalid": (401, "The second-factor code is wrong, already used, or too old."),
    "token_expired": (401, "The token has expired; log in again or issue a new token."),
    "token_revoked": (401, "The token or session was revoked."),
    "forbidden": (403, "Your role does not allow this."),
    "insufficient_scope": (403, "The agent token lacks the scope named in `fix`."),
    "session_required": (403, "This endpoint needs a user session token, not an agent token."),
    "manager_required": (403, "Only the tenant's owners and admins may do this (the audit log, for one)."),
    "inbox_mismatch": (403, "An agent token may only act on its own inbox."),
    "approval_required": (403, "The token's calls with this scope need a person's approval, and this "
                               "operation cannot be held for one; ask the owner for a token without it."),
    "token_paused": (403, "The agent token is paused by its owner; calls are refused until it is resumed."),
    "not_found": (404, "No such resource, or not visible to you."),
    "method_not_allowed": (405, "The path exists but not with this method."),
    "conflict": (409, "The request conflicts with existing state (for example, a taken name)."),
    "idempotency_conflict": (409, "The Idempotency-Key was used with a different request body."),
    "domain_in_use": (409, "The domain still has active inboxes."),
    "domain_taken": (409, "Another account on this appliance verified the domain; it is hosted there."),
    "domain_claim_lapsed": (409, "Another account verified the domain first; this claim lapsed and cannot be verified."),
    "domain_claim_expired": (409, "The claim expired unverified (7 days by default); add the domain again."),
    "share_expired": (409, "The contact share waited past its 30 days; ask for it to be shared again."),
    "payload_too_large": (413, "The body exceeds the size limit."),
    "unsupported_media_type": (415, "Write requests must send Content-Type: application/json."),
    "rate_limited": (429, "Too many requests; wait for Retry-After seconds."),
    "send_cap_reached": (429, "A send cap (tenant, inbox or token; per hour, day or month) is used up; "
                              "Retry-After says when its window frees a unit."),
    "cap_reached": (403, "A files or spend cap in enforce mode is used up; raise the cap to go on."),
    "recipient_not_allowed": (403, "The inbox's outbound sender rules do not allow this recipient (issue 20)."),
    "llm_consent_required": (403, "The tenant has not consented to external models (llm_consent is off)."),
    "feature_disabled": (403, "The inbox's enrichment settings leave this feature out of `enabled_features`."),
    "internal_error": (500, "An unexpected failure; it was logged with the request id."),
    "unavailable": (503, "The store or a dependency is unavailable; retry."),
    "backup_failed": (500, "`gentbox backup`/`restore` only, never an API answer: pg_dump or pg_restore failed."),
}


def from_database_error(exc: Exception) -> GentError:
    """The one mapping of a database failure to a typed error (API and web UI alike): a constraint
    hit by a concurrent change is a conflict, a busy or unreachable store is unavailable; anything
    else is re-raised for the edge's unexpected-error path."""
    from sqlalchemy.exc import IntegrityError, OperationalError  # errors.py stays importable alone

    if isinstance(exc, IntegrityError):
        return ConflictError("The change conflicts with existing data.")
    if isinstance(exc, OperationalError):
        return UnavailableError()
    raise exc


# The default `fix` of each code, sent when the raising site gave none (its own fix is more precise).
ERROR_FIXES: dict[str, str] = {
    "share_expired": "Ask the other inbox to share the card again (POST /v1/contacts/shares/).",
    "send_cap_reached": "Wait the Retry-After seconds, or ask an owner or admin to raise the cap "
                        "(PUT /v1/billing/caps/sends/).",
    "cap_reached": "Ask an owner or admin to raise the cap (PUT /v1/billing/caps/files/ or "
                   "/v1/billing/caps/spend/), or free space first.",
    "recipient_not_allowed": "Remove the address named in the message, or change the inbox's outbound rules "
                             "(PUT /v1/sender-rules/).",
    "llm_consent_required": "Ask an owner or admin to turn on llm_consent (PATCH /v1/settings/), or keep the "
                            "builtin model.",
    "feature_disabled": "Add the feature named in the message to enabled_features (PUT /v1/enrichment/).",
    "validation_error": "Correct the field named in `field` (see the endpoint's schema in GET /v1/openapi.json).",
    "invalid_request": "Send a JSON object body and valid parameters (see GET /v1/openapi.json).",
    "signup_token_invalid": "Open the sign-up link exactly as sent, with the address it was sent to.",
    "signup_token_expired": "Ask for a new sign-up link (POST /v1/waitlist/).",
    "signup_token_redeemed": "Log in at POST /auth/login/ with the account made from this link.",
    "weak_password": "Choose a longer, less common password (at least 12 characters).",
    "domain_not_verified": "Publish the DNS records of GET /v1/domains/{id}/ and verify the domain first.",
    "approval_expired": "Send the action again; it will be held for a new approval.",
    "approval_decided": "Nothing to do: read the approval to see its outcome.",
    "label_type_mismatch": "Use a label of type `any` or of this resource's type.",
    "template_value_missing": "Add the missing value under template_values.<name>.",
    "webhook_target_forbidden": "Use an https:// URL whose host resolves only to public addresses.",
    "recipe_invalid": "POST the recipe to /v1/workflows/recipes/validate/ to see every diagnostic, then fix them.",
    "invalid_time": "Send an ISO 8601 time (2026-01-31T09:00:00Z) or duration (PT2H); docs/time.md lists more.",
    "unauthenticated": "Send Authorization: Bearer <token> (log in at POST /auth/login/ or use an agent token).",
    "otp_required": "Send the account's current TOTP code in `otp` with the password.",
    "otp_invalid": "Send the current code from the authenticator app (each code works once).",
    "token_expired": "Log in again at POST /auth/login/ or ask for a new agent token.",
    "token_revoked": "Log in again at POST /auth/login/ or ask the owner for a new agent token.",
    "forbidden": "Ask an owner or admin of the account to do this, or to give you the role.",
    "insufficient_scope": "Ask the inbox owner for a token with the scope this endpoint needs.",
    "session_required": "Log in at POST /auth/login/ and use that session token.",
    "manager_required": "Ask an owner or admin of the account to do this.",
    "inbox_mismatch": "Use the token of the inbox you want to act on, or leave inbox_id out.",
    "approval_required": "Ask the owner for a token without this scope in requires_approval.",
    "token_paused": "Ask the token's owner to resume it.",
    "not_found": "Check the id and path (GET /v1/openapi.json lists every path).",
    "method_not_allowed": "Use a method listed in the Allow header.",
    "conflict": "Read the current state, then retry with a different value.",
    "idempotency_conflict": "Use a new Idempotency-Key for a different request body.",
    "domain_in_use": "Delete or move the domain's inboxes first.",
    "domain_taken": "Use another domain, or ask the account that verified it.",
    "domain_claim_lapsed": "Use another domain; this one is hosted by the account that verified it.",
    "domain_claim_expired": "Add the domain again and publish its records within the claim period.",
    "payload_too_large": "Send a smaller body (attachments count toward the limit).",
    "unsupported_media_type": "Send the body as JSON with Content-Type: application/json.",
    "rate_limited": "Wait for Retry-After seconds (or the RateLimit header's t), then retry.",
    "internal_error": "Retry later; if it persists, give the operator the request_id.",
    "unavailable": "Retry shortly, with backoff.",
    "backup_failed": "Read the pg_dump/pg_restore message and check the database URL and disk space.",
}

DOCS_ERRORS_PATH = "/docs/errors/"


def docs_url(code: str) -> str:
    """The anchor of this code on the served error reference page."""
    return f"{DOCS_ERRORS_PATH}#{code}"


def default_fix(code: str) -> str | None:
    """The generic fix of a code, used when the raising site gave none."""
    return ERROR_FIXES.get(code)
