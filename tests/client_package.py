"""The gentbox-client package (clients/python) for tests: installed by `make test`, else taken from
the checkout, so a test run from a venv made before the package existed still finds it."""
from __future__ import annotations

import sys
from pathlib import Path

try:
    import gentbox_client
except ModuleNotFoundError:  # pragma: no cover - a venv made before clients/python existed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "clients" / "python"))
    import gentbox_client

GentboxClient = gentbox_client.GentboxClient
GentboxError = gentbox_client.GentboxError
