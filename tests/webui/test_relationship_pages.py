"""Issue 21 point 7: a contact's timeline and the inbox's relationship view in the web UI, over
the projections the worker keeps; another tenant's inbox and contact are 404s."""
from __future__ import annotations

from appliance.services.intelligence import activity
from tests.webui.conftest import text_of

ANN, BOB = "ann@partner.example", "bob@partner.example"


def test_the_relationship_view_and_a_contacts_timeline(web, web_for, world, store, client):
    owner = world.owner()
    agent = world.sender(owner, "desk@web-graph.example")
    for subject, to in (("Plan", [ANN, BOB]), ("Lunch", [BOB])):
        resp = client.post("/v1/messages/", headers=agent.auth, json={
            "to": [{"email": a, "name": a.split("@")[0].title()} for a in to], "subject": subject, "text_body": "Hi."})
        assert resp.status_code == 201
    with store.session() as db:
        activity.project(db)
    web.sign_in(owner.email)
    page = text_of(web.get(f"/admin/inboxes/{agent.inbox_id}/relationships/"))
    assert page.index("Bob") < page.index("Ann")  # strongest first: Bob got two messages
    assert f"{ANN} and {BOB}: 1 thread" in page
    person = text_of(web.get(f"/admin/inboxes/{agent.inbox_id}/relationships/{ANN}/"))
    assert "Ann" in person and BOB in person
    html = web.get(f"/admin/inboxes/{agent.inbox_id}/relationships/").get_data(as_text=True)
    contact_id = html.split("/timeline/", 1)[0].rsplit("/contacts/", 1)[1]  # Bob's, the first row's link
    timeline = text_of(web.get(f"/admin/inboxes/{agent.inbox_id}/contacts/{contact_id}/timeline/"))
    assert timeline.index("Lunch") < timeline.index("Plan")  # newest first
    assert "Timeline" in text_of(web.get(f"/admin/inboxes/{agent.inbox_id}/contacts/{contact_id}/"))
    assert web.get(f"/admin/inboxes/{agent.inbox_id}/relationships/nobody@partner.example/").status_code == 404

    stranger = web_for()
    stranger.sign_in(world.owner().email)
    assert stranger.get(f"/admin/inboxes/{agent.inbox_id}/relationships/").status_code == 404
    assert stranger.get(f"/admin/inboxes/{agent.inbox_id}/contacts/{contact_id}/timeline/").status_code == 404
