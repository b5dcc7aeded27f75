"""Issue 14.13, tenancy in one place: every model with a tenant_id, read across tenants through
the API, answers 404 (never 403, never the row).

The walk starts from the models' metadata, not from a list written here: a new table with a
tenant_id fails `test_every_tenant_table_is_walked` until it is mapped to the API routes that
read it (READS) or listed, with the reason, in NO_API_READ. Every test runs on SQLite and on
PostgreSQL.
"""
from __future__ import annotations

import base64
from dataclasses import dataclass

import pytest
from sqlalchemy import select

from appliance.errors import NotFoundError
from appliance.models import (Attachment, Base, DkimKey, Domain, Message, MessageRaw, OutboundRecipient,
                              User, UserSession)
from appliance.services import tenancy
from appliance.services.identity.auth import SCOPES
from tests.api.test_send import sending_box
from tests.helpers import assert_error
from tests.world import Agent, Person

# Tables with a tenant_id that no API route reads, and why (the web UI's own checks cover them).
NO_API_READ = {
    "users": "no API route reads a user by id (GET /v1/users/me/ is the caller); PUT "
             "/v1/inboxes/{id}/members/ refuses another tenant's user id like an unknown one (tested below)",
    "outbound_queue": "queue rows are shown only on the web UI's queue page (mailqueue.get_row, tenant-scoped); "
                      "the API shows delivery inside the message, whose reads are walked here",
    "audit_entries": "GET /v1/audit/ reads only the caller's tenant's chain (by chain, not by id); "
                     "tests/api/test_audit.py shows another tenant's owner reads none of it",
    "schedules": "the worker's schedule of due events; no API reads it (alerts and areas show their own rows)",
    "auto_reply_windows": "when an inbox last answered a sender automatically (out-of-office, issue 27); "
                          "only the worker reads it",
    "note_mentions": "read only through GET /v1/agenda/ (issue 18) of the mentioned inbox; the notes they belong "
                     "to are walked below",
    # issue 18: read across tenants (404) in tests/api/test_calendar_events.py::test_another_tenants_event_is_404
    "calendars": "walked in test_calendar_events.py (feed-key rotation, calendar_id of another tenant)",
    # issue 16.2: GET /v1/messages/broadcast/{id}/ of another tenant is 404 in
    # tests/api/test_broadcast.py::test_a_label_of_another_tenant_or_of_type_message_is_refused
    "broadcasts": "walked in test_broadcast.py (another tenant's broadcast_id and label_id are 404)",
    "unsubscribes": "no API reads them; a broadcast only skips its own inbox's (tests/api/test_broadcast.py)",
    "calendar_events": "walked in test_calendar_events.py (GET/PATCH/DELETE/respond of another tenant's event)",
    "calendar_invitations": "shown only inside the message (`invitation`), whose reads are walked here",
    "usage_counters": "read only as the caller's own tenant's sums (GET /v1/billing/usage/, /v1/stats/), never by "
                      "id; tests/api/test_usage_caps.py shows another tenant's inbox is 404 there",
    "mail_imports": "read per inbox (GET /v1/inboxes/{id}/imports/…): another tenant's inbox is 404 "
                    "(tests/integration/test_imports.py)",
    "mail_import_items": "the import's own record of what it brought in; no API reads it",
    "app_passwords": "listed only as the caller's own (GET /v1/app-passwords/); revoking another tenant's or "
                     "another person's is 404 (tests/api/test_app_passwords.py)",
    "phishing_models": "each tenant's naive Bayes counts (issue 21): only the worker and the marking service read "
                       "them, for the marking tenant; tests/integration/test_enrichment.py shows B's stays untouched",
    "blobs": "the files' content store (issue 19): read only through a file of the caller's inbox, whose reads "
             "are walked here; tests/api/test_files.py shows another tenant's identical bytes are a separate blob",
    "usage_caps": "listed only for the caller's tenant (GET /v1/billing/caps/); a PUT naming another tenant's "
                  "inbox or token is 404 (tests/api/test_usage_caps.py)",
    "imap_mailboxes": "IMAP folders' UIDVALIDITY and next UID; read only by the IMAP server for the inbox the "
                      "login names (tests/integration/test_imap.py logs in to one inbox and sees only its mail)",
    # issue 23: compliance
    "compliance_exports": "listed only for the caller's tenant (GET /v1/compliance/export/); the download opens only "
                          "with its own signature (tests/integration/test_compliance_export.py)",
    "compliance_deletions": "listed for the caller's tenant; DELETE of another tenant's is 404 "
                            "(tests/integration/test_compliance_erasure.py)",
    "retention_policies": "read and written only as the caller's own tenant's policy (GET/PUT /v1/compliance/retention/)",
    # issue 20.3-20.5: one row per inbox, read by inbox; another tenant naming A's inbox is 404 in
    # tests/api/test_sender_rules.py::test_another_tenants_inbox_is_404
    "sender_rules": "read by inbox (GET /v1/sender-rules/), walked in tests/api/test_sender_rules.py",
    "inbox_forwarding": "read by inbox (GET /v1/forwarding/), walked in tests/api/test_sender_rules.py",
    "sequence_enrollments": "read only through their sequence (GET /v1/sequences/{id}/enrollments/), walked here",
    "workflow_deliveries": "a workflow's queued webhook actions; no API reads them by id (the run shows each "
                           "action's outcome, walked under workflow_runs)",
    # issue 21: projections read only inside the caller's inbox (by address, never by row id); another
    # tenant's agent reads none of them (tests/integration/test_activity.py, tests/api/test_relationships.py)
    "activity_items": "read by GET /v1/activity/ for the caller's inbox only; another tenant's contact_id is 404",
    "relationship_nodes": "read by GET /v1/relationships/ for the caller's inbox only",
    "relationship_edges": "read by GET /v1/relationships/ for the caller's inbox only",
    "relationship_threads": "only the projector reads them (which thread holds whom)",
}


