"""Issue 14, point 1, in the web UI: a domain page says when a claim lapsed (another account
verified the name first) or expired unverified, and the verify button then explains the refusal."""
from __future__ import annotations

import datetime as dt

from appliance import clock
from appliance.ids import new_id
from appliance.models import Domain
from tests.webui.conftest import text_of


def test_a_lapsed_and_an_expired_claim_say_so(web, world, store) -> None:
    alice, bob = world.owner(), world.owner()
    world.inbox(alice, "agent@taken.test")  # alice holds taken.test, verified
    now = clock.utcnow()
    with store.session() as db:
        db.add(Domain(id=new_id("dom"), tenant_id=bob.tenant_id, name="taken.test", status="lapsed",
                      created_at=now, lapsed_at=now, verification_token="t"))
    web.sign_in(bob.email)
    page = text_of(web.get("/admin/domains/taken.test/"))
    assert "lapsed" in page and "Another account verified this domain first" in page
    page = text_of(web.post("/admin/domains/taken.test/verify/", follow_redirects=True))
    assert "so this claim has lapsed" in page

    page = text_of(web.post("/admin/domains/", {"domain": "later.test"}, follow_redirects=True))
    assert "when this claim expires" in text_of(web.get("/admin/domains/later.test/"))
    clock.advance(dt.timedelta(days=7, seconds=1))
    web.sign_in(bob.email)  # the first sign-in has ended by now
    page = text_of(web.get("/admin/domains/later.test/"))
    assert "expired" in page and "add the domain again" in page
