"""Workflow recipes (issue 20 point 6, contract section 14): a TOML file that installs a set of
sequences and workflows in one call.

The recipe (read with `tomllib`):

    schema_version = 1
    kind = "gent.workflow_recipe"
    name = "Invoice triage"

    [inputs.vendor_domain]            # each input: description, required (default true), default
    description = "The vendor's mail domain"

    [[resources]]                      # installed in the order sequences, then workflows
    type = "workflow"                  # or "sequence"
    key = "triage"                     # names it in the answer and in {{resources.triage.id}}
    name = "Invoices from {{vendor_domain}}"
    trigger = { type = "email_received" }
    conditions = [{ field = "from_domain", op = "eq", value = "{{vendor_domain}}" }]
    writes = [{ target = { type = "email.add_label", label = "invoices" } }]

`{{name}}` in any string is replaced by the input's value (a string that is only a placeholder
takes the value's own type); `{{resources.<key>.id}}` by the id of a resource installed before
it. A `sequence` resource's other fields go to `sequences.create(session, principal, **spec)`.

`validate` answers diagnostics only (`missing_input`, `unknown_input`, `secret_in_recipe`,
`unsupported_resource`, `invalid_resource`, …): it installs the recipe inside a savepoint and
rolls it back, so every check the real install makes is made, and nothing is created. `install`
does the same and keeps it, all or nothing in the caller's transaction: any error diagnostic is a
`400 recipe_invalid` and nothing is created. Secrets never belong in a recipe (a literal webhook
secret, token, private key or password is `secret_in_recipe`): pass them as inputs.
"""
from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from appliance.config import Settings
from appliance.errors import GentError, ValidationError
from appliance.services.automation import workflows
from appliance.services.identity.auth import Principal

KIND = "gent.workflow_recipe"
SCHEMA_VERSIONS = (1,)
MAX_RECIPE = 64 * 1024
MAX_RESOURCES = 50
TYPES = ("sequence", "workflow")
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_.]{0,80})\s*\}\}")
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")
# Our own fixed patterns (not a user's): what a secret pasted into a recipe looks like.
_SECRETS = (re.compile(r"whsec_[A-Za-z0-9+/=]{16,}"), re.compile(r"gent_[A-Za-z0-9_-]{20,}"),
            re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"), re.compile(r"https?://[^/\s:@]+:[^/\s@]+@"),
            re.compile(r"(?i)\b(password|passwd|secret|api[_-]?key|token)\s*[:=]\s*\S{6,}"))
_SECRET_NAMES = re.compile(r"(?i)^(password|passwd|secret|api_key|apikey|token|private_key)$")


@dataclass
class Outcome:
    """What a recipe came to: its diagnostics and, when installed, the resources made."""

    diagnostics: list[dict] = field(default_factory=list)
    resources: list[dict] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(d["severity"] == "error" for d in self.diagnostics)

    def add(self, code: str, message: str, path: str = "", severity: str = "error") -> None:
        self.diagnostics.append({"code": code, "message": message, "path": path, "severity": severity})


def validate(db: Session, settings: Settings, principal: Principal, inbox_id: str | None, recipe: str,
             inputs: dict[str, Any]) -> Outcome:
    """The recipe's diagnostics; creates nothing (the install runs in a savepoint rolled back)."""
    outcome = Outcome()
    nested = db.begin_nested()
    try:
        _install(db, settings, principal, inbox_id, recipe, inputs or {}, outcome)
    finally:
        nested.rollback()
    outcome.resources = []
    return outcome


def install(db: Session, settings: Settings, principal: Principal, inbox_id: str | None, recipe: str,
            inputs: dict[str, Any]) -> Outcome:
    """Install every resource of the recipe (sequences, then workflows), all or nothing."""
    outcome = Outcome()
    nested = db.begin_nested()
    try:
        _install(db, settings, principal, inbox_id, recipe, inputs or {}, outcome)
    except BaseException:
        nested.rollback()
        raise
    if not outcome.ok:
        nested.rollback()
        first = next(d for d in outcome.diagnostics if d["severity"] == "error")
        raise ValidationError(f"The recipe has {sum(d['severity'] == 'error' for d in outcome.diagnostics)} "
                              f"problem(s); the first: {first['message']}", code="recipe_invalid",
                              field=first["path"] or "recipe",
                              fix="POST the recipe to /v1/workflows/recipes/validate/ to see every diagnostic.")
    nested.commit()
    return outcome