@dataclass
class TenantA:
    owner: Person
    inbox_id: str
    agent: Agent
    domain: str
    message_id: str
    thread_id: str
    attachment_id: str
    approval_id: str
    member: Person
    alert_id: str = ""
    delivery_id: str = ""
    list_id: str = ""
    task_id: str = ""
    label_id: str = ""
    template_id: str = ""
    note_id: str = ""
    contact_id: str = ""
    share_id: str = ""
    sequence_id: str = ""
    file_id: str = ""
    folder_id: str = ""
    workflow_id: str = ""


@dataclass
class TenantB:
    owner: Person
    inbox_id: str
    agent: Agent  # every scope, approvals:write included (a reviewer of its own tenant)


def _a(client, world) -> TenantA:
    box = sending_box(world, world.owner(), "sales@alpha.test")
    body = {"to": [{"email": "carol@remote.test"}], "subject": "Numbers", "text_body": "Hello",
            "attachments": [{"filename": "n.txt", "content_type": "text/plain",
                             "content_base64": base64.b64encode(b"42").decode()}]}
    sent = client.post("/v1/messages/", json=body, headers=box.agent.auth)
    assert sent.status_code == 201, sent.get_data(as_text=True)
    full = client.get(f"/v1/messages/{sent.json['message_id']}/", headers=box.agent.auth).json
    held = world.agent(box.owner, box.inbox_id, ["email:send"], requires_approval=["email:send"])
    approval = client.post("/v1/messages/", json={**body, "attachments": []}, headers=held.auth)
    assert approval.status_code == 202, approval.get_data(as_text=True)
    member = world.member(box.owner)
    granted = client.put(f"/v1/inboxes/{box.inbox_id}/members/", json={"user_ids": [member.user_id]},
                         headers=box.owner.auth)
    assert granted.status_code == 200, granted.get_data(as_text=True)
    alert = client.post("/v1/alerts/", json={"inbox_id": box.inbox_id, "events": ["message.received"],
                                             "delivery": {"type": "webhook", "target": "https://93.184.215.14/"}},
                        headers=box.owner.auth)
    assert alert.status_code == 201, alert.get_data(as_text=True)
    delivery = client.post(f"/v1/alerts/{alert.json['alert_id']}/test/", headers=box.owner.auth)
    team = client.post("/v1/distribution-lists/", json={"address": "team@alpha.test"}, headers=box.owner.auth)
    assert team.status_code == 201, team.get_data(as_text=True)
    client.post(f"/v1/distribution-lists/{team.json['list_id']}/members/", json={"inbox_id": box.inbox_id},
                headers=box.owner.auth)
    task = client.post("/v1/tasks/", json={"inbox_id": box.inbox_id, "summary": "Follow up"}, headers=box.owner.auth)
    assert task.status_code == 201, task.get_data(as_text=True)
    label = client.post("/v1/labels/", json={"inbox_id": box.inbox_id, "name": "alpha"}, headers=box.owner.auth)
    template = client.post("/v1/templates/", json={"name": "t", "text_body": "Hi {name}"}, headers=box.owner.auth)
    note = client.post(f"/v1/messages/threads/{full['thread_id']}/notes/", json={"body": "n", "inbox_id": box.inbox_id},
                       headers=box.owner.auth)
    other = world.inbox(box.owner, "desk@alpha.test")
    assigned = client.post(f"/v1/messages/threads/{full['thread_id']}/assign/", json={"assignee_inbox_id": other,
                                                                                       "inbox_id": box.inbox_id},
                           headers=box.owner.auth)
    assert (template.status_code, note.status_code, assigned.status_code) == (201, 201, 200)
    # The send made carol a contact (auto-contacts, issue 17); it is offered to A's second inbox.
    contact = client.get("/v1/contacts/", query_string={"inbox_id": box.inbox_id}, headers=box.owner.auth)
    contact_id = contact.json["results"][0]["contact_id"]
    share = client.post("/v1/contacts/shares/", json={"inbox_id": box.inbox_id, "type": "offer",
                                                      "to_inbox_id": world.inbox(box.owner), "contact_id": contact_id},
                        headers=box.owner.auth)
    assert share.status_code == 201, share.get_data(as_text=True)
    sequence = client.post("/v1/sequences/", json={"sender_inbox_id": box.inbox_id, "name": "Follow-up",
                                                   "emails": [{"subject": "Hi", "body": "Hello"}]},
                           headers=box.owner.auth)
    assert sequence.status_code == 201, sequence.get_data(as_text=True)
    folder = client.post("/v1/files/folders/", json={"inbox_id": box.inbox_id, "name": "Invoices"},
                         headers=box.owner.auth)
    stored = client.post("/v1/files/", json={"inbox_id": box.inbox_id, "name": "a.txt", "text": "alpha",
                                             "folder_id": folder.json["folder_id"]}, headers=box.owner.auth)
    assert (folder.status_code, stored.status_code) == (201, 201), stored.get_data(as_text=True)
    workflow = client.post("/v1/workflows/", json={"inbox_id": box.inbox_id, "name": "w", "trigger": {
        "type": "email_received"}, "writes": [{"target": {"type": "email.mark_read"}}]}, headers=box.owner.auth)
    assert workflow.status_code == 201, workflow.get_data(as_text=True)
    # Each area adds its resource above and names it here (keywords: areas merge without conflicts).
    return TenantA(box.owner, box.inbox_id, box.agent, "alpha.test", full["message_id"], full["thread_id"],
                   full["attachments"][0]["attachment_id"], approval.json["approval_id"], member,
                   alert.json["alert_id"], delivery.json["delivery_id"],
                   list_id=team.json["list_id"],
                   task_id=task.json["task_id"],
                   label_id=label.json["label_id"], template_id=template.json["template_id"],
                   note_id=note.json["note_id"],
                   contact_id=contact_id, share_id=share.json["share_id"],
                   sequence_id=sequence.json["sequence_id"],
                   file_id=stored.json["file_id"], folder_id=folder.json["folder_id"],
                   workflow_id=workflow.json["workflow_id"],
                   )


