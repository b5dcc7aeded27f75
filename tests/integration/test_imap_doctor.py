"""`gentbox doctor` checks IMAP (issue 25 point 5): both ports answer as IMAP should, and a stopped
server fails with the unit to start."""
from __future__ import annotations

import datetime as dt
import socket

from appliance import doctor
from tests.integration.imap_fixtures import imap_server, tls_files  # noqa: F401


def checks(store, settings, **ports) -> dict[str, doctor.Check]:  # noqa: ANN001
    ctx = doctor.Context(store, settings.model_copy(update={"bind": "127.0.0.1", "doctor_timeout": 5, **ports}),
                         None, dt.datetime.now(dt.timezone.utc))
    return {c.name: c for c in doctor.check_imap(ctx)}


def test_doctor_passes_a_running_imap_server_and_fails_a_closed_port(imap_server, store, settings) -> None:
    address = imap_server()
    found = checks(store, settings, imap_port=address.port, imaps_port=address.tls_port)
    assert {n: c.status for n, c in found.items()} == {"port.imap": "pass", "port.imaps": "pass"}
    assert "STARTTLS LOGINDISABLED" in found["port.imap"].detail
    with socket.create_server(("127.0.0.1", 0)) as unused:
        closed = unused.getsockname()[1]
    found = checks(store, settings, imap_port=closed, imaps_port=closed)
    for name in ("port.imap", "port.imaps"):
        assert found[name].status == "fail" and "systemctl start gentbox-imap.service" in found[name].fix
