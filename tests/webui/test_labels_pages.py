"""Issue 16 point 1 in the web UI: label chips with their colours on the mail list, applying and
removing a label on a message's page, and the labels page of an inbox (create, rename, recolour,
delete with confirmation); another tenant's labels are 404 pages."""
from __future__ import annotations

from sqlalchemy import select

from appliance.models import Label, Message
from tests.api.test_messages import build_mail, deliver
from tests.webui.conftest import text_of


def test_apply_and_remove_on_a_message_and_chips_on_the_list(web, world, owner):  # noqa: ANN001
    inbox_id = world.inbox(owner)
    message_id = deliver(world, inbox_id, build_mail(subject="Invoice 7"))
    web.sign_in(owner.email)
    assert web.post(f"/admin/mail/{inbox_id}/labels/", {"name": "Finance", "color": "#12AB34",
                                                        "type": "any"}).status_code == 303
    page = text_of(web.get(f"/admin/mail/{inbox_id}/messages/{message_id}/"))
    assert 'name="add" list="known-labels"' in page and '<option value="Finance">' in page
    assert web.post(f"/admin/mail/{inbox_id}/messages/{message_id}/labels/", {"add": "Finance"}).status_code == 303
    assert web.post(f"/admin/mail/{inbox_id}/messages/{message_id}/labels/", {"add": "later"}).status_code == 303
    listing = text_of(web.get(f"/admin/mail/{inbox_id}/"))
    assert 'fill="#12ab34"/></svg>Finance</span>' in listing and "</svg>later</span>" in listing
    assert web.post(f"/admin/mail/{inbox_id}/messages/{message_id}/labels/", {"remove": "Finance"}).status_code == 303
    with world.store.session() as db:
        assert db.get(Message, message_id).labels == ["later"]


def test_the_labels_page_renames_recolours_and_deletes(web, world, owner):  # noqa: ANN001
    inbox_id = world.inbox(owner)
    message_id = deliver(world, inbox_id, build_mail())
    web.sign_in(owner.email)
    web.post(f"/admin/mail/{inbox_id}/messages/{message_id}/labels/", {"add": "todo"})
    with world.store.session() as db:
        label_id = db.scalar(select(Label.id).where(Label.inbox_id == inbox_id))
    page = text_of(web.get(f"/admin/mail/{inbox_id}/labels/"))
    assert f'data-label-id="{label_id}"' in page and 'data-label="Messages">1<' in page
    web.post(f"/admin/mail/{inbox_id}/labels/{label_id}/", {"name": "doing", "color": "#ff0000"})
    with world.store.session() as db:
        assert db.get(Message, message_id).labels == ["doing"] and db.get(Label, label_id).color == "#ff0000"
    asked = web.post(f"/admin/mail/{inbox_id}/labels/{label_id}/delete/")
    assert asked.status_code == 200 and "Delete the label" in text_of(asked)
    assert web.post(f"/admin/mail/{inbox_id}/labels/{label_id}/delete/", {"confirm": "yes"}).status_code == 303
    with world.store.session() as db:
        assert db.get(Message, message_id).labels == [] and db.get(Label, label_id) is None
    duplicate = web.post(f"/admin/mail/{inbox_id}/labels/", {"name": "x"})
    web.post(f"/admin/mail/{inbox_id}/labels/", {"name": "x"})
    assert duplicate.status_code == 303 and "already has a label" in text_of(web.get(f"/admin/mail/{inbox_id}/labels/"))


def test_another_tenants_labels_are_404(web, world, owner):  # noqa: ANN001
    inbox_id = world.inbox(owner)
    web.sign_in(owner.email)
    web.post(f"/admin/mail/{inbox_id}/labels/", {"name": "secret"})
    with world.store.session() as db:
        label_id = db.scalar(select(Label.id).where(Label.inbox_id == inbox_id))
    other = world.owner()
    world.inbox(other)
    stranger = web.__class__(web.client.application.test_client())
    stranger.sign_in(other.email)
    assert stranger.get(f"/admin/mail/{inbox_id}/labels/").status_code == 404
    assert stranger.post(f"/admin/mail/{inbox_id}/labels/{label_id}/delete/", {"confirm": "yes"}).status_code == 404
    with world.store.session() as db:
        assert db.get(Label, label_id) is not None
