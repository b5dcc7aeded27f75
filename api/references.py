"""Per-resource references (contract section 19), generated from the route declarations.

`GET /v1/<resource>/reference/` exists for every resource that has a route under `/v1/<resource>/`:
`{version, resource, payload{op: {method, path, auth, summary}}, fields[{name, type, required,
description}]}`, built from the same `endpoint(...)` declarations and pydantic schemas as the OpenAPI
document, so a resource gets its reference the moment its routes are declared. A resource adds its
own keys with `@extend("<resource>")` (the event catalogue adds its types this way); a resource that
still declares its reference by hand keeps it (the generator skips it)."""
from __future__ import annotations

import re
from typing import Any, Callable

import pydantic
from flask import Blueprint, Response

from api.framework import PUBLIC, REGISTRY, Ctx, Spec, endpoint

VERSION = "1"
# Paths under /v1/ that are not resources (the references themselves, the documents).
NOT_RESOURCES = {"reference", "openapi.json"}
EXTRAS: dict[str, Callable[[Ctx], dict[str, Any]]] = {}  # resource -> its own keys
_blueprint: list[Blueprint] = []


class ResourceReference(pydantic.BaseModel):
    """A resource's reference; a resource may add its own keys."""

    model_config = pydantic.ConfigDict(extra="allow")
    version: str
    resource: str
    payload: dict[str, dict[str, Any]]
    fields: list[dict[str, Any]]


def extend(resource: str) -> Callable:
    """Register a function (ctx -> dict) whose keys are laid over the resource's generated reference."""
    def decorate(func: Callable[[Ctx], dict[str, Any]]) -> Callable[[Ctx], dict[str, Any]]:
        EXTRAS[resource] = func
        return func
    return decorate


def path_of(rule: str) -> str:
    """A Flask rule in the OpenAPI document's form."""
    return re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule)


def resource_of(rule: str) -> str | None:
    """The resource a /v1/ rule belongs to: its first path segment."""
    if not rule.startswith("/v1/"):
        return None
    name = rule[len("/v1/"):].split("/", 1)[0]
    return None if name in NOT_RESOURCES or not name else name


def resources() -> dict[str, list[Spec]]:
    """Every resource with its declared operations (the generated references themselves left out)."""
    out: dict[str, list[Spec]] = {}
    for spec in sorted(REGISTRY.values(), key=lambda s: (s.rule, s.method)):
        name = resource_of(spec.rule)
        if name is not None and spec.rule != f"/v1/{name}/reference/":
            out.setdefault(name, []).append(spec)
    return out


def _op_name(spec: Spec, taken: dict) -> str:
    name = spec.endpoint.rsplit(".", 1)[-1]
    return spec.endpoint.replace(".", "_") if name in taken else name


def payload(specs: list[Spec]) -> dict[str, dict[str, Any]]:
    """Each operation by name: method, path (as in the OpenAPI document), auth and summary."""
    out: dict[str, dict[str, Any]] = {}
    for spec in specs:
        out[_op_name(spec, out)] = {"method": spec.method, "path": path_of(spec.rule),
                                    "auth": spec.auth.describe(), "summary": spec.summary}
    return out


def _item_model(model: type[pydantic.BaseModel] | None) -> type[pydantic.BaseModel] | None:
    """A list answer's item model (`results: list[X]`), else the model itself."""
    field = model.model_fields.get("results") if model is not None else None
    args = getattr(field.annotation, "__args__", ()) if field is not None else ()
    if args and isinstance(args[0], type) and issubclass(args[0], pydantic.BaseModel):
        return args[0]
    return model


def _object_and_create(specs: list[Spec]) -> tuple[type | None, type | None]:
    """The resource's object (the answer of the shortest `GET …/<id>/`, else of its create or list)
    and the body that creates it (the POST on that object's collection)."""
    one = sorted((s for s in specs if s.method == "GET" and s.response is not None
                  and re.search(r"/<[^>]+>/$", s.rule)), key=lambda s: (s.rule.count("/"), len(path_of(s.rule))))
    collection = re.sub(r"<[^>]+>/$", "", one[0].rule) if one else None
    creates = [s for s in specs if s.method == "POST" and s.body is not None
               and (s.rule == collection or collection is None)]
    create = creates[0] if creates else None
    if one:
        return one[0].response, create.body if create else None
    answered = [s for s in specs if s.response is not None]
    obj = (create.response if create and create.response else answered[0].response if answered else None)
    return _item_model(obj), create.body if create else None


