"""Issue 14.9 (a): opening a message in the web UI does not mark it read (a GET changes nothing:
link scanners, prefetchers and previews open pages too); the page marks it read with a POST that
carries the CSRF token, sent by the static script once the page has loaded, or by its button."""
from __future__ import annotations

from sqlalchemy import select

from appliance.models import Event, Inbox, Message
from tests.api.test_messages import build_mail, deliver
from tests.webui.conftest import CSRF_FIELD, text_of


def _unread_message(world, owner) -> tuple[str, str]:  # noqa: ANN001
    inbox_id = world.inbox(owner)
    with world.store.session() as db:
        address = db.get(Inbox, inbox_id).address
    return inbox_id, deliver(world, inbox_id, build_mail(subject="Quarterly invoice", to=address, text="Pay."))


def _is_read(world, message_id: str) -> bool:  # noqa: ANN001
    with world.store.read_sessions() as db:
        return db.scalar(select(Message.is_read).where(Message.id == message_id))


def test_opening_a_message_leaves_it_unread_and_offers_the_post(web, world, owner):  # noqa: ANN001
    inbox_id, message_id = _unread_message(world, owner)
    web.sign_in(owner.email)
    for _ in range(2):  # a scanner, then a prefetch
        page = web.get(f"/admin/mail/{inbox_id}/messages/{message_id}/")
        assert page.status_code == 200
    assert _is_read(world, message_id) is False
    body = text_of(page)
    form = body[body.index("<form", body.index('class="actions"')):]
    form = form[:form.index("</form>")]
    assert f'action="/admin/mail/{inbox_id}/messages/{message_id}/read/"' in form
    assert "data-mark-read" in form and CSRF_FIELD.search(form)
    assert "Mark unread" not in body
    with world.store.read_sessions() as db:
        assert db.scalars(select(Event).where(Event.type == "message.updated")).all() == []


def test_the_post_marks_it_read_with_a_csrf_token_only(web, world, owner):  # noqa: ANN001
    inbox_id, message_id = _unread_message(world, owner)
    web.sign_in(owner.email)
    url = f"/admin/mail/{inbox_id}/messages/{message_id}/read/"
    assert web.post(url, csrf=False).status_code == 400
    assert _is_read(world, message_id) is False
    resp = web.post(url, headers={"Accept": "application/json"})  # what the page's script sends
    assert resp.status_code == 204 and _is_read(world, message_id) is True
    page = text_of(web.get(f"/admin/mail/{inbox_id}/messages/{message_id}/"))
    assert "data-mark-read" not in page and "Mark unread" in page
    resp = web.post(url)  # the button, without the script
    assert resp.status_code == 303 and resp.headers["Location"].endswith(f"/messages/{message_id}/")


def test_another_tenant_cannot_mark_it_read(web, world, owner):  # noqa: ANN001
    inbox_id, message_id = _unread_message(world, owner)
    stranger = world.owner()
    mine = world.inbox(stranger)
    web.sign_in(stranger.email)
    for path in (f"/admin/mail/{inbox_id}/messages/{message_id}/read/",
                 f"/admin/mail/{mine}/messages/{message_id}/read/"):
        assert web.post(path).status_code == 404, path
    assert _is_read(world, message_id) is False

