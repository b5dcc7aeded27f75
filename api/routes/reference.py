"""Machine-readable references: the OpenAPI document and the error codes."""
from __future__ import annotations

from html import escape

from flask import Blueprint, Response, request

from api import references, schemas as s, skill
from api.framework import PUBLIC, REGISTRY, Ctx, Reply, endpoint
from api.openapi import build_document
from api.references import ResourceReference
from appliance.errors import ERROR_CODES, default_fix, docs_url

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


@endpoint(bp, "/v1/reference/api/", "GET", auth=PUBLIC, tag="reference", response=ResourceReference,
          summary="The whole contract: every operation, and each resource's reference path")
def reference_api(ctx: Ctx) -> dict:
    return references.index()


@endpoint(bp, "/v1/reference/errors/", "GET", auth=PUBLIC, tag="reference", response=s.ErrorReference,
          summary="Every error code with its HTTP status, meaning, generic fix and docs anchor")
def reference_errors(ctx: Ctx) -> dict:
    return {"results": [{"code": code, "status": status, "meaning": meaning, "fix": default_fix(code),
                         "docs_url": docs_url(code)}
                        for code, (status, meaning) in ERROR_CODES.items()]}



@endpoint(bp, "/docs/", "GET", auth=PUBLIC, tag="reference", content_type="text/html",
          summary="A human-readable page of every endpoint, generated from the same declarations")
def docs_page(ctx: Ctx) -> Reply:
    rows = "".join(
        f"<tr><td><code>{escape(spec.method)}</code></td><td><code>{escape(spec.rule)}</code></td>"
        f"<td>{escape(spec.auth.describe())}</td><td>{escape(spec.summary)}</td></tr>"
        for spec in sorted(REGISTRY.values(), key=lambda s: (s.tag, s.rule, s.method)))
    page = (
        "<!doctype html><html lang=en><meta charset=utf-8><title>Gentbox API</title>"
        "<style>body{font:15px system-ui;margin:2em}td{padding:.2em .8em;border-bottom:1px solid #ddd}"
        "code{font-size:13px}</style><h1>Gentbox API</h1>"
        "<p>Machine-readable: <a href=/v1/openapi.json>/v1/openapi.json</a> (OpenAPI 3.1) and "
        "<a href=/v1/reference/errors/>/v1/reference/errors/</a> (readable: <a href=/docs/errors/>error codes</a>). Send <code>Authorization: Bearer "
        "&lt;token&gt;</code>; bodies are JSON.</p>"
        f"<table><tr><th>method</th><th>path</th><th>auth</th><th>what it does</th></tr>{rows}</table>")
    return _html(page)


def _html(page: str) -> Reply:
    return Reply(200, Response(page, mimetype="text/html", headers={
        "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'"}))


@endpoint(bp, "/docs/errors/", "GET", auth=PUBLIC, tag="reference", content_type="text/html",
          summary="A human-readable page of every error code, one anchor per code (each error's docs_url)")
def docs_errors_page(ctx: Ctx) -> Reply:
    rows = "".join(
        f"<tr id={escape(code)}><td><a href=#{escape(code)}><code>{escape(code)}</code></a></td>"
        f"<td>{status}</td><td>{escape(meaning)}</td><td>{escape(default_fix(code) or '')}</td></tr>"
        for code, (status, meaning) in ERROR_CODES.items())
    return _html(
        "<!doctype html><html lang=en><meta charset=utf-8><title>Gentbox API errors</title>"
        "<style>body{font:15px system-ui;margin:2em}td{padding:.2em .8em;border-bottom:1px solid #ddd}"
        "code{font-size:13px}:target{background:#ffc}</style><h1>Gentbox API errors</h1>"
        "<p>Every error body is <code>{\"error\": {\"code\", \"message\", \"field\"?, \"fix\", "
        "\"docs_url\"}, \"request_id\"}</code>; the error's own <code>fix</code> is more precise than the "
        "generic one below. Machine-readable: <a href=/v1/reference/errors/>/v1/reference/errors/</a>.</p>"
        f"<table><tr><th>code</th><th>status</th><th>meaning</th><th>generic fix</th></tr>{rows}</table>")


@endpoint(bp, "/SKILL.md", "GET", auth=PUBLIC, tag="reference", content_type="text/markdown",
          summary="This appliance's skill file for agents: base URL, auth and scopes, the quickstart as curl "
                  "calls, errors, rate limits and events, generated from the live registries")
def skill_file(ctx: Ctx) -> Reply:
    # The operator's public URL when set (behind a proxy the request's host may be internal), else
    # the URL this request came in on.
    base = ctx.settings.public_url or request.url_root
    return Reply(200, Response(skill.render(ctx.settings, base), mimetype="text/markdown",
                               headers={"Content-Security-Policy": "default-src 'none'"}))
