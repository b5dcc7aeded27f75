"""`gentbox backup` records the erasures carried out since the previous backup (issue 23 point 5):
by id, scope and keyed digest, never the address, so restoring an older archive can be followed
by carrying them out again; the data dir notes the last backup (the audit bundle shows it)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile

from appliance.clock import utcnow
from appliance.ids import new_id
from appliance.models.compliance import ComplianceDeletion
from appliance.services.governance import bundle, compliance


def _completed(store, settings, address: str) -> str:
    with store.session() as db:
        row = ComplianceDeletion(id=new_id("del"), tenant_id="tnt_x", scope="address", status="completed",
                                 subject_digest=compliance.subject_digest(settings.secret_key, address),
                                 effective_at=utcnow(), created_at=utcnow(), completed_at=utcnow(), counts={})
        db.add(row)
    return row.id


def _backup(settings, database_url: str, path) -> dict:
    """`gentbox backup` as the operator runs it; the archive's manifest."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENTBOX_")}
    env.update(GENTBOX_DATA_DIR=str(settings.data_dir), GENTBOX_DATABASE_URL=database_url,
               GENTBOX_SECRET_KEY=settings.secret_key)
    done = subprocess.run([sys.executable, "-m", "appliance.cli", "backup", str(path), "--no-encryption"], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Erasures carried out since the previous backup" in done.stdout
    with tarfile.open(path) as tar:
        return json.load(tar.extractfile("manifest.json"))


def test_each_backup_lists_the_erasures_since_the_previous_one(store, settings, database_url, tmp_path):
    first_erasure = _completed(store, settings, "alice@remote.test")
    first = _backup(settings, database_url, tmp_path / "one.tar.gz")
    assert [e["deletion_id"] for e in first["erasures"]["completed"]] == [first_erasure]
    assert "alice" not in json.dumps(first["erasures"])
    assert bundle.last_backup(settings)["created_at"] == first["created_at"]

    second_erasure = _completed(store, settings, "bob@remote.test")
    second = _backup(settings, database_url, tmp_path / "two.tar.gz")
    assert second["erasures"]["since_previous_backup"] is not None
    assert second_erasure in [e["deletion_id"] for e in second["erasures"]["completed"]]
