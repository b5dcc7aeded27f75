"""The audit bundle (issue 23 point 7): one zip for an auditor, for owners and admins only, with
the period's audit log and its verification, an access review, the configuration, the changes,
security signals, a SOC 2 control map whose every evidence file is in the zip, and a manifest."""
from __future__ import annotations

import hashlib
import io
import json
import zipfile

from appliance.services.governance import bundle


def test_the_bundle_holds_the_evidence_its_control_map_names(client, world):
    owner = world.owner()
    member = world.member(owner)
    inbox_id = world.inbox(owner)
    token = client.post("/v1/tokens/", headers=owner.auth, json={"inbox_id": inbox_id, "label": "bot",
                                                                 "scopes": ["email:read"]})
    assert token.status_code == 201, token.json
    assert client.post("/auth/login/", json={"email": member.email, "password": "wrong password!"}).status_code == 401
    client.put("/v1/compliance/retention/", headers=owner.auth, json={"events_days": 90})

    assert client.get("/v1/compliance/audit-bundle/", headers=member.auth).status_code == 403
    answer = client.get("/v1/compliance/audit-bundle/", headers=owner.auth)
    assert answer.status_code == 200 and answer.mimetype == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(answer.data))
    files = {name: json.loads(archive.read(name)) for name in archive.namelist()}

    control_map = files["control_map.json"]
    assert set(control_map) == {"CC6.1", "CC6.2", "CC6.3", "CC7.2", "CC8.1"}
    assert {f for c in control_map.values() for f in c["evidence"]} <= set(files)
    manifest = files["manifest.json"]
    assert set(manifest["files"]) == set(files) - {"manifest.json"}
    for name, meta in manifest["files"].items():
        assert hashlib.sha256(archive.read(name)).hexdigest() == meta["sha256"]

    assert files["verification.json"]["ok"]
    review = files["access_review.json"]
    assert {u["email"]: u["role"] for u in review["users"]} == {owner.email: "owner", member.email: "member"}
    assert [(t["label"], t["scopes"]) for t in review["tokens"]] == [("bot", ["email:read"])]
    assert files["configuration.json"]["retention"]["events_days"] == 90
    assert any(e["action"] == "tokens.create_token" for e in files["changes.json"])
    assert [e["action"] for e in files["security_signals.json"]["failed_sign_ins"]] == ["access.log_in.failed"]

    later = client.get("/v1/compliance/audit-bundle/", headers=owner.auth, query_string={"from": "2999-01-01T00:00:00Z"})
    assert json.loads(zipfile.ZipFile(io.BytesIO(later.data)).read("audit_log.json")) == []
    bad = client.get("/v1/compliance/audit-bundle/", headers=owner.auth, query_string={"from": "yesterday-ish"})
    assert bad.status_code == 400
    assert set(bundle.CONTROL_MAP) == set(control_map)