@pytest.fixture
def tenants(client, world) -> tuple[TenantA, TenantB]:
    a = _a(client, world)
    owner = world.owner()
    inbox_id = world.inbox(owner)
    return a, TenantB(owner, inbox_id, world.agent(owner, inbox_id, list(SCOPES)))


def _message_reads(a: TenantA) -> list[tuple[str, str]]:
    return [("GET", f"/v1/messages/{a.message_id}/"), ("GET", f"/v1/messages/{a.message_id}/raw/"),
            ("GET", f"/v1/messages/{a.message_id}/attachments/{a.attachment_id}/")]


# table -> (the owner's own read, which answers 200; the reads another tenant tries, each 404).
# A route taking an inbox is tried with the other tenant's session naming its own inbox, naming
# A's inbox, and with its agent token.
READS = {
    "domains": lambda a: ("GET", f"/v1/domains/{a.domain}/", [("GET", f"/v1/domains/{a.domain}/"),
                                                              ("GET", f"/v1/domains/{a.domain}/check/"),
                                                              ("DELETE", f"/v1/domains/{a.domain}/")]),
    "inboxes": lambda a: ("GET", f"/v1/inboxes/{a.inbox_id}/", [("GET", f"/v1/inboxes/{a.inbox_id}/"),
                                                                ("PATCH", f"/v1/inboxes/{a.inbox_id}/?"),
                                                                ("DELETE", f"/v1/inboxes/{a.inbox_id}/")]),
    "agent_tokens": lambda a: (None, None, [("PATCH", f"/v1/tokens/{a.agent.token_id}/"),
                                            ("DELETE", f"/v1/tokens/{a.agent.token_id}/")]),
    "messages": lambda a: ("GET", f"/v1/messages/{a.message_id}/", _message_reads(a)),
    "threads": lambda a: ("GET", f"/v1/messages/threads/{a.thread_id}/",
                          [("GET", f"/v1/messages/threads/{a.thread_id}/"),
                           ("GET", f"/v1/messages/threads/{a.thread_id}/digest/")]),
    "approvals": lambda a: ("GET", f"/v1/approvals/{a.approval_id}/",
                            [("GET", f"/v1/approvals/{a.approval_id}/"),
                             ("POST", f"/v1/approvals/{a.approval_id}/approve/"),
                             ("POST", f"/v1/approvals/{a.approval_id}/reject/")]),
    # A list: naming A's inbox is 404; B's own list (session or agent) holds none of A's events.
    "events": lambda a: ("GET", "/v1/events/", [("LIST", "/v1/events/")]),
    "inbox_members": lambda a: ("GET", f"/v1/inboxes/{a.inbox_id}/members/",
                                [("GET", f"/v1/inboxes/{a.inbox_id}/members/"),
                                 ("PUT", f"/v1/inboxes/{a.inbox_id}/members/")]),
    "alerts": lambda a: ("GET", f"/v1/alerts/{a.alert_id}/",
                         [("GET", f"/v1/alerts/{a.alert_id}/"), ("DELETE", f"/v1/alerts/{a.alert_id}/"),
                          ("POST", f"/v1/alerts/{a.alert_id}/test/"),
                          ("POST", f"/v1/alerts/{a.alert_id}/rotate-secret/")]),
    "webhook_deliveries": lambda a: ("GET", f"/v1/alerts/{a.alert_id}/deliveries/",
                                     [("GET", f"/v1/alerts/{a.alert_id}/deliveries/"),
                                      ("POST", f"/v1/alerts/{a.alert_id}/deliveries/{a.delivery_id}/retry/")]),
    "distribution_lists": lambda a: ("GET", f"/v1/distribution-lists/{a.list_id}/",
                                     [("GET", f"/v1/distribution-lists/{a.list_id}/"),
                                      ("DELETE", f"/v1/distribution-lists/{a.list_id}/")]),
    "distribution_list_members": lambda a: (
        "GET", f"/v1/distribution-lists/{a.list_id}/",
        [("DELETE", f"/v1/distribution-lists/{a.list_id}/members/{a.inbox_id}/")]),
    # PATCH across tenants: tests/api/test_tasks.py (this walk's PATCH bodies are the inboxes').
    "tasks": lambda a: ("GET", f"/v1/tasks/{a.task_id}/", [("GET", f"/v1/tasks/{a.task_id}/"),
                                                           ("DELETE", f"/v1/tasks/{a.task_id}/")]),
    "labels": lambda a: ("GET", f"/v1/labels/{a.label_id}/",
                         [("GET", f"/v1/labels/{a.label_id}/"),
                          ("DELETE", f"/v1/labels/{a.label_id}/")]),
    "templates": lambda a: ("GET", f"/v1/templates/{a.template_id}/",
                            [("GET", f"/v1/templates/{a.template_id}/"), ("DELETE", f"/v1/templates/{a.template_id}/"),
                             ("POST", f"/v1/templates/{a.template_id}/render/")]),
    "thread_notes": lambda a: ("GET", f"/v1/messages/threads/{a.thread_id}/notes/",
                               [("GET", f"/v1/messages/threads/{a.thread_id}/notes/"),
                                ("DELETE", f"/v1/messages/threads/{a.thread_id}/notes/{a.note_id}/")]),
    # A's thread is assigned to another inbox of A: B can neither see nor change that.
    "thread_assignments": lambda a: (None, None, [("POST", f"/v1/messages/threads/{a.thread_id}/assign/"),
                                                  ("DELETE", f"/v1/messages/threads/{a.thread_id}/assign/")]),
    "contacts": lambda a: ("GET", f"/v1/contacts/{a.contact_id}/",
                           [("GET", f"/v1/contacts/{a.contact_id}/"), ("GET", f"/v1/contacts/{a.contact_id}/digest/"),
                            ("DELETE", f"/v1/contacts/{a.contact_id}/")]),
    "workflows": lambda a: ("GET", f"/v1/workflows/{a.workflow_id}/",
                            [("GET", f"/v1/workflows/{a.workflow_id}/"), ("DELETE", f"/v1/workflows/{a.workflow_id}/"),
                             ("POST", f"/v1/workflows/{a.workflow_id}/test/")]),
    "workflow_runs": lambda a: ("GET", f"/v1/workflows/{a.workflow_id}/runs/",
                                [("GET", f"/v1/workflows/{a.workflow_id}/runs/")]),
    "contact_shares": lambda a: (None, None, [("POST", f"/v1/contacts/shares/{a.share_id}/accept/"),
                                              ("POST", f"/v1/contacts/shares/{a.share_id}/decline/")]),
    "sequences": lambda a: ("GET", f"/v1/sequences/{a.sequence_id}/",
                            [("GET", f"/v1/sequences/{a.sequence_id}/"), ("DELETE", f"/v1/sequences/{a.sequence_id}/"),
                             ("GET", f"/v1/sequences/{a.sequence_id}/enrollments/")]),
    "files": lambda a: ("GET", f"/v1/files/{a.file_id}/",
                        [("GET", f"/v1/files/{a.file_id}/"), ("GET", f"/v1/files/{a.file_id}/content/"),
                         ("GET", f"/v1/files/{a.file_id}/versions/"), ("POST", f"/v1/files/{a.file_id}/link/"),
                         ("DELETE", f"/v1/files/{a.file_id}/")]),
    "folders": lambda a: ("GET", f"/v1/files/folders/{a.folder_id}/", [("GET", f"/v1/files/folders/{a.folder_id}/")]),
}
BODIES = {"PATCH": {"action": "pause"}, "PATCH?": {"status": "paused"}, "PUT": {"user_ids": []}}


