"""Bad input on every endpoint that takes a body: the contract's error, never a 500, no writes.

The endpoints come from REGISTRY (every POST/PATCH declared with a body schema), and the
payloads are derived from each schema, so a new endpoint is covered the day it is declared.
Around every bad request the whole store (every table but the rate counters, which count
failures by design) is read before and after: nothing may be written, not even half of a change.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from api.framework import REGISTRY, Spec
from api.routes import register
from appliance.models import Base, WaitlistEntry
from appliance.services.identity.auth import SCOPES
from tests.world import PASSWORD

register(Flask("bad-input-collect"))  # imports every route module, so REGISTRY is complete
BODY_SPECS = sorted((s for s in REGISTRY.values() if s.method in ("POST", "PATCH") and s.body is not None),
                    key=lambda s: (s.rule, s.method))
BODYLESS_WRITES = sorted((s for s in REGISTRY.values() if s.method in ("POST", "PUT", "PATCH") and s.body is None
                          and s.accepts is None),  # a raw body (text/vcard) is its own test's
                         key=lambda s: (s.rule, s.method))
# Secrets are compared, not parsed: CR/LF in them makes a wrong secret (401 or a 400 of its own).
SECRET_FIELDS = {"password", "current_password", "new_password", "refresh_token", "signup_token", "token"}
UNTRACKED_TABLES = {"rate_counters"}  # failed calls are counted there on purpose
TWO_MB = 2 * 1024 * 1024


@dataclass
class Scene:
    client: Any
    store: Any
    headers_for: dict[str, dict[str, str]]  # endpoint -> auth headers
    path_values: dict[str, str]

    def url(self, spec: Spec) -> str:
        path = re.sub(r"<(?:\w+:)?(\w+)>", lambda m: self.path_values.get(m.group(1), m.group(0)), spec.rule)
        assert "<" not in path, f"no value for a path parameter of {spec.rule}"
        return path

    def send(self, spec: Spec, *, data: bytes | str, content_type: str | None = "application/json"):
        headers = dict(self.headers_for[spec.endpoint])
        if content_type is not None:
            headers["Content-Type"] = content_type
        return self.client.open(self.url(spec), method=spec.method, data=data, headers=headers)

    def snapshot(self) -> dict[str, list]:
        """Every row of every table (but the rate counters), in primary-key order."""
        out = {}
        with self.store.engine.connect() as conn:
            for table in Base.metadata.sorted_tables:
                if table.name in UNTRACKED_TABLES:
                    continue
                rows = conn.execute(select(table).order_by(*table.primary_key.columns)).all()
                out[table.name] = [tuple(row) for row in rows]
        return out


@pytest.fixture
def scene(client, world, store) -> Scene:
    owner = world.owner()
    inbox_id = world.inbox(owner, f"box@scene-{owner.tenant_id[-8:].lower()}.example.com")
    token = world.agent(owner, inbox_id, ["email:read"])
    agents = {scope: world.agent(owner, inbox_id, [scope]) for scope in SCOPES}
    headers = {}
    for spec in REGISTRY.values():
        kind = spec.auth.kind
        headers[spec.endpoint] = ({} if kind == "public" else
                                  agents[spec.auth.scope].auth if kind == "scope" else owner.auth)
    values = {"token_id": token.token_id, "inbox_id": inbox_id,
              "name": f"scene-{owner.tenant_id[-8:].lower()}.example.com",
              # Well-formed ids of nothing: bad input is refused before any lookup.
              "message_id": "msg_01J00000000000000000000000", "thread_id": "thr_01J00000000000000000000000",
              "attachment_id": "att_01J00000000000000000000000",
              "approval_id": "apr_01J00000000000000000000000",
              "alert_id": "alr_01J00000000000000000000000", "delivery_id": "dlv_01J00000000000000000000000",
              "task_id": "tsk_01J00000000000000000000000",
              "label_id": "lbl_01J00000000000000000000000", "template_id": "tpl_01J00000000000000000000000",
              "note_id": "not_01J00000000000000000000000",
              "contact_id": "ctc_01J00000000000000000000000", "share_id": "shr_01J00000000000000000000000",
              "sequence_id": "seq_01J00000000000000000000000", "enrollment_id": "sqe_01J00000000000000000000000"}
    values.update(calendar_id="cld_01J00000000000000000000000", event_id="cal_01J00000000000000000000000")  # issue 18
    values.update(list_id="dl_01J00000000000000000000000", broadcast_id="bct_01J00000000000000000000000")
    values.update(app_password_id="app_01J00000000000000000000000")  # issue 25.2
    values.update(import_id="imp_01J00000000000000000000000")  # issue 25.4
    values.update(export_id="exp_01J00000000000000000000000", deletion_id="del_01J00000000000000000000000")  # issue 23
    values.update(file_id="fil_01J00000000000000000000000", folder_id="fld_01J00000000000000000000000")  # issue 19
    values.update(workflow_id="wfl_01J00000000000000000000000")  # issue 20
    values.update(address="nobody@example.com")  # issue 21: GET /v1/relationships/{address}/
    return Scene(client, store, headers, values)


# --- bodies derived from the schemas ------------------------------------------------------------
def _schema(spec: Spec) -> tuple[dict, dict]:
    schema = spec.body.model_json_schema()
    return schema, schema.get("$defs", {})


def _resolve(prop: dict, defs: dict) -> dict:
    if "$ref" in prop:
        return _resolve(defs[prop["$ref"].rsplit("/", 1)[1]], defs)
    if "anyOf" in prop:  # Optional[X]: the first branch that is not null
        return _resolve(next(p for p in prop["anyOf"] if p.get("type") != "null"), defs)
    if "allOf" in prop and len(prop["allOf"]) == 1:
        return _resolve(prop["allOf"][0], defs)
    return prop


def _valid_value(prop: dict, defs: dict) -> Any:
    prop = _resolve(prop, defs)
    if "enum" in prop:
        return prop["enum"][0]
    if "const" in prop:
        return prop["const"]
    kind = prop.get("type")
    if kind == "string":
        if prop.get("format") == "date-time":
            return "2031-01-01T00:00:00Z"
        return "sample"[: prop.get("maxLength", 6)].ljust(prop.get("minLength", 0), "s")
    if kind == "integer":
        return max(prop.get("minimum", 1), 1)
    if kind == "number":
        return 1.5
    if kind == "boolean":
        return True
    if kind == "array":
        return []
    if kind == "object":
        return {}
    raise AssertionError(f"no sample for {prop}")


def _valid_body(spec: Spec) -> dict:
    """A body that passes the schema's types (not necessarily the service's rules)."""
    schema, defs = _schema(spec)
    body = {name: _valid_value(prop, defs) for name, prop in schema["properties"].items()}
    if spec.auth.kind == "scope":  # an agent token names no inbox (it would be 403 inbox_mismatch)
        body.pop("inbox_id", None)
    return body


def _wrong_values(prop: dict, defs: dict) -> list:
    prop = _resolve(prop, defs)
    kind = prop.get("type")
    wrong: list = [{"nested": "object"}]
    if kind == "object":  # a nested object: refuses other types, and unknown keys when it is a model
        wrong = ["a string", 7, ["a", "list"]] + ([{"nested": "object"}] if prop.get("additionalProperties") is False
                                                  else [])
    if kind == "string" or "enum" in prop:
        wrong += [12345, True, ["a", "list"]]
    elif kind == "array":
        items = _resolve(prop.get("items", {}), defs)
        free_form = items.get("type") == "object" and "properties" not in items  # any object is an item (rows)
        wrong += ["a string", 7] + ([] if free_form else [[{"nested": "object"}]])
    elif kind in ("integer", "number"):
        wrong += ["abc", [1]]
    elif kind == "boolean":
        wrong += [[True], "maybe"]
    return wrong


def _check_error(resp, status: int, codes: tuple[str, ...] | None = None) -> list[str]:  # noqa: ANN001
    """Problems with an error answer: status, contract body shape, request id."""
    problems = []
    body = resp.get_json(silent=True)
    if resp.status_code != status:
        problems.append(f"status {resp.status_code}, expected {status}")
    if not isinstance(body, dict) or set(body) != {"error", "request_id"} or not isinstance(body["error"], dict):
        return problems + [f"not the contract's error body: {resp.get_data(as_text=True)[:200]}"]
    error = body["error"]
    if not isinstance(error.get("code"), str) or not isinstance(error.get("message"), str):
        problems.append(f"error without code and message: {error}")
    if codes is not None and error.get("code") not in codes:
        problems.append(f"code {error.get('code')!r}, expected one of {codes}")
    if body["request_id"] != resp.headers.get("X-Request-Id") or not str(body["request_id"]).startswith("req_"):
        problems.append("request_id does not match X-Request-Id")
    if resp.mimetype != "application/json":
        problems.append(f"content type {resp.mimetype}")
    if "Traceback" in resp.get_data(as_text=True):
        problems.append("a traceback leaked")
    return problems


class Checker:
    """Sends bad requests, collects every problem, and proves the store unchanged around each."""

    def __init__(self, scene: Scene) -> None:
        self.scene = scene
        self.problems: list[str] = []
        self.sent = 0

    def expect(self, spec: Spec, what: str, status: int, codes: tuple[str, ...] | None = None,
               field: str | None = None, **send: Any):
        before = self.scene.snapshot()
        resp = self.scene.send(spec, **send)
        after = self.scene.snapshot()
        self.sent += 1
        label = f"{spec.method} {spec.rule} {what}"
        found = _check_error(resp, status, codes)
        if field is not None:
            got = ((resp.get_json(silent=True) or {}).get("error") or {}).get("field") or ""
            if got != field and not got.startswith((field + "[", field + ".")):  # or a part of it
                found.append(f"field {got!r}, expected {field!r}")
        for table in before:
            if before[table] != after[table]:
                found.append(f"table {table} changed: {len(before[table])} -> {len(after[table])} rows")
        self.problems += [f"{label}: {p}" for p in found]
        return resp

    def verdict(self) -> None:
        assert self.sent, "no request was sent"
        assert not self.problems, "\n".join(self.problems)


def test_endpoints_with_bodies_are_found():
    rules = {(s.method, s.rule) for s in BODY_SPECS}
    assert {("POST", "/v1/waitlist/"), ("POST", "/auth/login/"), ("POST", "/v1/tokens/"),
            ("PATCH", "/v1/tokens/<token_id>/")} <= rules


def test_malformed_json_is_invalid_request(scene):
    check = Checker(scene)
    for spec in BODY_SPECS:
        for raw in (b'{"email": ', b"{email: 1}", b'{"a": 1} trailing', b"\xff\xfe{}", b"{'a': 1}",
                    b"[" * 100_000, b'{"a": ' * 50_000):
            check.expect(spec, f"with malformed JSON {raw[:12]!r}", 400, ("invalid_request",), data=raw)
    check.verdict()


def test_json_that_is_not_an_object_is_refused(scene):
    check = Checker(scene)
    for spec in BODY_SPECS:
        for raw in ([], [_valid_body(spec)], "a string", 42, None, True):
            check.expect(spec, f"with the JSON {json.dumps(raw)[:20]}", 400, ("invalid_request",),
                         data=json.dumps(raw))
    check.verdict()


def test_wrong_types_name_their_field(scene):
    check = Checker(scene)
    for spec in BODY_SPECS:
        schema, defs = _schema(spec)
        for name, prop in schema["properties"].items():
            for wrong in _wrong_values(prop, defs):
                body = {**_valid_body(spec), name: wrong}
                check.expect(spec, f"with {name}={json.dumps(wrong)}", 400, ("validation_error",), field=name,
                             data=json.dumps(body))
        for name in schema.get("required", []):
            body = {k: v for k, v in _valid_body(spec).items() if k != name}
            check.expect(spec, f"without the required {name}", 400, ("validation_error",), field=name,
                         data=json.dumps(body))
            check.expect(spec, f"with {name}=null", 400, ("validation_error",), field=name,
                         data=json.dumps({**_valid_body(spec), name: None}))
    check.verdict()


def test_unknown_fields_are_refused(scene):
    check = Checker(scene)
    for spec in BODY_SPECS:
        for extra in ("surprise", "is_admin", "tenant_id"):
            body = {**_valid_body(spec), extra: "x"}
            check.expect(spec, f"with the unknown field {extra}", 400, ("validation_error",), field=extra,
                         data=json.dumps(body))
    check.verdict()


def test_a_body_over_the_limit_is_payload_too_large(scene, settings):
    """2 MB is over every route's limit but sending's, which takes a whole message as base64."""
    check = Checker(scene)
    for spec in BODY_SPECS + BODYLESS_WRITES:
        size = TWO_MB if spec.max_body is None else spec.max_body(settings) + 1
        check.expect(spec, f"with a {size // 1_000_000} MB body", 413, ("payload_too_large",),
                     data=json.dumps({"padding": "x" * size}))
    check.verdict()


def test_a_body_that_is_not_json_is_unsupported_media_type(scene):
    check = Checker(scene)
    for spec in BODY_SPECS:
        body = json.dumps(_valid_body(spec))
        for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data",
                             "application/xml", None):
            check.expect(spec, f"sent as {content_type}", 415, ("unsupported_media_type",),
                         data=body, content_type=content_type)
    for spec in BODYLESS_WRITES:
        check.expect(spec, "with a text/plain body", 415, ("unsupported_media_type",), data="hello",
                     content_type="text/plain")
    check.verdict()


def test_bodyless_endpoints_refuse_a_body(scene):
    check = Checker(scene)
    for spec in BODYLESS_WRITES:
        check.expect(spec, "with a body it does not take", 400, ("validation_error", "invalid_request"),
                     data=json.dumps({"surprise": 1}))
    check.verdict()


def _text_fields(spec: Spec) -> list[str]:
    """Free-text string fields: not enums, not secrets, not ids (an unknown id is a 404), not the
    multi-line fields (message bodies) that the schema marks x-multiline."""
    schema, defs = _schema(spec)
    return [name for name, prop in schema["properties"].items()
            if _resolve(prop, defs).get("type") == "string" and "enum" not in _resolve(prop, defs)
            and not prop.get("x-multiline")
            and name not in SECRET_FIELDS and not name.endswith("_id")]


def test_line_breaks_in_text_fields_are_refused(scene):
    check = Checker(scene)
    covered = set()
    for spec in BODY_SPECS:
        for name in _text_fields(spec):
            covered.add(name)
            for breaker in ("\r\n", "\n", "\r", "\x00", "\u0085"):
                body = {**_valid_body(spec), name: f"user@example.com{breaker}Bcc: victim@example.com"}
                check.expect(spec, f"with {name} holding {breaker!r}", 400, data=json.dumps(body))
    assert {"email", "name", "label"} <= covered, covered
    check.verdict()


def test_nul_and_line_breaks_in_ids_and_queries_are_never_server_errors(scene):
    """Ids in paths, query values and id fields: an answer (a 4xx in the contract's shape, or a
    page for an opaque cursor), never a 500. PostgreSQL cannot store NUL, so a NUL that reached
    the store would fail there: it is refused as a 400 before."""
    check = Checker(scene)

    def judge(resp, what: str, bad: str) -> None:  # noqa: ANN001
        problems = []
        if resp.status_code >= 500 or ("\x00" in bad and resp.status_code != 400):
            problems.append(f"status {resp.status_code}")
        if resp.status_code >= 400:
            problems += [p for p in _check_error(resp, resp.status_code) if not p.startswith("status")]
        check.problems += [f"{what}: {p}" for p in problems]
        check.sent += 1

    for spec in sorted(REGISTRY.values(), key=lambda s: (s.rule, s.method)):
        body = json.dumps(_valid_body(spec)) if spec.body is not None else None
        send = {"data": body} if body is not None else {"data": b"", "content_type": None}
        for bad in ("bad\x00id", "bad\r\nid"):
            if "<" in spec.rule:
                values = {name: bad for name in scene.path_values}
                scoped = Scene(scene.client, scene.store, scene.headers_for, values)
                judge(scoped.send(spec, **send), f"{spec.method} {spec.rule} with {bad!r} in the path", bad)
            if spec.query is not None:
                for name in spec.query.model_json_schema()["properties"]:
                    # A write also gets a valid JSON body, so the query is what is judged.
                    body_args = {"data": body, "content_type": "application/json"} if body is not None else {}
                    resp = scene.client.open(scene.url(spec), method=spec.method, query_string={name: bad},
                                             headers=scene.headers_for[spec.endpoint], **body_args)
                    judge(resp, f"{spec.method} {spec.rule}?{name}={bad!r}", bad)
        if spec.body is not None:
            schema, defs = _schema(spec)
            for name, prop in schema["properties"].items():
                if _resolve(prop, defs).get("type") == "string" and name.endswith("_id"):
                    data = json.dumps({**_valid_body(spec), name: "bad\x00id"})
                    check.expect(spec, f"with NUL in {name}", 400, ("validation_error",), data=data)
    check.verdict()


def test_line_breaks_are_refused_even_with_otherwise_good_credentials(scene, world):
    """CR/LF is refused on its own account, not because something else in the body was wrong."""
    person = world.owner()
    login = REGISTRY["access.log_in"]
    check = Checker(scene)
    for email in (person.email + "\r\n", person.email + "\nBcc: x@example.com", "\r\n" + person.email):
        check.expect(login, f"as {email!r}", 400, ("validation_error",), field="email",
                     data=json.dumps({"email": email, "password": PASSWORD}))
    # Sign-up with a valid link but a name carrying a header: refused, and the link stays usable.
    email = "newcomer@example.com"
    raw = world.signup_link(email)
    signup = REGISTRY["access.sign_up"]
    check.expect(signup, "with CR/LF in name", 400, ("validation_error",), field="name",
                 data=json.dumps({"email": email, "signup_token": raw, "password": PASSWORD,
                                  "name": "Eve\r\nBcc: all@example.com"}))
    check.verdict()
    resp = scene.client.post("/auth/signup/", json={"email": email, "signup_token": raw, "password": PASSWORD,
                                                    "name": "Eve"})
    assert resp.status_code == 201, resp.json


def test_an_idn_address_is_accepted_and_stored_in_punycode(scene, store):
    client = scene.client
    resp = client.post("/v1/waitlist/", data='{"email": "user@bücher.example"}'.encode(),
                       content_type="application/json")
    assert resp.status_code == 202, resp.get_json()
    assert resp.json == {"status": "pending"}
    # The same address spelt in punycode, or in capitals, is the same entry.
    for spelling in ("user@xn--bcher-kva.example", "User@BÜCHER.example"):
        again = client.post("/v1/waitlist/", json={"email": spelling})
        assert again.status_code == 202 and again.get_data() == resp.get_data()
    with store.sessions() as db:
        entries = db.scalars(select(WaitlistEntry).where(WaitlistEntry.email.like("%bcher%"))).all()
        assert [(e.email, e.request_count) for e in entries] == [("user@xn--bcher-kva.example", 3)]
