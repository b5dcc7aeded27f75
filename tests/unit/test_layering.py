"""The layering rule, checked on the source: nothing under appliance/ imports a web or SMTP
framework, and nothing under appliance/ imports the edges (api/, webui/, smtp/). The edges do not
import each other (shared helpers live below them, in appliance/), except the web app factory
(api/app.py), which mounts the web UI; smtp/ uses no web framework and the web edges no SMTP one.
No module imports, at module level, a module that imports it back (directly or around a loop).

appliance/cli.py is itself an edge (the command line; see DESIGN.md, Layers): it starts the web
app, so it may import api/ and gunicorn. It is still held to the framework rule.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
APPLIANCE = ROOT / "appliance"
FRAMEWORKS = {"flask", "flask_login", "werkzeug", "aiosmtpd"}
EDGES = {"api", "webui", "smtp", "imap"}
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


# Which edges and frameworks each edge may import. api/app.py is the composition root of the web
# process: it mounts the web UI's blueprint.
EDGE_RULES = {
    "api": ({"webui", "smtp", "aiosmtpd"}, {ROOT / "api" / "app.py": {"webui"}}),
    "webui": ({"api", "smtp", "aiosmtpd"}, {}),
    "smtp": ({"api", "webui", "imap", "flask", "flask_login", "werkzeug"}, {}),
    "imap": ({"api", "webui", "smtp", "flask", "flask_login", "werkzeug", "aiosmtpd"}, {}),
}


def edge_violations(source: str, filename: str, edge: str, path: Path | None = None) -> list[str]:
    banned, exceptions = EDGE_RULES[edge]
    allowed = exceptions.get(path, set()) if path is not None else set()
    return [f"{filename}:{line} imports {module}" for line, module in imported_modules(source, filename)
            if module.split(".")[0] in banned - allowed]


def test_edges_do_not_import_each_other() -> None:
    problems = []
    for edge in EDGE_RULES:
        for path in sorted((ROOT / edge).rglob("*.py")):
            problems += edge_violations(path.read_text(), str(path.relative_to(ROOT)), edge, path)
    assert problems == []


def test_the_edge_check_catches_each_kind_of_import() -> None:
    assert edge_violations("from api.routes.mail.messages import content_disposition", "v.py", "webui")
    assert edge_violations("def f():\n    from api.framework import x", "v.py", "webui")
    assert edge_violations("import webui", "r.py", "api")
    assert edge_violations("from flask import Flask", "s.py", "smtp")
    assert edge_violations("from aiosmtpd.smtp import SMTP", "v.py", "webui")
    assert edge_violations("from webui import init_app", "app.py", "api", ROOT / "api" / "app.py") == []
    assert edge_violations("from appliance.httputil import content_disposition", "v.py", "webui") == []


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_level_imports(path: Path, known: set[str]) -> set[str]:
    """First-party modules that path imports when it is loaded (not inside functions, not only
    for type checkers); `from pkg import mod` counts as importing pkg.mod."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.parse(path.read_text(), str(path)).body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.dump(node.test):
            continue
        for inner in (node.body if isinstance(node, ast.Try) else [node]):
            if isinstance(inner, ast.Import):
                found.update(alias.name for alias in inner.names)
            elif isinstance(inner, ast.ImportFrom):
                base = package.split(".")[: len(package.split(".")) - inner.level + 1] if inner.level else []
                module = ".".join(base + ([inner.module] if inner.module else [])) if inner.level else inner.module
                for alias in inner.names:
                    found.add(f"{module}.{alias.name}" if f"{module}.{alias.name}" in known else module)
    # A submodule importing its own package (webui.views.x -> webui) is how packages are built.
    return {m for m in found if m in known and not name.startswith(m + ".")}


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan), each a cycle of imports."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                top = stack.pop()
                group.append(top)
                if top == node:
                    break
            if len(group) > 1 or node in graph.get(node, ()):
                cycles.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def first_party_sources() -> list[Path]:
    return sorted(p for edge in ("appliance", "api", "webui", "smtp") for p in (ROOT / edge).rglob("*.py")
                  if "__pycache__" not in p.parts and "migrations" not in p.parts)


def test_no_module_level_import_cycles() -> None:
    sources = first_party_sources()
    known = {module_name(p) for p in sources}
    graph = {module_name(p): module_level_imports(p, known) for p in sources}
    assert graph["appliance.services.mail.outbound"]  # the scan reads imports
    assert import_cycles(graph) == []


def test_the_cycle_check_finds_a_cycle() -> None:
    assert import_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert import_cycles({"a": {"b"}, "b": set()}) == []