def tenant_tables() -> set[str]:
    return {t.name for t in Base.metadata.sorted_tables if "tenant_id" in t.c}


def test_every_tenant_table_is_walked():
    """A table with a tenant_id is either read across tenants below or listed with its reason."""
    tables = tenant_tables()
    assert tables - set(READS) - set(NO_API_READ) == set(), "map the new table in READS or NO_API_READ"
    assert set(READS) | set(NO_API_READ) <= tables  # no stale entries


def _call(client, method: str, path: str, auth: dict, inbox_id: str | None):
    """One call, with inbox_id where section 0 puts it (query, or the body of a POST)."""
    body = BODIES.get(method + "?" if path.endswith("?") else method)
    if method == "POST" and path.endswith("/assign/"):
        body = {"assignee_inbox_id": "inb_01J00000000000000000000000"}
    if method == "POST" and path.endswith("/render/"):
        body = {"values": {}}
    if method == "POST" and path.endswith("/link/"):
        body = {}
    if method == "POST" and path.startswith("/v1/workflows/"):
        body = {"message_id": "msg_01J00000000000000000000000"}
    path, query = path.rstrip("?"), {}
    if inbox_id is not None and path.startswith(("/v1/messages/", "/v1/approvals/", "/v1/events/",
                                                 "/v1/alerts/", "/v1/tasks/", "/v1/labels/", "/v1/contacts/",
                                                 "/v1/files/", "/v1/workflows/")):
        if method == "POST":
            body = {**(body or {}), "inbox_id": inbox_id}
        else:
            query = {"inbox_id": inbox_id}
    return client.open(path, method=method, json=body, query_string=query, headers=auth)


