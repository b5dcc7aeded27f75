"""The layering rule, checked on the source: nothing under appliance/ imports a web or SMTP
framework, and nothing under appliance/ imports the edges (api/, webui/, smtp/).

appliance/cli.py is itself an edge (the command line; see DESIGN.md, Layers): it starts the web
app, so it may import api/ and gunicorn. It is still held to the framework rule.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
APPLIANCE = ROOT / "appliance"
FRAMEWORKS = {"flask", "flask_login", "werkzeug", "aiosmtpd"}
EDGES = {"api", "webui", "smtp"}
EDGE_MODULES = {APPLIANCE / "cli.py"}


def imported_modules(source: str, filename: str = "<source>") -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in source, at any depth (functions too)."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
        elif (isinstance(node, ast.Call) and isinstance(node.func, (ast.Name, ast.Attribute))
              and getattr(node.func, "id", getattr(node.func, "attr", "")) == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)):
            found.append((node.lineno, node.args[0].value))
    return found


def violations(source: str, filename: str, *, is_edge: bool = False) -> list[str]:
    banned = FRAMEWORKS if is_edge else FRAMEWORKS | EDGES
    return [f"{filename}:{line} imports {module}" for line, module in imported_modules(source, filename)
            if module.split(".")[0] in banned]


def appliance_sources() -> list[Path]:
    return sorted(p for p in APPLIANCE.rglob("*.py") if "__pycache__" not in p.parts)


def test_the_scan_sees_the_package() -> None:
    names = {p.relative_to(APPLIANCE).as_posix() for p in appliance_sources()}
    assert {"config.py", "db.py", "cli.py", "services/identity/accounts.py", "models/identity.py"} <= names


def test_nothing_under_appliance_imports_a_framework_or_an_edge() -> None:
    problems = []
    for path in appliance_sources():
        problems += violations(path.read_text(), str(path.relative_to(ROOT)), is_edge=path in EDGE_MODULES)
    assert problems == []


def test_the_check_catches_each_kind_of_import() -> None:
    caught = [
        "import flask",
        "from flask import Flask",
        "import flask_login as fl",
        "from werkzeug.exceptions import NotFound",
        "from aiosmtpd.smtp import SMTP",
        "def f():\n    from api.app import create_app",
        "import webui.views",
        "from smtp import handlers",
        "import importlib\nimportlib.import_module('flask')",
    ]
    for source in caught:
        assert violations(source, "x.py"), source
    allowed = ["import json", "from appliance.services import waitlist", "from . import base",
               "import apispec", "import smtplib", "from sqlalchemy import select"]
    for source in allowed:
        assert violations(source, "x.py") == [], source
    # The command line may start the web app, but not use Flask itself.
    assert violations("from api.app import create_app", "cli.py", is_edge=True) == []
    assert violations("from flask import Flask", "cli.py", is_edge=True)
