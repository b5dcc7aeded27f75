"""Every event type the code emits is in the one registry (issue 14 point 11): the code is read
(AST), every `emit`/`emit_many` call's type is worked out, and each must be registered."""
from __future__ import annotations

import ast
import itertools
import re
from pathlib import Path

from appliance.services.automation.event_types import CATEGORIES, REGISTRY

ROOT = Path(__file__).resolve().parents[2]
CODE = [p for folder in ("appliance", "api", "webui", "smtp") for p in (ROOT / folder).rglob("*.py")
        if "migrations" not in p.parts]
EMITTERS = {"emit", "emit_many"}
PREFIXES = sorted({t.split(".", 1)[0] for t in REGISTRY})


def _is_emit(node: ast.AST) -> bool:
    func = node.func if isinstance(node, ast.Call) else None
    return (isinstance(func, ast.Attribute) and func.attr in EMITTERS) or \
        (isinstance(func, ast.Name) and func.id in EMITTERS)


def _strings(node: ast.AST) -> list[str] | None:
    """Every value a type expression can take when it is made of literals: "a.b", f"a.{'b' if c
    else 'd'}", "x" if c else "y"; None when it is a variable."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.IfExp):
        body, orelse = _strings(node.body), _strings(node.orelse)
        return None if body is None or orelse is None else body + orelse
    if isinstance(node, ast.JoinedStr):
        parts = [_strings(v.value if isinstance(v, ast.FormattedValue) else v) for v in node.values]
        if any(p is None for p in parts):
            return None
        return ["".join(combo) for combo in itertools.product(*parts)]
    return None


def emitted_types() -> tuple[set[str], list[str]]:
    """The literal types of emit calls, and, for modules whose calls pass a variable, every string
    in the module that looks like an event type of a known family (they are what the variable holds:
    `_announce(db, approval, "approval.expired", ...)`, the inbound path's row dicts)."""
    found: set[str] = set()
    variable_in: list[str] = []
    looks_like = re.compile(rf"^({'|'.join(PREFIXES)})\.[a-z_]+$")
    for path in CODE:
        tree = ast.parse(path.read_text(), str(path))
        calls = [n for n in ast.walk(tree) if _is_emit(n) and len(n.args) >= 2]
        if not calls:
            continue
        for call in calls:
            values = _strings(call.args[1])
            if values is None:
                variable_in.append(str(path.relative_to(ROOT)))
            else:
                found.update(values)
        if any(_strings(c.args[1]) is None for c in calls):
            found.update(n.value for n in ast.walk(tree)
                         if isinstance(n, ast.Constant) and isinstance(n.value, str) and looks_like.match(n.value))
    return found, variable_in


def test_every_type_the_code_emits_is_registered():
    found, variable_in = emitted_types()
    assert {"inbox.created", "message.received", "user.disabled", "user.enabled", "approval.expired",
            "message.delivered", "token.narrowed", "user.role_changed"} <= found  # the walk sees them all
    assert "appliance/services/mail/inbound.py" in variable_in  # emit_many of row dicts
    missing = sorted(found - set(REGISTRY))
    assert not missing, f"emitted but not in appliance/services/automation/event_types.py: {missing}"


def test_the_walk_catches_an_unregistered_literal():
    tree = ast.parse('events.emit(db, f"user.{\'gone\' if x else \'enabled\'}", tenant_id=None)')
    [call] = [n for n in ast.walk(tree) if _is_emit(n)]
    assert set(_strings(call.args[1])) - set(REGISTRY) == {"user.gone"}


def test_every_registered_type_has_a_described_category():
    assert all(t.category in CATEGORIES and t.description for t in REGISTRY.values())
    assert all(re.fullmatch(r"[a-z_]+\.[a-z_]+", name) for name in REGISTRY)