def _type(prop: dict[str, Any]) -> str:
    if "$ref" in prop:
        return prop["$ref"].rsplit("/", 1)[-1]
    if "anyOf" in prop:
        return " | ".join(_type(p) for p in prop["anyOf"])
    if prop.get("type") == "array":
        return f"array<{_type(prop.get('items', {}))}>"
    if "const" in prop:
        return "string"
    kind = prop.get("type", "any")
    return f"{kind} ({prop['format']})" if "format" in prop else str(kind)


def fields(specs: list[Spec]) -> list[dict[str, Any]]:
    """The object's fields, then the create body's own; `required` means required when creating."""
    obj, create = _object_and_create(specs)
    out: dict[str, dict[str, Any]] = {}
    required: set[str] = set()
    for model, mode in ((obj, "serialization"), (create, "validation")):
        if model is None:
            continue
        schema = model.model_json_schema(mode=mode)
        if model is create:
            required = set(schema.get("required", []))
        for name, prop in schema.get("properties", {}).items():
            entry = out.setdefault(name, {"name": name, "type": _type(prop), "required": False,
                                          "description": ""})
            entry["description"] = entry["description"] or prop.get("description", "")
    for name in required & set(out):
        out[name]["required"] = True
    return list(out.values())


def build(resource: str, specs: list[Spec]) -> dict[str, Any]:
    """One resource's generated reference."""
    return {"version": VERSION, "resource": resource, "payload": payload(specs), "fields": fields(specs)}


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Lay a resource's own keys over its generated reference (dicts merge, the rest replaces)."""
    out = dict(base)
    for key, value in extra.items():
        out[key] = {**out[key], **value} if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def index() -> dict[str, Any]:
    """`GET /v1/reference/api/`: every operation and every resource's reference path."""
    every = [spec for spec in sorted(REGISTRY.values(), key=lambda s: (s.rule, s.method))
             if spec.rule != "/v1/reference/api/"]
    return {"version": VERSION, "resource": "api", "payload": payload(every), "fields": [],
            "openapi": "/v1/openapi.json", "errors": "/v1/reference/errors/",
            "resources": {name: f"/v1/{name}/reference/" for name in resources()}}


def _view(resource: str) -> Callable:
    def view(ctx: Ctx) -> dict[str, Any]:
        reference = build(resource, resources()[resource])
        extra = EXTRAS.get(resource)
        return merge(reference, extra(ctx)) if extra is not None else reference
    view.__name__ = f"{resource.replace('-', '_').replace('.', '_')}_reference"
    # The path also matches the resource's `/<id>/` rule: Flask's automatic OPTIONS answer would
    # list that rule's methods too. _allow() answers for this path alone.
    view.provide_automatic_options = False  # type: ignore[attr-defined]
    return view


def _allow() -> Response:
    """OPTIONS on a reference: GET is its one operation."""
    return Response(status=200, headers={"Allow": "GET, HEAD, OPTIONS"})


def blueprint() -> Blueprint:
    """The blueprint of generated references: built once, after every route module is imported."""
    if not _blueprint:
        bp = Blueprint("references", __name__)
        declared = {spec.rule for spec in REGISTRY.values()}
        for name in resources():
            if f"/v1/{name}/reference/" not in declared:  # a hand-written one is kept
                endpoint(bp, f"/v1/{name}/reference/", "GET", auth=PUBLIC, tag="reference",
                         response=ResourceReference,
                         summary=f"The {name} resource's reference: operations and fields")(_view(name))
                bp.add_url_rule(f"/v1/{name}/reference/", f"{name}_reference_options", _allow, methods=["OPTIONS"])
        _blueprint.append(bp)
    return _blueprint[0]
