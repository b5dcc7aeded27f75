"""Machine-readable references: the OpenAPI document and the error codes."""
from __future__ import annotations

from flask import Blueprint

from api import schemas as s
from api.framework import PUBLIC, Ctx, endpoint
from api.openapi import build_document
from appliance.errors import ERROR_CODES

bp = Blueprint("reference", __name__)
_cache: dict[str, dict] = {}


def _document() -> dict:
    if "doc" not in _cache:  # the declarations are static, so the document is built once
        _cache["doc"] = build_document()
    return _cache["doc"]


@endpoint(bp, "/v1/openapi.json", "GET", auth=PUBLIC, tag="reference",
          summary="This API's OpenAPI 3.1 document")
def openapi(ctx: Ctx) -> dict:
    return _document()


@endpoint(bp, "/v1/reference/api/", "GET", auth=PUBLIC, tag="reference",
          summary="The same OpenAPI document, at the contract's reference path")
def reference_api(ctx: Ctx) -> dict:
    return _document()


@endpoint(bp, "/v1/reference/errors/", "GET", auth=PUBLIC, tag="reference", response=s.ErrorReference,
          summary="Every error code with its HTTP status and meaning")
def reference_errors(ctx: Ctx) -> dict:
    return {"results": [{"code": code, "status": status, "meaning": meaning}
                        for code, (status, meaning) in ERROR_CODES.items()]}