@pytest.mark.parametrize("table", sorted(READS))
def test_another_tenant_reading_a_row_gets_404(client, tenants, table):
    a, b = tenants
    own_method, own_path, reads = READS[table](a)
    if own_method is not None:  # the owner reads it (so a 404 below is tenancy, not a bad path)
        resp = _call(client, own_method, own_path, a.owner.auth, a.inbox_id)
        assert resp.status_code == 200, resp.get_data(as_text=True)
    for method, path in reads:
        for auth, inbox_id in ((b.owner.auth, b.inbox_id), (b.owner.auth, a.inbox_id), (b.agent.auth, None)):
            resp = _call(client, method.replace("LIST", "GET"), path, auth, inbox_id)
            if method == "LIST" and inbox_id != a.inbox_id:
                assert resp.status_code == 200, resp.get_data(as_text=True)
                assert resp.json["results"] and {r["inbox_id"] for r in resp.json["results"]} == {b.inbox_id}
                continue
            if resp.status_code == 403 and auth == b.agent.auth:
                # An agent token on a session-only route: refused before any lookup.
                assert resp.json["error"]["code"] == "session_required", (method, path)
                continue
            assert_error(resp, 404, "not_found")
    if own_method is not None:  # and nothing changed for the owner
        assert _call(client, own_method, own_path, a.owner.auth, a.inbox_id).status_code == 200


