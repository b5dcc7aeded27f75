"""The audit log from the web UI (issue 23): a form's change writes its entry in the same
transaction; a refused sign-in is recorded with the address tried, never the password."""
from __future__ import annotations

from sqlalchemy import func, select

from appliance.models import AuditEntry


def _entries(store) -> list[AuditEntry]:  # noqa: ANN001
    with store.session() as db:
        return list(db.scalars(select(AuditEntry).order_by(AuditEntry.chain, AuditEntry.seq)))


def _count(store) -> int:  # noqa: ANN001
    with store.session() as db:
        return db.scalar(select(func.count()).select_from(AuditEntry))


def test_a_web_form_writes_its_entry_and_a_failed_web_sign_in_too(web, web_for, world, store):
    owner = world.owner()
    web.sign_in(owner.email)
    before = _count(store)
    web.post("/admin/domains/", {"domain": "audited.test"}, follow_redirects=True)
    entries = [e for e in _entries(store)
               if e.chain == owner.tenant_id and e.edge == "webui" and e.action != "webui.login"]
    assert _count(store) > before and entries[-1].pii["changes"] == {"domain": "audited.test"}
    assert entries[-1].actor_id == owner.user_id
    stranger = web_for()  # a browser that is not signed in
    stranger.post("/login/", {"email": owner.email, "password": "not it at all"})
    assert any(e.action == "webui.login.failed" and e.pii["actor_label"] == owner.email for e in _entries(store))




def test_the_audit_page_lists_verifies_filters_and_exports_csv_for_managers_only(web, web_for, world, store):
    owner = world.owner()
    web.sign_in(owner.email)
    before = _count(store)
    web.post("/admin/domains/", {"domain": "=cmd.test"}, follow_redirects=True)  # refused, nothing recorded
    assert _count(store) == before
    web.post("/admin/domains/", {"domain": "csv.test"}, follow_redirects=True)
    page = web.get("/admin/audit/")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and 'data-verdict="ok"' in html and "csv.test" in html
    assert "webui.login" in html  # the sign-in itself
    filtered = web.get("/admin/audit/?action=webui.domain_add").get_data(as_text=True)
    assert "csv.test" in filtered and "webui.login<" not in filtered
    export = web.get("/admin/audit/?format=csv")
    assert export.mimetype == "text/csv" and export.get_data(as_text=True).startswith("at,seq,tenant_id")
    assert "csv.test" in export.get_data(as_text=True)
    member = world.member(owner)
    other = web_for()
    other.sign_in(member.email)
    assert other.get("/admin/audit/").status_code == 403


def test_csv_cells_a_spreadsheet_would_run_are_quoted():
    from webui.views.governance.audit import _cell
    assert [_cell(v) for v in ("=1+1", "+x", "-x", "@x", "plain", None, 5)] == ["'=1+1", "'+x", "'-x", "'@x",
                                                                                "plain", "", "5"]
