"""The events page: the tenant's events newest first, a page at a time, filtered by type; nothing
of another tenant's."""
from __future__ import annotations

import re

from appliance.services.automation import events
from tests.webui.conftest import text_of

EVENT_ROW = re.compile(r'<tr data-event="(evt_\w+)">')


def test_events_newest_first_with_pages_and_a_type_filter(web, world, store):
    owner = world.owner()
    inbox = world.inbox(owner, "bot@mine.example.com")
    with store.session() as db:
        made = [events.emit(db, "message.received", tenant_id=owner.tenant_id, inbox_id=inbox,
                            resource_id=f"msg_{n:03}", payload={"subject": f"note {n}"}).id for n in range(60)]
    world.agent(owner, inbox, ["email:read"])  # token.created, the newest
    stranger = world.owner()
    world.agent(stranger, world.inbox(stranger, "theirs@theirs.example.com"), ["email:read"])
    web.sign_in(owner.email)

    first = text_of(web.get("/admin/events/"))
    ids = EVENT_ROW.findall(first)
    assert len(ids) == 50 and ids == sorted(ids, reverse=True)
    assert "token.created" in first.split('<tr data-event="', 2)[1]  # the newest on top
    assert "bot@mine.example.com" in first and "note 59" in first
    assert "theirs" not in first
    older = re.search(r'href="(/admin/events/\?before=evt_\w+)"', first).group(1)
    second = text_of(web.get(older.replace("&amp;", "&")))
    rest = EVENT_ROW.findall(second)
    assert set(rest).isdisjoint(ids) and set(ids) | set(rest) >= set(made)
    assert "Older events" not in second and "Newest" in second

    only = text_of(web.get("/admin/events/?type=token.created"))
    assert len(EVENT_ROW.findall(only)) == 1
    assert web.get("/admin/events/?type=nonsense").status_code == 400


def test_a_new_tenant_sees_its_sign_up_and_members_are_refused(web_for, world):
    owner = world.owner()
    web = web_for()
    web.sign_in(owner.email)
    assert "user.signed_up" in text_of(web.get("/admin/events/"))
    assert "No message.bounced events yet." in text_of(web.get("/admin/events/?type=message.bounced"))
    member = web_for()
    member.sign_in(world.member(owner).email)
    assert member.get("/admin/events/").status_code == 403
