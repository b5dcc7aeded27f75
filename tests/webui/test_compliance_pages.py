"""The Compliance page (issue 23): owners and admins request an export and see its download link
once the worker built it, schedule and cancel an erasure, set the retention policy and download
the audit bundle; members are refused; every form carries its CSRF token."""
from __future__ import annotations

import io
import zipfile

from appliance.worker import Worker


def test_an_owner_uses_every_form_of_the_compliance_page(web, web_for, world, store, settings):
    owner = world.owner()
    web.sign_in(owner.email)
    page = web.get("/admin/compliance/")
    assert page.status_code == 200 and "Request export" in page.get_data(as_text=True)

    done = web.post("/admin/compliance/export/", {"scope": "tenant"}, follow_redirects=True)
    assert "Export requested" in done.get_data(as_text=True)
    worker = Worker(store, settings)
    try:
        worker.run_until_idle()
    finally:
        worker.close()
    html = web.get("/admin/compliance/").get_data(as_text=True)
    assert "/v1/compliance/export/exp_" in html and "signature=" in html

    scheduled = web.post("/admin/compliance/deletion/", {"scope": "address", "address": "alice@remote.test"},
                         follow_redirects=True).get_data(as_text=True)
    assert "Erasure scheduled" in scheduled and "alice@remote.test" not in scheduled.split("<h2>Erasure</h2>")[1]
    deletion_id = scheduled.split('data-deletion="', 1)[1].split('"', 1)[0]
    assert web.post(f"/admin/compliance/deletion/{deletion_id}/cancel/", {}, csrf=False).status_code == 400
    cancelled = web.post(f"/admin/compliance/deletion/{deletion_id}/cancel/", {}, follow_redirects=True)
    assert "Erasure cancelled" in cancelled.get_data(as_text=True)

    bad = web.post("/admin/compliance/retention/", {"messages_days": "ten"}, follow_redirects=True)
    assert "whole number of days" in bad.get_data(as_text=True)
    saved = web.post("/admin/compliance/retention/", {"messages_days": "365", "audit_days": "400"},
                     follow_redirects=True).get_data(as_text=True)
    assert "Retention policy saved" in saved and 'value="365"' in saved

    zipped = web.get("/admin/compliance/audit-bundle/?from=2020-01-01")
    assert zipped.mimetype == "application/zip"
    assert "control_map.json" in zipfile.ZipFile(io.BytesIO(zipped.data)).namelist()

    member = world.member(owner)
    other = web_for()
    other.sign_in(member.email)
    assert other.get("/admin/compliance/").status_code == 403
