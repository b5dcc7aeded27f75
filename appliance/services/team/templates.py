"""Reply templates of a tenant (contract section 10): `{placeholder}` variables, rendering with
HTML escaping, and the values a send fills in.

Rules kept here:
- Owners and admins (a session) write templates; any session or agent token of the tenant reads
  and renders them; another tenant's template is 404.
- A placeholder is `{name}` (letters, digits, `_`, `.`, `-`); anything else in braces (CSS in an
  HTML body, JSON) is text. `{{` and `}}` stand for literal braces.
- Rendering needs a value for every variable (else `400 template_value_missing` naming it).
  Values are HTML-escaped in `html_body`, and one used in the subject may hold no line break or
  control character (a value never injects a header).
"""
from __future__ import annotations

import html
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from appliance.clock import utcnow
from appliance.errors import ValidationError
from appliance.ids import new_id
from appliance.models import Template
from appliance.services import tenancy
from appliance.services.automation import events
from appliance.services.automation.events import iso
from appliance.services.identity.auth import Principal, require_manager

PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_.-]{0,63})\}")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")
FIELDS = ("subject", "text_body", "html_body")
MAX_BODY = 1_000_000
_NOT_FOUND = "No such template."


@dataclass(frozen=True)
class TemplateInput:
    """What create (all of it) and update (the fields given) take."""

    name: str | None = None
    subject: str | None = None
    text_body: str | None = None
    html_body: str | None = None


def variables(*texts: str) -> list[str]:
    """The placeholder names in the texts, each once, in the order first found."""
    found: dict[str, None] = {}
    for value in texts:
        for match in PLACEHOLDER.finditer(value or ""):
            if match.group(1):
                found.setdefault(match.group(1), None)
    return list(found)


def _check(data: TemplateInput) -> None:
    if data.name is not None and not (0 < len(data.name.strip()) <= 200):
        raise ValidationError("name must be 1 to 200 characters", field="name")
    if data.subject is not None and (_CONTROL.search(data.subject) or len(data.subject) > 998):
        raise ValidationError("subject must be one line of at most 998 characters", field="subject",
                              fix="Remove line breaks from the subject.")
    for name in ("text_body", "html_body"):
        if len(getattr(data, name) or "") > MAX_BODY:
            raise ValidationError(f"{name}: at most {MAX_BODY} characters", field=name)


def create_template(db: Session, principal: Principal, data: TemplateInput) -> Template:
    """A new template of the caller's tenant (owners and admins)."""
    require_manager(principal)
    if not data.name:
        raise ValidationError("name is required", field="name")
    _check(data)
    if not (data.subject or data.text_body or data.html_body):
        raise ValidationError("a template needs a subject or a body", field="text_body")
    now = utcnow()
    template = Template(id=new_id("tpl"), tenant_id=principal.tenant_id, name=data.name.strip(),
                        subject=data.subject or "", text_body=data.text_body or "", html_body=data.html_body or "",
                        created_by=principal.id, created_at=now, updated_at=now)
    db.add(template)
    db.flush()
    events.emit(db, "template.created", tenant_id=principal.tenant_id, resource_id=template.id, actor=principal.id,
                payload={"name": template.name})
    return template


def list_templates(db: Session, principal: Principal, *, limit: int, cursor: str | None = None
                   ) -> tuple[list[Template], str | None]:
    """One page of the tenant's templates in creation order."""
    query = tenancy.owned(select(Template), Template, principal.tenant_id)
    if cursor:
        query = query.where(Template.id > cursor)
    rows = list(db.scalars(query.order_by(Template.id).limit(limit + 1)))
    return rows[:limit], (rows[limit - 1].id if len(rows) > limit else None)


def get_template(db: Session, principal: Principal, template_id: str, field: str | None = None) -> Template:
    """A template of the caller's tenant; 404 for any other."""
    return tenancy.get_owned(db, Template, template_id, principal.tenant_id, message=_NOT_FOUND, field=field,
                             fix="List the templates at GET /v1/templates/.")


def update_template(db: Session, principal: Principal, template_id: str, data: TemplateInput) -> Template:
    """Change a template's name, subject or bodies (owners and admins)."""
    require_manager(principal)
    template = get_template(db, principal, template_id)
    _check(data)
    changed = [f for f in ("name", *FIELDS) if getattr(data, f) is not None and getattr(data, f) != getattr(template, f)]
    for name in changed:
        setattr(template, name, getattr(data, name).strip() if name == "name" else getattr(data, name))
    if changed:
        template.updated_at = utcnow()
        events.emit(db, "template.updated", tenant_id=principal.tenant_id, resource_id=template.id,
                    actor=principal.id, payload={"changed": changed})
    db.flush()
    return template


def delete_template(db: Session, principal: Principal, template_id: str) -> None:
    """Delete a template (owners and admins)."""
    require_manager(principal)
    template = get_template(db, principal, template_id)
    events.emit(db, "template.deleted", tenant_id=principal.tenant_id, resource_id=template.id, actor=principal.id,
                payload={"name": template.name})
    db.delete(template)
    db.flush()


# --- rendering -----------------------------------------------------------------------------------
def _fill(text: str, values: dict[str, str], escape: bool) -> str:
    def one(match: re.Match) -> str:
        if match.group(1) is None:
            return match.group(0)[0]  # {{ → {, }} → }
        value = values[match.group(1)]
        return html.escape(value, quote=True) if escape else value
    return PLACEHOLDER.sub(one, text or "")


def _values(template: Template, values: dict[str, Any]) -> dict[str, str]:
    """The values as text, every variable present, none breaking the subject's line."""
    out = {k: "" if v is None else str(v) for k, v in (values or {}).items()}
    for name in variables(template.subject, template.text_body, template.html_body):
        if name not in out:
            raise ValidationError(f"The template needs a value for {{{name}}}.", field=f"template_values.{name}",
                                  code="template_value_missing", fix=f"Add {name!r} to the values.")
    for name in variables(template.subject):
        if _CONTROL.search(out[name]):
            raise ValidationError(f"The value of {name} is used in the subject and must not contain line breaks "
                                  "or control characters.", field=f"template_values.{name}",
                                  fix="Send a one-line value.")
    return out


def render(template: Template, values: dict[str, Any]) -> dict[str, str]:
    """{subject, text_body, html_body} with the values filled in (escaped in html_body)."""
    filled = _values(template, values)
    return {"subject": _fill(template.subject, filled, False), "text_body": _fill(template.text_body, filled, False),
            "html_body": _fill(template.html_body, filled, True)}


def render_for_send(db: Session, principal: Principal, template_id: str, values: dict[str, Any]) -> dict[str, str]:
    """What POST /v1/messages/ takes from `template_id` + `template_values`: the rendered fields,
    empty ones left out so the send's own validation names what is missing."""
    template = get_template(db, principal, template_id, field="template_id")
    return {k: v for k, v in render(template, values).items() if v}


def template_to_dict(template: Template) -> dict:
    return {"template_id": template.id, "name": template.name, "subject": template.subject,
            "text_body": template.text_body, "html_body": template.html_body,
            "variables": variables(template.subject, template.text_body, template.html_body),
            "created_at": iso(template.created_at), "updated_at": iso(template.updated_at)}