def _install(db: Session, settings: Settings, principal: Principal, inbox_id: str | None, recipe: str,
             inputs: dict[str, Any], outcome: Outcome) -> None:
    parsed = _parse(recipe, outcome)
    if parsed is None:
        return
    values = _inputs(parsed, inputs, outcome)
    _find_secrets(parsed, outcome)
    resources = _resources(parsed, outcome)
    if not outcome.ok:
        return
    made: dict[str, str] = {}
    for index, resource in sorted(resources, key=lambda item: TYPES.index(item[1]["type"])):
        where = f"resources[{index}]"
        spec = _resolve(resource, values, made, outcome, where)
        if not outcome.ok:
            return
        try:
            with db.begin_nested():
                made_id, extra = _create(db, settings, principal, inbox_id, spec, outcome, where)
        except GentError as exc:
            outcome.add("invalid_resource", f"{where}: {exc.message}",
                        f"{where}.{exc.field}" if exc.field else where)
            continue
        if made_id is not None:
            made[resource["key"]] = made_id
            outcome.resources.append({"type": resource["type"], "key": resource["key"], "id": made_id, **extra})


def _parse(recipe: str, outcome: Outcome) -> dict | None:
    if len(recipe.encode()) > MAX_RECIPE:
        outcome.add("recipe_too_large", f"A recipe is at most {MAX_RECIPE} bytes.", "recipe")
        return None
    try:
        parsed = tomllib.loads(recipe)
    except tomllib.TOMLDecodeError as exc:
        outcome.add("invalid_toml", f"Not valid TOML: {exc}", "recipe")
        return None
    if parsed.get("kind") != KIND:
        outcome.add("wrong_kind", f"kind must be {KIND!r}.", "kind")
    if parsed.get("schema_version") not in SCHEMA_VERSIONS:
        outcome.add("unsupported_schema_version", "schema_version must be 1.", "schema_version")
    return parsed if outcome.ok else None


def _inputs(parsed: dict, given: dict[str, Any], outcome: Outcome) -> dict[str, Any]:
    """The input values: given, else the default; a required one without either is missing."""
    declared = parsed.get("inputs") or {}
    if not isinstance(declared, dict):
        outcome.add("invalid_inputs", "inputs must be a table of input names.", "inputs")
        return {}
    values = {}
    for name, spec in declared.items():
        spec = spec if isinstance(spec, dict) else {}
        if name in given:
            values[name] = given[name]
        elif "default" in spec:
            values[name] = spec["default"]
        elif spec.get("required", True):
            outcome.add("missing_input", f"The input {name!r} needs a value.", f"inputs.{name}")
    for name in given:
        if name not in declared:
            outcome.add("unexpected_input", f"The recipe declares no input {name!r}; it is ignored.",
                        f"inputs.{name}", severity="warning")
    return values


def _strings(value: Any, path: str):  # noqa: ANN202 - (path, key, string) of every string inside
    if isinstance(value, str):
        yield path, path.rsplit(".", 1)[-1], value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, f"{path}[{index}]")


def _find_secrets(parsed: dict, outcome: Outcome) -> None:
    """A literal secret anywhere in the recipe (a default included) is an error: pass it as an input."""
    for path, key, text in _strings(parsed, ""):
        literal = not _PLACEHOLDER.fullmatch(text.strip())
        if any(p.search(text) for p in _SECRETS) or (literal and text and _SECRET_NAMES.match(key)):
            outcome.add("secret_in_recipe", f"{path} holds what looks like a secret; declare an input and pass "
                                            "the value when installing.", path)


