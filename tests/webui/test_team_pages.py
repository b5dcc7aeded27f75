"""Issue 16 point 7 (the web UI of points 3 and 4): the Templates page (create, edit, preview with
escaping, delete with confirmation) and, on a message's page, the thread's notes (add with a
mention, delete one's own) and its assignment (assign to a teammate's inbox, revoke). Another
tenant's templates and threads are 404 pages."""
from __future__ import annotations

from sqlalchemy import select

from appliance.models import Message, Template, ThreadAssignment, ThreadNote
from tests.api.test_messages import build_mail, deliver
from tests.webui.conftest import text_of


def test_templates_page_creates_previews_edits_and_deletes(web, world, owner):  # noqa: ANN001
    web.sign_in(owner.email)
    assert "No templates yet" in text_of(web.get("/admin/templates/"))
    made = web.post("/admin/templates/", {"name": "Thanks", "subject": "Thanks, {name}",
                                          "text_body": "Dear {name}", "html_body": "<p>Dear {name}</p>"})
    assert made.status_code == 303
    with world.store.session() as db:
        template_id = db.scalar(select(Template.id))
    listing = text_of(web.get("/admin/templates/"))
    assert template_id in listing and "<code>name</code>" in listing
    preview = text_of(web.get(f"/admin/templates/{template_id}/", query_string={"v_name": "<script>x</script>"}))
    assert "&lt;p&gt;Dear &amp;lt;script&amp;gt;x&amp;lt;/script&amp;gt;&lt;/p&gt;" in preview  # escaped, shown as source
    assert "<script>x" not in preview
    web.post(f"/admin/templates/{template_id}/", {"name": "Thanks!", "subject": "Hi {first}", "text_body": "",
                                                  "html_body": ""})
    with world.store.session() as db:
        assert db.get(Template, template_id).subject == "Hi {first}"
    assert "Delete the template" in text_of(web.post(f"/admin/templates/{template_id}/delete/"))
    assert web.post(f"/admin/templates/{template_id}/delete/", {"confirm": "yes"}).status_code == 303
    with world.store.session() as db:
        assert db.get(Template, template_id) is None


def test_notes_and_assignment_on_the_message_page(web, world, owner):  # noqa: ANN001
    inbox_id = world.inbox(owner, "desk@team.example.com")
    teammate = world.inbox(owner, "bea@team.example.com")
    message_id = deliver(world, inbox_id, build_mail(subject="Refund", to="desk@team.example.com"))
    with world.store.session() as db:
        thread_id = db.get(Message, message_id).thread_id
    web.sign_in(owner.email)
    page = text_of(web.get(f"/admin/mail/{inbox_id}/messages/{message_id}/"))
    assert "No notes on this thread." in page and "Not assigned." in page
    base = f"/admin/mail/{inbox_id}/threads/{thread_id}"
    resp = web.post(f"{base}/notes/", {"body": "Check the order first", "mentions": "bea@team.example.com",
                                       "message_id": message_id})
    assert resp.status_code == 303 and resp.headers["Location"].endswith(f"/messages/{message_id}/")
    page = text_of(web.get(f"/admin/mail/{inbox_id}/messages/{message_id}/"))
    assert "Check the order first" in page and "mentions bea@team.example.com" in page and "Delete note" in page
    web.post(f"{base}/notes/", {"body": "x", "mentions": "eve@elsewhere.example", "message_id": message_id})
    assert "is not an inbox of your team" in text_of(web.get(f"/admin/mail/{inbox_id}/messages/{message_id}/"))
    with world.store.session() as db:
        note_id = db.scalar(select(ThreadNote.id))
    web.post(f"{base}/notes/{note_id}/delete/", {"message_id": message_id})
    web.post(f"{base}/assign/", {"assignee_inbox_id": teammate, "message_id": message_id})
    page = text_of(web.get(f"/admin/mail/{inbox_id}/messages/{message_id}/"))
    assert "Assigned to <strong>bea@team.example.com</strong>" in page and "No notes on this thread." in page
    web.post(f"{base}/assign/", {"message_id": message_id})
    with world.store.session() as db:
        assert db.scalar(select(ThreadAssignment.revoked_at)) is not None


def test_another_tenants_templates_and_threads_are_404_pages(web, web_for, world, owner):  # noqa: ANN001
    inbox_id = world.inbox(owner)
    message_id = deliver(world, inbox_id, build_mail())
    with world.store.session() as db:
        thread_id = db.get(Message, message_id).thread_id
    web.sign_in(owner.email)
    web.post("/admin/templates/", {"name": "Mine", "text_body": "Hi"})
    with world.store.session() as db:
        template_id = db.scalar(select(Template.id))
    other = world.owner()
    world.inbox(other)
    stranger = web_for()
    stranger.sign_in(other.email)
    assert stranger.get(f"/admin/templates/{template_id}/").status_code == 404
    assert stranger.post(f"/admin/templates/{template_id}/delete/", {"confirm": "yes"}).status_code == 404
    assert stranger.post(f"/admin/mail/{inbox_id}/threads/{thread_id}/notes/", {"body": "x"}).status_code == 404
    assert template_id not in text_of(stranger.get("/admin/templates/"))
    with world.store.session() as db:
        assert db.get(Template, template_id) is not None and db.scalar(select(ThreadNote)) is None
