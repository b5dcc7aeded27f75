"""Issue 14.9 (d): `gentbox backup` refuses to write an archive in clear (it holds the secret key
that opens the DKIM private keys, and all mail) unless --no-encryption says so on purpose; the
error says how to fix it. Run as the real command line, on SQLite and PostgreSQL."""
from __future__ import annotations

import tarfile

from tests.integration.smtp_fixtures import tls_files  # noqa: F401
from tests.integration.test_backup import gentbox, installed
from appliance.backup import MAGIC


def test_a_backup_without_a_passphrase_is_refused_and_says_how_to_fix_it(world, settings, database_url,
                                                                         tls_files, tmp_path):  # noqa: F811
    world.owner()
    env = installed(settings, tls_files, database_url)
    archive = tmp_path / "backups" / "gentbox.tar.gz"
    result = gentbox("backup", str(archive), env=env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Refusing to write an unencrypted backup" in result.stderr
    assert "--passphrase-file" in result.stderr and "--no-encryption" in result.stderr
    assert not archive.exists()

    (tmp_path / "pass").write_text("a long passphrase for the test\n")
    both = gentbox("backup", str(archive), "--passphrase-file", str(tmp_path / "pass"), "--no-encryption", env=env)
    assert both.returncode == 1 and "contradict" in both.stderr, both.stderr
    assert not archive.exists()


def test_no_encryption_writes_it_in_clear_and_a_passphrase_encrypts(world, settings, database_url,
                                                                    tls_files, tmp_path):  # noqa: F811
    world.owner()
    env = installed(settings, tls_files, database_url)
    clear, sealed = tmp_path / "clear.tar.gz", tmp_path / "sealed.tar.gz"
    result = gentbox("backup", str(clear), "--no-encryption", env=env)
    assert result.returncode == 0 and "not encrypted" in result.stdout, result.stderr
    with tarfile.open(clear) as archive:
        assert "manifest.json" in archive.getnames()
    (tmp_path / "pass").write_text("a long passphrase for the test\n")
    result = gentbox("backup", str(sealed), "--passphrase-file", str(tmp_path / "pass"), env=env)
    assert result.returncode == 0 and ", encrypted" in result.stdout, result.stderr
    assert sealed.read_bytes().startswith(MAGIC)
