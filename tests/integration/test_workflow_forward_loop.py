"""Issue 20, point 2: two appliances whose workflows forward to each other do not loop.

Two real appliances, each with its own database, SMTP listener (on 127.0.0.x at the port the
workers dial), worker and host name, find each other's MX through dnsmasq. Alpha's workflow
forwards everything desk@alpha.example receives to desk@beta.example, and Beta's forwards
everything back. An outsider writes to Alpha over SMTP: Alpha forwards it once (with
`X-Gentbox-Loop` naming itself), Beta forwards that once, and Alpha, seeing its own name in the
loop header, does not forward again: each appliance forwards the message at most once.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from sqlalchemy import select, update

from appliance.db import Store
from appliance.models import Message, SystemMail, WorkflowRun
from appliance.worker import Worker
from smtp.server import Listener
from tests.integration.remote_mail import remote_world  # noqa: F401
from tests.integration.smtp_fixtures import client as smtp_client
from tests.integration.smtp_fixtures import message_bytes
from tests.integration.test_outbound_delivery import delivery_settings
from tests.world import World
from tests.postgres import create_database, drop_database


@pytest.fixture
def second_database(backend: str, request: pytest.FixtureRequest, tmp_path: Path):
    """A second, migrated database for the second appliance."""
    if backend == "sqlite":
        shutil.copy(request.getfixturevalue("sqlite_template"), tmp_path / "beta.db")
        yield f"sqlite:///{tmp_path / 'beta.db'}"
        return
    admin = request.getfixturevalue("postgres_admin_url")
    name = f"gentbox_beta_{abs(hash(str(tmp_path))) % 10**8}"
    yield create_database(admin, name)
    drop_database(admin, name)



class Appliance:
    """One box: store, settings, an owner with a desk inbox, a listener on the shared port, a worker."""

    def __init__(self, name: str, settings, remote_world) -> None:  # noqa: ANN001
        self.name, self.settings = name, settings
        self.store = Store(settings)
        self.world = World(self.store, settings)
        self.owner = self.world.owner()
        self.desk = self.world.sender(self.owner, f"desk@{name}.example")
        with self.store.session() as db:  # sign-up mail is not what this test watches
            db.execute(update(SystemMail).values(status="sent", raw=b""))
        self.listener = remote_world._bind_shared(self._start)
        remote_world.domain(f"{name}.example", mx=[(10, self.listener.host)])
        self.worker = Worker(self.store, settings)

    def _start(self, host: str, port: int) -> Listener:
        listener = Listener(self.store, self.settings, host=host, port=port)
        listener.start()
        return listener

    def forward_to(self, client, address: str) -> str:  # noqa: ANN001
        made = client.post("/v1/workflows/", headers=self.owner.auth, json={
            "inbox_id": self.desk.inbox_id, "name": "forward everything", "trigger": {"type": "email_received"},
            "writes": [{"target": {"type": "email.forward", "to": address}}]})
        assert made.status_code == 201, made.json
        return made.json["workflow_id"]

    def close(self) -> None:
        self.worker.close()
        self.listener.stop()
        self.store.dispose()


def test_two_appliances_forwarding_to_each_other_stop_after_one_hop_each(
        make_settings, make_app, second_database, remote_world, tmp_path) -> None:
    alpha = beta = None
    try:
        alpha = Appliance("alpha", delivery_settings(make_settings, remote_world, hostname="mx.alpha.example"),
                          remote_world)
        (tmp_path / "beta").mkdir()
        beta_settings = delivery_settings(make_settings, remote_world, hostname="mx.beta.example").model_copy(
            update={"database_url": second_database, "data_dir": tmp_path / "beta"})
        beta = Appliance("beta", beta_settings, remote_world)
        to_beta = alpha.forward_to(make_app(alpha.settings).test_client(), "desk@beta.example")
        to_alpha = beta.forward_to(make_app(beta.settings).test_client(), "desk@alpha.example")
        raw = message_bytes("Quarterly numbers", "desk@alpha.example", sender="carol@outside.example",
                            message_id="<numbers@outside.example>", body="See the numbers.")
        with smtp_client((alpha.listener.host, alpha.listener.port)) as smtp:
            assert smtp.sendmail("carol@outside.example", ["desk@alpha.example"], raw) == {}
        for _ in range(6):  # the two workers take turns until neither has anything left to do
            if not (alpha.worker.run_until_idle() + beta.worker.run_until_idle()):
                break
        alpha_runs, alpha_in = _state(alpha, to_beta)
        beta_runs, beta_in = _state(beta, to_alpha)
    finally:
        for box in (alpha, beta):
            if box is not None:
                box.close()
    assert alpha_in == ["Quarterly numbers", "Fwd: Quarterly numbers"]  # the original, then Beta's forward
    assert beta_in == ["Fwd: Quarterly numbers"]
    assert [(r.actions[0]["outcome"]) for r in alpha_runs] == ["queued", "skipped"]
    assert "forwarding loop" in alpha_runs[1].actions[0]["error"]
    assert [r.actions[0]["outcome"] for r in beta_runs] == ["queued"]
    assert all(not receiver.deliveries for receiver in remote_world.receivers)


def _state(box: Appliance, workflow_id: str) -> tuple[list[WorkflowRun], list[str]]:
    with box.store.session() as db:
        runs = list(db.scalars(select(WorkflowRun).where(WorkflowRun.workflow_id == workflow_id)
                               .order_by(WorkflowRun.id)))
        received = list(db.scalars(select(Message.subject).where(Message.direction == "inbound")
                                   .order_by(Message.created_at, Message.id)))
    return runs, received
