"""Forwarding (issue 20.4) against real peers: mail DKIM-signed by its author's domain arrives over
SMTP at an inbox that forwards; the remote MX receives it with an SRS envelope sender, the
original DKIM signature intact and a valid ARC chain sealed with the inbox domain's key, as Perl's
Mail::DKIM (not the dkimpy we sign with) verifies against the test DNS. A bounce sent to the SRS
address is accepted by our listener and returned to the original sender; a forged SRS address is
refused. Two inboxes forwarding to each other stop after one round."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import dkim
import pytest
from sqlalchemy import select, update

from appliance.models import Message, SystemMail
from appliance.services.identity.auth import Principal
from appliance.services.mail import forwarding
from appliance.worker import Worker
from smtp.auth import make_authenticator
from tests.helpers import new_dkim_key
from tests.integration.remote_mail import independent_dkim_check, remote_world  # noqa: F401
from tests.integration.smtp_fixtures import client as smtp_client
from tests.integration.smtp_fixtures import smtp_listener, stored, tls_files  # noqa: F401
from tests.integration.test_outbound_delivery import delivery_settings

ARC_VERIFY = Path(__file__).with_name("arc_verify.pl")
DESK = "desk@fwd.test"


def independent_arc_check(raw: bytes, dns_port: int) -> dict:
    """Mail::DKIM::ARC::Verifier's verdict on raw's ARC chain: {"result", "detail", "signatures"}."""
    done = subprocess.run([shutil.which("perl") or "/usr/bin/perl", str(ARC_VERIFY), str(dns_port)], input=raw,
                          capture_output=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return json.loads(done.stdout)


@pytest.fixture
def fwd(world, store, client, settings, make_settings, remote_world, smtp_listener):  # noqa: F811
    owner = world.owner()
    desk = world.sender(owner, DESK)
    selector, public = world.signing_key("fwd.test")
    author_key = new_dkim_key()
    dns = remote_world.dns
    dns.publish(f"{selector}._domainkey.fwd.test", "TXT", f"v=DKIM1; k=rsa; p={public}", restart=False)
    dns.publish("sel._domainkey.origin.test", "TXT", author_key[1], restart=False)
    dns.publish("origin.test", "TXT", "v=spf1 ip4:127.0.0.1 -all", restart=False)
    dns.publish("_dmarc.origin.test", "TXT", "v=DMARC1; p=reject", restart=False)
    boss, author = remote_world.receivers
    remote_world.domain("remote.test", mx=[(10, boss)])
    remote_world.domain("origin.test", mx=[(10, author)])  # restarts dnsmasq with every record above
    with store.session() as db:  # the owner's sign-up email is not what this test watches
        db.execute(update(SystemMail).values(status="sent", raw=b""))
    configured = delivery_settings(make_settings, remote_world, secret_key=settings.secret_key)
    worker = Worker(store, configured)
    listener = smtp_listener(store=store, settings=configured, authenticate=make_authenticator(configured))
    yield owner, desk, author_key, boss, author, worker, listener, configured
    worker.close()


def _authored(key, subject: str = "Contract") -> bytes:
    raw = (f"From: Ann Author <ann@origin.test>\r\nTo: {DESK}\r\nSubject: {subject}\r\n"
           f"Message-ID: <{subject}@origin.test>\r\nDate: Mon, 01 Mar 2027 10:00:00 +0000\r\n"
           f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nPlease sign.\r\n").encode()
    return dkim.sign(raw, b"sel", b"origin.test", key[0], include_headers=[b"from", b"to", b"subject",
                                                                         b"message-id", b"date"]) + raw


def test_forwarded_mail_keeps_dkim_gets_arc_and_srs_and_its_bounce_goes_home(fwd, client, store,
                                                                            remote_world):  # noqa: F811
    owner, desk, author_key, boss, author, worker, listener, configured = fwd
    put = client.put("/v1/forwarding/", json={"inbox_id": desk.inbox_id, "default_address": "boss@remote.test",
                                              "enabled": True}, headers=owner.auth)
    assert put.status_code == 200, put.get_data(as_text=True)
    with smtp_client(listener) as smtp:
        smtp.sendmail("ann@origin.test", [DESK], _authored(author_key))
    [(kept, _)] = stored(store, inbox_id=desk.inbox_id)
    assert kept.authentication["dkim"] == "pass"
    worker.run_until_idle()
    [delivery] = boss.wait_for(1)
    assert delivery.rcpt_tos == ("boss@remote.test",)
    assert delivery.mail_from.startswith("SRS0=") and delivery.mail_from.endswith("=origin.test=ann@fwd.test")
    verdict = independent_dkim_check(delivery.data, remote_world.dns_port)
    original = [s for s in verdict["signatures"] if s["d"] == "origin.test"]
    assert [s["result"] for s in original] == ["pass"], verdict  # the author's signature, intact
    arc = independent_arc_check(delivery.data, remote_world.dns_port)
    assert arc["result"] == "pass", arc
    assert {s["d"] for s in arc["signatures"]} == {"fwd.test"}
    message = delivery.message()
    aar = " ".join(str(message["ARC-Authentication-Results"]).split())
    assert aar.startswith(f"i=1; {configured.hostname};") and "dkim=pass" in aar, aar  # what we saw, sealed
    assert message["X-Gentbox-Forwarded"] == DESK
    assert stored(store, inbox_id=desk.inbox_id)  # keep_copy (the default): the inbox keeps its copy

    # The boss's server bounces it later: the DSN comes to the SRS address and goes on to Ann.
    dsn = (f"From: MAILER-DAEMON@remote.test\r\nTo: {delivery.mail_from}\r\nSubject: Undelivered Mail\r\n"
           f"Auto-Submitted: auto-replied\r\n\r\nThe mailbox of boss@remote.test is full.\r\n").encode()
    with smtp_client(listener) as smtp:
        assert smtp.sendmail("", [delivery.mail_from], dsn) == {}
    worker.run_until_idle()
    [returned] = author.wait_for(1)
    assert (returned.mail_from, returned.rcpt_tos) == ("<>", ("ann@origin.test",))  # the null sender
    assert b"The mailbox of boss@remote.test is full." in returned.data
    # A forged SRS address (a wrong hash) is no address of ours.
    forged_address = "SRS0=ZZZZ=" + delivery.mail_from.split("=", 2)[2]
    with smtp_client(listener) as smtp:
        assert smtp.mail("")[0] == 250
        assert smtp.rcpt(forged_address)[0] == 550


def test_keep_copy_false_removes_the_inbox_copy_once_forwarded(fwd, client, store):
    owner, desk, author_key, boss, _, worker, listener, _ = fwd
    client.put("/v1/forwarding/", json={"inbox_id": desk.inbox_id, "default_address": "boss@remote.test",
                                        "enabled": True, "keep_copy": False}, headers=owner.auth)
    with smtp_client(listener) as smtp:
        smtp.sendmail("ann@origin.test", [DESK], _authored(author_key, "Gone"))
    worker.run_until_idle()
    assert boss.wait_for(1)[0].rcpt_tos == ("boss@remote.test",)
    assert stored(store, inbox_id=desk.inbox_id) == []


def test_two_inboxes_forwarding_to_each_other_stop_after_one_round(fwd, world, store, remote_world):  # noqa: F811
    owner, desk, author_key, boss, _, worker, listener, configured = fwd
    other = world.sender(owner, "back@fwd.test")
    with store.session() as db:
        system = Principal.system(owner.tenant_id, "test")
        forwarding.put_forwarding(db, system, desk.inbox_id, {"default_address": "back@fwd.test", "enabled": True})
        forwarding.put_forwarding(db, system, other.inbox_id, {"default_address": DESK, "enabled": True})
    with smtp_client(listener) as smtp:
        smtp.sendmail("ann@origin.test", [DESK], _authored(author_key, "Loop"))
    for _ in range(5):
        worker.run_until_idle()
    with store.session() as db:
        forwarded = [m.meta["inbox_id"] for m in db.scalars(select(SystemMail).where(SystemMail.kind == "forward"))]
        received = list(db.scalars(select(Message.inbox_id).where(Message.subject == "Loop")))
    assert sorted(forwarded) == sorted([desk.inbox_id, other.inbox_id])  # once each
    # The second hop found the first hop's chain valid and sealed that into its own set (i=2).
    second = stored(store, inbox_id=desk.inbox_id)[-1][1]  # back at the desk after two hops
    assert b"ARC-Seal: i=2; cv=pass;" in second
    assert b"ARC-Authentication-Results: i=2; mail.gentbox.test;\r\n arc=pass;" in second
    assert independent_arc_check(second, remote_world.dns_port)["result"] == "pass"
    assert sorted(received) == sorted([desk.inbox_id, desk.inbox_id, other.inbox_id])
