"""The API's conventions in one place (contract section 0).

Every endpoint is declared with `@endpoint(...)`: its auth marker, request schemas and answer.
The declaration drives enforcement (auth, content type, validation, rate limits, idempotency),
the OpenAPI document and the test that walks every route.
"""
from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import re
from dataclasses import dataclass, field
from typing import Annotated, Any, Callable

import pydantic
from flask import Blueprint, Response, current_app, g, request
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from appliance.config import Settings
from appliance.db import begin_writes
from appliance.errors import (ConflictError, ForbiddenError, GentError, InvalidRequestError,
                              UnauthorizedError, UnsupportedMediaTypeError,
                              ValidationError)
from appliance.services import idempotency, ratelimit
from appliance.services.governance import audit
from appliance.services.identity.auth import Principal, authenticate, record_token_use

log = logging.getLogger("gentbox.api")


@dataclass(frozen=True)
class Auth:
    """An auth marker: public, user (session token only), any token, or a scope."""

    kind: str
    scope: str | None = None
    also: tuple[str, ...] = ()  # other scopes that grant the same access (the agenda: task or calendar)

    def describe(self) -> str:
        if self.kind == "scope" and self.also:
            return f"scope: {' or '.join((self.scope, *self.also))}"
        return f"scope: {self.scope}" if self.kind == "scope" else {"public": "public", "user": "user auth",
                                                                     "any": "any token"}[self.kind]


PUBLIC = Auth("public")
USER = Auth("user")
ANY_TOKEN = Auth("any")


def scope(name: str, *also: str) -> Auth:
    return Auth("scope", name, tuple(also))


@dataclass(frozen=True)
class Spec:
    rule: str
    method: str
    endpoint: str
    auth: Auth
    body: type[pydantic.BaseModel] | None
    query: type[pydantic.BaseModel] | None
    response: type[pydantic.BaseModel] | None
    status: int
    summary: str
    tag: str
    limit: str  # "token", "ip", "waitlist"
    content_type: str = "application/json"
    max_body: Callable[[Settings], int] | None = None  # a larger body limit than max_body_bytes
    # The view holds its action for approval when the caller's token lists the route's scope in
    # requires_approval (issue 8); a route that cannot hold refuses such a caller (fail closed).
    holds: bool = False
    answers: dict[int, type[pydantic.BaseModel]] = field(default_factory=dict)  # other successes
    # Where a session caller names the inbox (contract section 0): "query" on GET/PATCH/DELETE,
    # "body" on POST/PUT; None on routes that act on no single inbox (tenant and account routes).
    inbox_in: str | None = None
    body_optional: bool = False  # the body only carries inbox_id: it may be left out
    accepts: str | None = None  # a raw (non-JSON) request body of this media type, e.g. text/vcard
    # The view reads (and does its slow work) before it writes, calling db.begin_writes(ctx.db)
    # first: on SQLite the write lock is then held for its writes alone (Store.late_write_session).
    late_writes: bool = False


REGISTRY: dict[str, Spec] = {}  # endpoint name -> Spec (declarations are static, like routes)


@dataclass
class Ctx:
    """What a view gets: the unit of work, the caller, and the validated input."""

    db: Session
    counters: Session
    settings: Settings
    principal: Principal | None
    body: Any
    query: Any
    client_ip: str
    request_id: str
    inbox_id: str | None = None  # the inbox a session named (query or body, as section 0 says)


@dataclass
class Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")  # C0 (except tab), DEL, C1


def _no_control_chars(value: str) -> str:
    if _CONTROL_CHARS.search(value):
        raise ValueError("must not contain line breaks or control characters")
    return value


# Free text that ends up in headers, logs or mail (addresses, names, labels): no CR/LF (header
# injection, log forging) and no other control characters. The pattern documents the same rule.
PlainText = Annotated[str, pydantic.AfterValidator(_no_control_chars),
                      pydantic.Field(json_schema_extra={"pattern": "^[^\\x00-\\x08\\x0a-\\x1f\\x7f-\\x9f]*$"})]


