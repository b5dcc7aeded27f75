"""`gentbox domain …` and `gentbox inbox …` as real processes, against a real DNS server."""
from __future__ import annotations

from pathlib import Path

from tests.integration.test_cli import assert_clean_failure, base_env, gentbox


def test_domain_and_inbox_commands_walk_the_owner_path(tmp_path: Path, database_url: str, dns_server):
    env = base_env(tmp_path / "var", database_url=database_url, dns_servers=dns_server.address,
                   dns_timeout="2")
    assert gentbox("init", "--admin-email", "admin@example.test", cwd=tmp_path, env=env).returncode == 0

    added = gentbox("domain", "add", "Shop.Example.TEST", cwd=tmp_path, env=env)
    assert added.returncode == 0, added.stderr
    assert "Added shop.example.test." in added.stdout
    for host in ("@", "gent._domainkey", "gented._domainkey", "_dmarc", "_gent-verify", "_mta-sts", "_smtp._tls"):
        assert f" {host} " in added.stdout

    pending = gentbox("domain", "verify", "shop.example.test", cwd=tmp_path, env=env)
    assert pending.returncode == 0 and "shop.example.test: pending" in pending.stdout
    assert pending.stdout.count("[ missing]") == 8  # with the optional Ed25519 DKIM record

    records = []
    for line in added.stdout.splitlines()[1:]:
        rtype, host, _required, value = line.split("]", 1)[1].split(None, 3)
        records.append({"type": rtype, "host": host, "value": value, "purpose": "x"})
    dns_server.publish_domain_records("shop.example.test", records)
    verified = gentbox("domain", "verify", "shop.example.test", cwd=tmp_path, env=env)
    assert "shop.example.test: verified" in verified.stdout, verified.stdout
    check = gentbox("domain", "check", "shop.example.test", cwd=tmp_path, env=env)
    assert check.stdout.count("[      ok]") == 8

    created = gentbox("inbox", "create", "Bot@shop.example.test", "--display-name", "Bot", cwd=tmp_path, env=env)
    assert created.returncode == 0 and "Created bot@shop.example.test (inb_" in created.stdout
    listed = gentbox("inbox", "list", cwd=tmp_path, env=env)
    assert "bot@shop.example.test" in listed.stdout and "\tactive\t" in listed.stdout
    assert "is paused" in gentbox("inbox", "pause", "bot@shop.example.test", cwd=tmp_path, env=env).stdout
    unknown = gentbox("domain", "verify", "nothere.example.test", cwd=tmp_path, env=env)
    assert_clean_failure(unknown, 1, "No such domain")
    deleted = gentbox("inbox", "delete", "bot@shop.example.test", cwd=tmp_path, env=env)
    assert deleted.returncode == 0 and "Deleted bot@shop.example.test" in deleted.stdout
    assert "bot@shop.example.test" not in gentbox("inbox", "list", cwd=tmp_path, env=env).stdout


def test_bad_domain_and_unverified_inbox_fail_clearly(tmp_path: Path, database_url: str):
    env = base_env(tmp_path / "var", database_url=database_url, dns_servers="127.0.0.1:9", dns_timeout="0.5")
    assert gentbox("init", "--admin-email", "admin@example.test", cwd=tmp_path, env=env).returncode == 0
    assert_clean_failure(gentbox("domain", "add", "co.uk", cwd=tmp_path, env=env), 1, "public suffix")
    assert_clean_failure(gentbox("domain", "add", "has space.example", cwd=tmp_path, env=env), 1, "spaces")
    assert gentbox("domain", "add", "fresh.example.test", cwd=tmp_path, env=env).returncode == 0
    assert_clean_failure(gentbox("inbox", "create", "a@fresh.example.test", cwd=tmp_path, env=env), 1,
                         "not verified")
