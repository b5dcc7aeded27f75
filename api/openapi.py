"""The OpenAPI 3.1 document, generated from the endpoint declarations and their schemas."""
from __future__ import annotations

import re
from typing import Any

import pydantic

from api.framework import REGISTRY, Spec
from api.schemas import ErrorBody

REF = "#/components/schemas/{model}"
# Public operations answer 401/403 too: wrong credentials at /auth/login/, a revoked refresh token,
# or a bad or paused bearer token sent along anyway.
ERROR_STATUSES = ("400", "401", "403", "404", "405", "409", "413", "415", "429", "500", "503")
_DESCRIPTIONS = {"200": "OK", "201": "Created", "202": "Accepted", "204": "No content", "400": "Bad request",
                 "401": "Unauthenticated", "403": "Forbidden", "404": "Not found",
                 "405": "Method not allowed", "409": "Conflict", "413": "Payload too large",
                 "415": "Unsupported media type", "429": "Rate limited", "500": "Internal error",
                 "503": "Unavailable"}


def _schema(model: type[pydantic.BaseModel], components: dict, mode: str) -> dict:
    schema = model.model_json_schema(ref_template=REF, mode=mode)
    for name, sub in schema.pop("$defs", {}).items():
        components.setdefault(name, sub)
    components.setdefault(model.__name__, schema)
    return {"$ref": REF.format(model=model.__name__)}


def _parameters(spec: Spec, components: dict) -> list[dict]:
    params = [{"name": name, "in": "path", "required": True,
               "schema": {"type": "string", "minLength": 1, "maxLength": 100, "pattern": "^[A-Za-z0-9_.@-]+$"}}
              for name in re.findall(r"<(?:\w+:)?(\w+)>", spec.rule)]
    if spec.query is not None:
        schema = spec.query.model_json_schema(ref_template=REF)
        required = set(schema.get("required", []))
        for name, prop in schema.get("properties", {}).items():
            params.append({"name": name, "in": "query", "required": name in required, "schema": prop,
                           **({"description": prop["description"]} if "description" in prop else {})})
    return params


def _operation(spec: Spec, components: dict) -> dict:
    op: dict[str, Any] = {"operationId": spec.endpoint.replace(".", "_"), "summary": spec.summary,
                          "tags": [spec.tag], "x-auth": spec.auth.describe(),
                          "security": [] if spec.auth.kind == "public" else [{"bearer": []}]}
    params = _parameters(spec, components)
    if params:
        op["parameters"] = params
    if spec.method == "POST":
        op.setdefault("parameters", []).append(
            {"name": "Idempotency-Key", "in": "header", "required": False,
             "schema": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": "^[\\x20-\\x7e]+$"}})
    if spec.accepts is not None:
        op["requestBody"] = {"required": True, "content": {spec.accepts: {"schema": {"type": "string"}}}}
    if spec.body is not None:
        op["requestBody"] = {"required": not spec.body_optional, "content": {
            "application/json": {"schema": _schema(spec.body, components, "validation")}}}
    ok: dict[str, Any] = {"description": _DESCRIPTIONS.get(str(spec.status), "OK")}
    if spec.status != 204:
        schema = _schema(spec.response, components, "serialization") if spec.response else {}
        ok["content"] = {spec.content_type: {"schema": schema}}
    responses = {str(spec.status): ok}
    for status, model in spec.answers.items():
        responses[str(status)] = {"description": _DESCRIPTIONS.get(str(status), "OK"), "content": {
            "application/json": {"schema": _schema(model, components, "serialization")}}}
    for code in ERROR_STATUSES:
        responses[code] = {"$ref": f"#/components/responses/E{code}"}
    op["responses"] = responses
    return op


def _add_links(paths: dict[str, dict], components: dict[str, Any]) -> None:
    """OpenAPI links create -> get/update/delete: a POST on a collection whose answer carries the id
    that its `{collection}{id}/` operations take (schemathesis' stateful runs follow them)."""
    for path, item in paths.items():
        post = item.get("post")
        created = post and next((r for s, r in post["responses"].items() if s in ("200", "201")), None)
        if not created or "content" not in created:
            continue
        schema_ref = created["content"].get("application/json", {}).get("schema", {}).get("$ref")
        for other, ops in paths.items():
            param = re.fullmatch(re.escape(path) + r"\{(\w+)\}/", other)
            answer = components.get((schema_ref or "").rsplit("/", 1)[-1], {})
            if not param or param.group(1) not in answer.get("properties", {}):
                continue
            links = {f"{method.upper()}_{ops[method]['operationId']}": {
                "operationId": ops[method]["operationId"],
                "parameters": {param.group(1): f"$response.body#/{param.group(1)}"}}
                for method in ("get", "patch", "delete") if method in ops}
            if links:
                created.setdefault("links", {}).update(links)


def build_document(base_url: str = "") -> dict:
    """The whole document, from the registry (no hand-written paths)."""
    components: dict[str, Any] = {}
    _schema(ErrorBody, components, "serialization")
    paths: dict[str, dict] = {}
    for spec in sorted(REGISTRY.values(), key=lambda s: (s.rule, s.method)):
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", spec.rule)
        paths.setdefault(path, {})[spec.method.lower()] = _operation(spec, components)
    _add_links(paths, components)
    error_responses = {
        f"E{code}": {"description": _DESCRIPTIONS[code],
                     "content": {"application/json": {"schema": {"$ref": REF.format(model="ErrorBody")}}}}
        for code in ERROR_STATUSES}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Gentbox API", "version": "1",
                 "description": "The Gent API served by a Gentbox appliance. Errors share one body; "
                                "see GET /v1/reference/errors/."},
        "servers": [{"url": base_url or "/"}],
        "paths": paths,
        "components": {"schemas": components, "responses": error_responses,
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                                      "description": "gent_ agent token or session access token"}}},
    }