def _iso_datetime(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value
    if not isinstance(value, str):  # pydantic would take a number as a Unix timestamp
        raise ValueError("must be an ISO 8601 date-time string, e.g. 2030-01-01T00:00:00Z")
    try:
        return dt.datetime.fromisoformat(value)
    except ValueError:
        raise ValueError("must be an ISO 8601 date-time, e.g. 2030-01-01T00:00:00Z") from None


# A time as the contract sends them: an ISO 8601 string (the document says so), nothing else.
IsoDateTime = Annotated[dt.datetime, pydantic.BeforeValidator(_iso_datetime)]


class StrictModel(pydantic.BaseModel):
    """Request schemas: unknown fields are errors, strings are not coerced from numbers."""

    model_config = pydantic.ConfigDict(extra="forbid", strict=False, str_strip_whitespace=False)


INBOX_ID_DESCRIPTION = "Session tokens: the inbox to act on. Agent tokens: omit it (it comes from the token)."


def _with_inbox_id(model: type[pydantic.BaseModel] | None, name: str) -> type[pydantic.BaseModel]:
    """The request model with an optional inbox_id (the model itself when it declares one)."""
    if model is not None and "inbox_id" in model.model_fields:
        return model
    return pydantic.create_model(name, __base__=model or StrictModel, __doc__=(model.__doc__ if model else None),
                                 inbox_id=(str | None, pydantic.Field(None, min_length=1, max_length=40,
                                                                      description=INBOX_ID_DESCRIPTION)))


def _inbox_input(method: str, auth: Auth, body, query, model_name: str):  # noqa: ANN001, ANN202
    """Section 0, applied once for every route acting on one inbox (those marked with a scope:
    an agent token's inbox, or the one a session names): inbox_id is accepted in the query on
    GET/PATCH/DELETE and in the body on POST/PUT, and the OpenAPI document says so."""
    if auth.kind != "scope":
        return body, query, None, False
    if method in ("POST", "PUT"):
        return _with_inbox_id(body, f"{model_name}Body"), query, "body", body is None
    return body, _with_inbox_id(query, f"{model_name}Query"), "query", False


def endpoint(bp: Blueprint, rule: str, method: str, *, auth: Auth, summary: str, tag: str,
             body: type[pydantic.BaseModel] | None = None, query: type[pydantic.BaseModel] | None = None,
             response: type[pydantic.BaseModel] | None = None, status: int = 200,
             limit: str | None = None, content_type: str = "application/json",
             max_body: Callable[[Settings], int] | None = None, holds: bool = False,
             answers: dict[int, type[pydantic.BaseModel]] | None = None, accepts: str | None = None,
             late_writes: bool = False) -> Callable:
    """Declare and register one API operation (`accepts`: the view gets the raw body of that media
    type as bytes, and a session names the inbox in the query)."""
    def decorate(view: Callable) -> Callable:
        name = f"{bp.name}.{view.__name__}"
        rate_class = limit or ("ip" if auth.kind == "public" or rule.startswith("/auth/") else "token")
        model_name = "".join(part.title() for part in name.replace(".", "_").split("_"))
        in_body, in_query, inbox_in, optional = _inbox_input("GET" if accepts else method, auth, body, query,
                                                             model_name)
        REGISTRY[name] = Spec(rule=(bp.url_prefix or "") + rule, method=method, endpoint=name, auth=auth,
                              body=in_body, query=in_query, response=response, status=status,
                              summary=summary, tag=tag, limit=rate_class, content_type=content_type,
                              max_body=max_body, holds=holds, answers=dict(answers or {}),
                              inbox_in=inbox_in, body_optional=optional, accepts=accepts,
                              late_writes=late_writes)

        @functools.wraps(view)
        def wrapper(**path_args: Any) -> Response:
            return _handle(REGISTRY[name], view, path_args)

        bp.add_url_rule(rule, view.__name__, wrapper, methods=[method])
        return wrapper
    return decorate


def client_ip() -> str:
    return request.remote_addr or "unknown"


def _store():  # noqa: ANN202
    return current_app.extensions["gentbox"]


def _bearer() -> str | None:
    header = request.headers.get("Authorization", "")
    if not header:
        return None
    kind, _, raw = header.partition(" ")
    if kind.lower() != "bearer" or not raw.strip():
        raise UnauthorizedError("Send the token as 'Authorization: Bearer <token>'.")
    return raw.strip()


def _authorize(spec: Spec, db: Session, counters: Session, settings: Settings) -> Principal | None:
    raw = _bearer()
    if spec.auth.kind == "public" and raw is None:
        return None
    if raw is None:
        raise UnauthorizedError(fix="Log in at POST /auth/login/ or use an agent token.")
    try:
        principal = authenticate(db, raw, current_app.extensions.get("gentbox_tokens"))
    except UnauthorizedError:
        # Count failed token guesses per IP, so tokens cannot be brute-forced quickly.
        count_request(counters, f"ip:{client_ip()}:badtoken", settings.rate_limit_ip, 60)
        raise
    if spec.auth.kind == "public":
        return principal
    if spec.auth.kind == "user" and principal.is_agent:
        raise ForbiddenError("This endpoint needs a user session token, not an agent token.",
                             code="session_required", fix="Log in at POST /auth/login/ and use that token.")
    if spec.auth.kind == "scope" and not any(principal.has_scope(s) for s in (spec.auth.scope, *spec.auth.also)):
        wanted = " or ".join((spec.auth.scope, *spec.auth.also))
        raise ForbiddenError(f"The token lacks the {wanted} scope.", code="insufficient_scope",
                             fix=f"Ask the inbox owner for a token with the {wanted} scope.")
    if (spec.auth.kind == "scope" and principal.is_agent and not spec.holds
            and spec.auth.scope in (principal.token.requires_approval or [])):
        raise ForbiddenError(f"This token's {spec.auth.scope} calls need a person's approval, and this "
                             "operation cannot be held for one.", code="approval_required",
                             fix=f"Ask the inbox owner for a token without {spec.auth.scope} in requires_approval.")
    return principal


def count_request(counters: Session, key: str, limit: int, window: int) -> None:
    """Count one hit and commit at once: no request holds a counter's lock while it works."""
    try:
        g.rate = ratelimit.hit(counters, key, limit, window)
    finally:
        counters.commit()


def _rate_limit(spec: Spec, principal: Principal | None, counters: Session, settings: Settings) -> None:
    ip = client_ip()
    if spec.limit == "waitlist":
        count_request(counters, f"ip:{ip}:waitlist", settings.rate_limit_waitlist, 3600)
    elif principal is not None and spec.limit == "token":
        budgets = current_app.extensions.get("gentbox_budgets")  # this process's reserved slices
        if budgets is None:
            count_request(counters, f"{principal.kind}:{principal.id}", settings.rate_limit_token, 60)
        else:
            g.rate = budgets.take(counters, f"{principal.kind}:{principal.id}", settings.rate_limit_token, 60)
    else:
        count_request(counters, f"ip:{ip}", settings.rate_limit_ip, 60)


def _admit(spec: Spec, db: Session, counters: Session, settings: Settings) -> Principal | None:
    """Rate-limit and authorize one call; every call is counted, failed ones included."""
    if spec.limit != "token":
        _rate_limit(spec, None, counters, settings)
    try:
        principal = _authorize(spec, db, counters, settings)
    except GentError:
        if g.get("rate") is None:  # a token route called without a token, or with a paused one
            _rate_limit(spec, None, counters, settings)
        raise
    if spec.limit == "token":
        _rate_limit(spec, principal, counters, settings)
    return principal


def count_by_ip() -> ratelimit.RateState:
    """Count an answer no route's rate class covered (unknown path, wrong method) per client IP."""
    store = _store()
    with store.counter_sessions() as counters:
        try:
            return ratelimit.hit(counters, f"ip:{client_ip()}", store.settings.rate_limit_ip, 60)
        finally:
            counters.commit()


def _error_field(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def validate_model(model: type[pydantic.BaseModel], data: Any, where: str) -> pydantic.BaseModel:
    """Validate data; the first problem becomes a 400 naming its field."""
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        name = _error_field(tuple(err["loc"])) or where
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            message = f"unknown field; {where} accepts: {', '.join(model.model_fields)}"
        elif err["type"] == "missing":
            message = "is required"
        elif err["type"] == "value_error":
            message = message.removeprefix("Value error, ")
        raise ValidationError(f"{name}: {message}", field=name) from None


STREAMED = "multipart/form-data"  # `accepts` of an upload route: the view reads request.stream itself


def _parse_body(spec: Spec) -> Any:
    if spec.accepts == STREAMED:  # never buffered here: the view streams the parts into the store
        if request.content_length and request.mimetype != STREAMED:  # an empty body: the view refuses it
            raise UnsupportedMediaTypeError(f"Send the body as {STREAMED}.")
        return None
    raw = request.get_data(cache=True)  # raises 413 past MAX_CONTENT_LENGTH
    if request.method not in ("POST", "PUT", "PATCH"):
        return None
    if spec.accepts is not None:  # an empty body is for the view to refuse, after the query's checks
        if raw and request.mimetype != spec.accepts:
            raise UnsupportedMediaTypeError(f"Send the body as {spec.accepts}.")
        return raw
    if not raw and spec.body is None:
        return None
    if not raw and spec.body_optional:
        return spec.body()
    if request.mimetype != "application/json":
        raise UnsupportedMediaTypeError()
    if spec.body is None:
        if raw.strip() not in (b"", b"{}"):
            raise ValidationError("This endpoint takes no body; send none or {}.")
        return None
    try:
        data = json.loads(raw) if raw else {}
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: absurdly deep nesting
        raise InvalidRequestError("The body is not valid JSON.", fix="Send a JSON object.") from None
    if not isinstance(data, dict):
        raise InvalidRequestError("The body must be a JSON object.", fix="Send a JSON object.")
    _refuse_nul(data, "")
    return validate_model(spec.body, data, "the body")


def _refuse_nul(value: Any, where: str) -> None:
    """NUL is never meaningful here, and PostgreSQL cannot store it (it would fail as a 500)."""
    if isinstance(value, str):
        if "\x00" in value:
            raise ValidationError(f"{where or 'a value'} must not contain NUL characters", field=where or None)
    elif isinstance(value, dict):
        for key, item in value.items():
            _refuse_nul(key, where)
            _refuse_nul(item, f"{where}.{key}" if where else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _refuse_nul(item, f"{where}[{index}]")


def _parse_query(spec: Spec) -> Any:
    if spec.query is None:
        if request.args:
            raise ValidationError(f"unknown query parameter {next(iter(request.args))}",
                                  field=next(iter(request.args)))
        return None
    data: dict[str, Any] = {}
    for key in request.args:
        values = request.args.getlist(key)
        data[key] = values if len(values) > 1 else values[0]
    _refuse_nul(data, "")
    return validate_model(spec.query, data, "the query")


def _json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    if status == 204 or body is None:
        resp = Response(status=status, content_type=None)
        resp.headers.pop("Content-Type", None)
    else:
        resp = Response(json.dumps(body, ensure_ascii=False, separators=(",", ":")), status=status,
                        mimetype="application/json")
    for key, value in (headers or {}).items():
        resp.headers[key] = value
    return resp


def _handle(spec: Spec, view: Callable, path_args: dict[str, Any]) -> Response:
    store = _store()
    settings: Settings = store.settings
    # GETs read: on SQLite their transactions begin deferred and never queue behind a writer.
    sessions = (store.read_sessions if spec.method == "GET" else store.late_write_session if spec.late_writes
                else store.sessions)
    with store.counter_sessions() as counters:
        try:
            with sessions() as db:
                try:
                    principal = _admit(spec, db, counters, settings)
                    new_ip = (principal is not None and principal.is_agent
                              and client_ip() not in (principal.token.seen_ips or ()))
                    if principal is None and spec.auth.kind != "public":  # pragma: no cover - guarded above
                        raise UnauthorizedError()
                    if spec.max_body is not None:
                        request.max_content_length = spec.max_body(settings)
                    _refuse_other_inbox(spec, principal, _raw_inbox_id(spec, principal))
                    body = _parse_body(spec)
                    query = _parse_query(spec)
                    _refuse_nul(path_args, "")
                    ctx = Ctx(db=db, counters=counters, settings=settings, principal=principal, body=body,
                              query=query, client_ip=client_ip(), request_id=g.request_id,
                              inbox_id=_named_inbox(spec, principal, body, query))
                    with audit.scope("api", audit.actor_from(principal),
                                     principal.tenant_id if principal is not None else None,
                                     ip=ctx.client_ip, request_id=ctx.request_id):
                        response = _run(spec, view, ctx, path_args)
                except BaseException as exc:
                    db.rollback()
                    if spec.endpoint in AUDITED_FAILURES and isinstance(exc, GentError) and exc.status == 401:
                        _audit_failure(store, spec, exc)
                    raise
            if principal is not None and principal.needs_touch:
                _record_use(store, principal)
            if new_ip:
                _note_new_ip(store, principal)
            return response
        finally:
            if counters.in_transaction():  # most calls never open one (the token's slice had room)
                counters.commit()  # failed logins and bad tokens must count even when the call fails


def _named_inbox(spec: Spec, principal: Principal | None, body: Any, query: Any) -> str | None:
    """The inbox_id the caller sent where section 0 puts it; an agent token naming another inbox
    than its own is refused here, for every route alike (403 inbox_mismatch)."""
    source = body if spec.inbox_in == "body" else query if spec.inbox_in == "query" else None
    inbox_id = getattr(source, "inbox_id", None)
    _refuse_other_inbox(spec, principal, inbox_id)
    return inbox_id


_INBOX_ID = re.compile(r"inb_[0-9A-Za-z]{26}")


def _raw_inbox_id(spec: Spec, principal: Principal | None) -> Any:
    """The inbox_id an agent token sent, read before the body is validated: naming another inbox
    is refused first, whatever else the request gets wrong (authorisation before validation)."""
    if principal is None or principal.own_inbox_id is None:
        return None
    if spec.inbox_in == "query":
        value = request.args.get("inbox_id")
    elif spec.inbox_in == "body" and request.mimetype == "application/json":
        try:
            data = json.loads(request.get_data(cache=True) or b"{}")
        except (ValueError, UnicodeDecodeError, RecursionError):
            return None  # _parse_body answers it
        value = data.get("inbox_id") if isinstance(data, dict) else None
    else:
        return None
    # Only a well-formed inbox id is another inbox; anything else is for validation to refuse (400).
    return value if isinstance(value, str) and _INBOX_ID.fullmatch(value) else None


def _refuse_other_inbox(spec: Spec, principal: Principal | None, inbox_id: Any) -> None:
    own = principal.own_inbox_id if principal is not None else None
    if inbox_id is not None and own is not None and inbox_id != own:
        raise ForbiddenError("An agent token acts only on its own inbox.", code="inbox_mismatch",
                             field="inbox_id", fix="Leave inbox_id out: it comes from the token.")


def _record_use(store, principal: Principal) -> None:  # noqa: ANN001
    """last_used_at, in its own short transaction after the answer's (at most once a minute)."""
    try:
        with store.session() as db:
            record_token_use(db, principal)
    except OperationalError:  # a busy store must not fail a call that already succeeded
        log.warning("could not record the use of token %s", principal.id)


def _note_new_ip(store, principal: Principal) -> None:  # noqa: ANN001
    """A token's first use from a new address goes in the audit log (its own short transaction)."""
    try:
        with store.session() as db:
            audit.note_token_ip(db, store.settings.secret_key, principal.token.id, client_ip(), g.get("request_id"))
        # The principal's token may be the process's cached copy: it knows this address from now on.
        principal.token.seen_ips = [*(principal.token.seen_ips or ()), client_ip()]
    except OperationalError:  # a busy store must not fail a call that already succeeded
        log.warning("could not note token %s's new address in the audit log", principal.id)


def _run(spec: Spec, view: Callable, ctx: Ctx, path_args: dict[str, Any]) -> Response:
    key = request.headers.get("Idempotency-Key") if spec.method == "POST" and spec.accepts != STREAMED else None
    principal_key = ctx.principal.id if ctx.principal else f"ip:{ctx.client_ip}"
    req_hash = ""
    if key is not None:
        idempotency.check_key(key)
        req_hash = idempotency.request_hash(spec.method, request.path, request.get_data(cache=True))
        stored = idempotency.find(ctx.db, ctx.settings.secret_key, principal_key, key, req_hash)
        if stored is not None:
            ctx.db.rollback()
            return _json_response(stored.status_code, stored.body, {"Idempotency-Replayed": "true"})
    result = view(ctx, **path_args)
    reply = result if isinstance(result, Reply) else Reply(spec.status, result)
    begin_writes(ctx.db)  # a late-writes view that wrote nothing still records its audit entry
    if spec.method not in ("GET", "HEAD") and 200 <= reply.status < 300:
        _audit(spec, ctx, path_args, reply)
    if isinstance(reply.body, Response):  # raw bytes endpoints
        ctx.db.commit()
        return reply.body
    try:
        if key is not None and 200 <= reply.status < 300:
            idempotency.save(ctx.db, ctx.settings.secret_key, principal_key, key, req_hash, reply.status, reply.body)
        ctx.db.commit()
    except IntegrityError:
        ctx.db.rollback()
        if key is not None:
            stored = idempotency.find(ctx.db, ctx.settings.secret_key, principal_key, key, req_hash)
            if stored is not None:
                return _json_response(stored.status_code, stored.body, {"Idempotency-Replayed": "true"})
        raise ConflictError("The change conflicts with another one made at the same time; retry.") from None
    return _json_response(reply.status, reply.body, reply.headers)


# Routes whose refusals are themselves worth an audit entry (contract section 17: failed sign-ins).
AUDITED_FAILURES = {"access.log_in": "access.log_in.failed"}
_NOT_A_RESOURCE_ID = {"tenant_id", "inbox_id", "thread_id", "user_id"}


def _audit(spec: Spec, ctx: Ctx, path_args: dict[str, Any], reply: Reply) -> None:
    """The one audit entry of a mutating call, in its transaction (issue 23): the route names the
    action, the path or the answer names the resource, the validated body is the change summary."""
    current = audit.current()
    if current is None:  # pragma: no cover - _handle always opens a scope
        return
    audit.record_scope(ctx.db, ctx.settings.secret_key, current, action=spec.endpoint,
                       resource_type=spec.rule.removeprefix("/v1/").removeprefix("/").split("/", 1)[0] or None,
                       resource_id=_resource_id(path_args, reply.body), changes=_changes(ctx.body))


def _resource_id(path_args: dict[str, Any], body: Any) -> str | None:
    if path_args:
        return str(list(path_args.values())[-1])
    if isinstance(body, dict):
        ids = [k for k in body if k.endswith("_id") and isinstance(body[k], str)]
        named = [k for k in ids if k not in _NOT_A_RESOURCE_ID] or ids
        return body[named[0]] if named else None
    return None


def _changes(body: Any) -> Any:
    if isinstance(body, pydantic.BaseModel):
        return body.model_dump(mode="json", exclude_unset=True)
    if isinstance(body, (bytes, str)):
        return {"bytes": len(body)}
    return body


def _audit_failure(store, spec: Spec, exc: GentError) -> None:  # noqa: ANN001
    """A refused sign-in, in its own transaction (the call's own rolled back)."""
    try:
        data = request.get_json(silent=True) or {}
        email = data.get("email") if isinstance(data, dict) else None
        with store.session() as db:
            audit.record(db, store.settings.secret_key, action=AUDITED_FAILURES[spec.endpoint],
                         actor=audit.Actor("anonymous", None, str(email)[:320] if email else ""), tenant_id=None,
                         edge="api", changes={"code": exc.code}, ip=client_ip(), request_id=g.get("request_id"))
    except OperationalError:  # a busy store must not turn a 401 into a 500
        log.warning("could not record a failed sign-in in the audit log")


def error_response(exc: GentError) -> Response:
    body = {"error": exc.to_dict(), "request_id": g.get("request_id")}
    return _json_response(exc.status, body, exc.headers)
