"""The web UI (issue 6): server-rendered pages for people, beside the JSON API.

Structure, which other modules build on:
- `bp`, the one blueprint ("webui"): public pages at /signup/, /waitlist/, /login/, /logout/ and
  the admin pages under /admin/. View modules live in webui/views/*.py and are imported
  automatically by init_app (add a module; edit nothing here). Templates in webui/templates/
  (base layout base.html, one subfolder per area), static files in webui/static/ served at
  /admin/static/ (no CDN).
- Navigation is a registry: each view module calls `nav_item(label, endpoint, order, ...)`.
- Access: decorate every view with exactly one of `public_page`, `login_required_page`,
  `manager_required` (tenant owners and admins) or `operator_required` (appliance operators);
  tests walk every rule and fail on an undecorated one. `current_principal()` is the same
  Principal type the API's services take.
- Errors: services raise typed errors (appliance/errors.py); `flash_error(exc)` shows one as a
  flash message, `render_error(exc)` as an HTML error page with its status.
"""
from __future__ import annotations

from flask import Blueprint, Flask, request

bp = Blueprint("webui", __name__, template_folder="templates", static_folder="static",
               static_url_path="/admin/static")

# Paths that belong to the web UI: their answers (errors included) are HTML, never JSON.
WEB_PREFIXES = ("/admin/", "/signup/", "/waitlist/", "/login/", "/logout/")


def is_web_request() -> bool:
    """True for a request to a web UI path (the API keeps its JSON conventions everywhere else)."""
    path = request.path
    return path == "/admin" or path.startswith(WEB_PREFIXES)


from webui.auth import (current_principal, login_required_page, manager_required,  # noqa: E402
                        operator_required, public_page)
from webui.errors import flash_error, render_error  # noqa: E402
from webui.nav import nav_item  # noqa: E402


def init_app(app: Flask) -> None:
    """Install the web UI on the app: views, sessions, CSRF, headers and HTML errors."""
    from webui import setup
    setup.install(app)


__all__ = ["bp", "init_app", "is_web_request", "current_principal", "login_required_page",
           "manager_required", "operator_required", "public_page", "flash_error", "render_error",
           "nav_item", "WEB_PREFIXES"]
