"""What `gentbox run` preloads before forking its children (issue 26, "Whole appliance memory idle"):
every page of that template is mapped by every process, so it holds nothing an idle or mail-busy
appliance never uses, and the children use the settings, store and argument parser it built
instead of each making a private copy (docs/benchmarks.md, helper h43)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.integration.test_smtp_cli import initialised  # noqa: F401 - a fixture

# Libraries only rare features use (calendars, vCards, workflow `matches`, the TOTP QR code,
# `gentbox init`'s certificate, IMAP imports): imported where those features run.
RARELY_USED = ("icalendar", "recurring_ical_events", "vobject", "regex", "segno", "cryptography.x509",
               "aioimaplib")

TEMPLATE = """
import json, sys
from appliance import cli
from appliance.config import load_settings
cli._schema_checked = True  # as `gentbox run` sets it once its short-lived child migrated
cli._preload(load_settings())
settings = cli._settings()  # as a forked child calls it
print(json.dumps({
    "loaded": sorted(name for name in json.loads(sys.argv[1]) if name in sys.modules),
    "settings_shared": settings is cli._settings(),
    "store_shared": cli._store(settings) is cli._preloaded_app.extensions["gentbox"],
}))
"""


def _template(env: dict[str, str], cwd: Path) -> dict:
    result = subprocess.run([sys.executable, "-c", TEMPLATE, json.dumps(RARELY_USED)], cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def test_the_template_loads_no_library_that_only_rare_features_use(initialised: dict[str, str],  # noqa: F811
                                                                    tmp_path: Path) -> None:
    assert _template(initialised, tmp_path)["loaded"] == []


def test_the_children_use_the_settings_and_store_the_template_built(initialised: dict[str, str],  # noqa: F811
                                                                     tmp_path: Path) -> None:
    template = _template(initialised, tmp_path)
    assert template["settings_shared"] is True
    assert template["store_shared"] is True
