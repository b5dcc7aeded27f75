"""The layout: navigation from the registry by audience and role, badges, and the home page."""
from __future__ import annotations

import re

from tests.webui.conftest import text_of
from webui import nav


def _nav_labels(html: str) -> list[str]:
    block = re.search(r'<nav class="nav" aria-label="Main">(.*?)</nav>', html, re.S).group(1)
    return [re.sub(r"<[^>]+>.*", "", label).strip() for label in re.findall(r"<a [^>]*>(.*?)</a>", block, re.S)]


def test_navigation_shows_what_each_audience_may_open(web_for, world, operator):
    owner = world.owner()
    member = world.member(owner)
    expected = {who: [i.label for i in nav.registered()
                      if (i.audience == "operator" and who == "operator")
                      or (i.audience == "tenant" and {"operator": "owner", "owner": "owner", "member": "member"}[who] in i.roles)]
                for who in ("operator", "owner", "member")}
    for who, email in (("operator", operator), ("owner", owner.email), ("member", member.email)):
        web = web_for()
        web.sign_in(email)
        labels = _nav_labels(text_of(web.get("/admin/account/")))
        assert labels == expected[who], who
    assert "Waitlist" in expected["operator"] and "Waitlist" not in expected["owner"]
    assert "Users" in expected["owner"] and "Users" not in expected["member"]
    assert expected["member"][-1] == "Account"


def test_home_leads_to_the_first_page_of_ones_navigation(web_for, world, operator):
    member = world.member(world.owner())
    for email in (operator, member.email):
        web = web_for()
        web.sign_in(email)
        page = text_of(web.get("/admin/account/"))
        block = re.search(r'<nav class="nav" aria-label="Main">(.*?)</nav>', page, re.S).group(1)
        first_href = re.search(r'<a href="([^"]+)"', block).group(1)
        resp = web.get("/admin/")
        assert resp.status_code == 302 and resp.headers["Location"] == first_href, email
        assert web.get(first_href).status_code == 200


def test_a_failing_badge_leaves_the_page_working(web, operator, monkeypatch):
    item = nav._ITEMS["webui.waitlist_admin"]

    def broken(db, principal):  # noqa: ANN001, ANN202
        raise RuntimeError("badge store down")
    monkeypatch.setitem(nav._ITEMS, "webui.waitlist_admin", nav.NavItem(item.label, item.endpoint, item.order,
                                                                         item.audience, item.roles, broken))
    web.sign_in(operator)
    resp = web.get("/admin/account/")
    assert resp.status_code == 200 and "Waitlist" in _nav_labels(text_of(resp))


def test_nav_item_rejects_an_unknown_audience():
    import pytest
    with pytest.raises(ValueError):
        nav.nav_item("X", "webui.x", audience="everyone")