def test_another_tenants_user_cannot_be_granted_an_inbox(client, tenants):
    a, b = tenants
    resp = client.put(f"/v1/inboxes/{b.inbox_id}/members/", json={"user_ids": [a.member.user_id]},
                      headers=b.owner.auth)
    err = assert_error(resp, 400, "validation_error", field="user_ids[0]")
    unknown = client.put(f"/v1/inboxes/{b.inbox_id}/members/", json={"user_ids": ["usr_nobody"]},
                         headers=b.owner.auth)
    assert assert_error(unknown, 400, "validation_error")["message"] == err["message"]  # no probing


def test_the_helper_scopes_child_rows_through_their_parent(store, tenants):
    """Rows without a tenant_id (attachments, raw copies, DKIM keys, queue recipients, sessions)
    belong to their parent's tenant: owned/get_owned see them only from that tenant."""
    a, b = tenants
    with store.session() as db:
        for model in (Attachment, MessageRaw, DkimKey, OutboundRecipient, UserSession):
            mine = db.scalars(tenancy.owned(select(model), model, a.owner.tenant_id)).all()
            theirs = db.scalars(tenancy.owned(select(model), model, b.owner.tenant_id)).all()
            assert mine, model
            assert not {id(r) for r in mine} & {id(r) for r in theirs}, model
        assert tenancy.get_owned(db, Attachment, a.attachment_id, a.owner.tenant_id).id == a.attachment_id
        with pytest.raises(NotFoundError):
            tenancy.get_owned(db, Attachment, a.attachment_id, b.owner.tenant_id)
        with pytest.raises(NotFoundError):
            tenancy.get_owned(db, Message, a.message_id, None)
        assert tenancy.find_owned(db, Domain, b.owner.tenant_id, Domain.name == a.domain) is None
        assert tenancy.find_owned(db, User, a.owner.tenant_id, User.id == a.owner.user_id) is not None