def _resources(parsed: dict, outcome: Outcome) -> list[tuple[int, dict]]:
    items = parsed.get("resources")
    if not isinstance(items, list) or not items:
        outcome.add("no_resources", "A recipe installs at least one resource ([[resources]]).", "resources")
        return []
    if len(items) > MAX_RESOURCES:
        outcome.add("too_many_resources", f"A recipe installs at most {MAX_RESOURCES} resources.", "resources")
        return []
    found, keys = [], set()
    for index, item in enumerate(items):
        where = f"resources[{index}]"
        if not isinstance(item, dict) or item.get("type") not in TYPES:
            outcome.add("unsupported_resource", f"{where}.type must be one of {', '.join(TYPES)}.", f"{where}.type")
            continue
        key = item.get("key") or f"{item['type']}_{index}"
        if not isinstance(key, str) or not _KEY.match(key) or key in keys:
            outcome.add("invalid_resource", f"{where}.key must be a unique name (letters, digits, _ and -).",
                        f"{where}.key")
            continue
        keys.add(key)
        found.append((index, {**item, "key": key}))
    return found


def _resolve(value: Any, inputs: dict[str, Any], made: dict[str, str], outcome: Outcome, path: str) -> Any:
    """value with every {{placeholder}} replaced (a lone placeholder keeps its value's type)."""
    if isinstance(value, dict):
        return {k: _resolve(v, inputs, made, outcome, f"{path}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, inputs, made, outcome, f"{path}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def lookup(name: str) -> Any:
        if name.startswith("resources.") and name.endswith(".id"):
            key = name[len("resources."):-len(".id")]
            if key in made:
                return made[key]
        elif name in inputs:
            return inputs[name]
        outcome.add("unknown_input", f"{path}: {{{{{name}}}}} names no input (or no resource installed before "
                                     "this one).", path)
        return ""
    whole = _PLACEHOLDER.fullmatch(value.strip())
    if whole:
        return lookup(whole.group(1))
    return _PLACEHOLDER.sub(lambda m: str(lookup(m.group(1))), value)


def _create(db: Session, settings: Settings, principal: Principal, inbox_id: str | None, spec: dict,
            outcome: Outcome, where: str) -> tuple[str | None, dict]:
    """Make one resource; returns its id (None when it could not be made) and what the answer shows."""
    fields = {k: v for k, v in spec.items() if k not in ("type", "key")}
    if spec["type"] == "workflow":
        problem = _workflow_shape(fields)
        if problem is not None:
            outcome.add("invalid_resource", f"{where}.{problem[0]}: {problem[1]}", f"{where}.{problem[0]}")
            return None, {}
        workflow, secret = workflows.create_workflow(db, settings, principal, inbox_id,
                                                     workflows.WorkflowInput(**fields))
        return workflow.id, {"name": workflow.name, "secret": secret}
    try:
        from appliance.services.automation import sequences  # issue 20 point 5 (another helper's area)
    except ImportError:
        outcome.add("unsupported_resource", f"{where}: this appliance has no sequences yet.", f"{where}.type")
        return None, {}
    try:
        made = sequences.create(db, principal, **fields)
    except TypeError as exc:  # a field sequences.create does not take
        outcome.add("invalid_resource", f"{where}: {exc}", where)
        return None, {}
    made_id = made.get("sequence_id") if isinstance(made, dict) else getattr(made, "id", None)
    return made_id, {"name": fields.get("name")}


def _workflow_shape(fields: dict) -> tuple[str, str] | None:
    """(field, problem) when a workflow resource's fields are not the shapes the API takes."""
    unknown = set(fields) - {"name", "trigger", "conditions", "writes", "enabled"}
    if unknown:
        return sorted(unknown)[0], "a workflow takes no such field"
    shapes = {"trigger": dict, "conditions": list, "writes": list, "enabled": bool}
    for name, shape in shapes.items():
        if name in fields and not isinstance(fields[name], shape):
            return name, f"must be a {'table' if shape is dict else shape.__name__}"
    for name in ("conditions", "writes"):
        if any(not isinstance(item, dict) for item in fields.get(name) or []):
            return name, "every entry must be a table"
    if any(not isinstance(w.get("target"), dict) for w in fields.get("writes") or []):
        return "writes", "every entry must have a target table"
    return None
