"""Issue 14, point 5: outbound SSRF. A recipient domain's MX (or its address records, the implicit
MX) is the domain owner's to publish, so it may point at loopback, the LAN, a cloud metadata
service or the appliance itself. The worker dials none of them unless the operator turned on
deliver_to_private; senders read a generic reason, never an internal banner or error text.

Real peers: the MX records live in dnsmasq, aiosmtpd listeners on 127.0.0.1 and ::1 record every
connection (none may arrive), a raw socket plays an internal host with a revealing banner.
"""
from __future__ import annotations

import socket
import threading

import pytest
from sqlalchemy import update

from appliance import addresses
from appliance.config import Settings
from appliance.models import SystemMail
from appliance.worker import Worker
from smtp.tls import write_self_signed
from tests.integration.remote_mail import RemoteReceiver, remote_world  # noqa: F401

REFUSED = "550 5.4.4 Refused: the recipient's mail server address is not public"
NON_PUBLIC = ["127.0.0.1", "10.0.0.1", "169.254.169.254", "::1"]


@pytest.fixture
def sender(world, store, client):
    owner = world.owner()
    agent = world.sender(owner, "agent@ssrf-sender.example")
    with store.session() as db:  # the owner's own sign-up email is not what these tests watch
        db.execute(update(SystemMail).values(status="sent", raw=b""))

    def send(to: str) -> str:
        resp = client.post("/v1/messages/", json={"to": [{"email": to}], "subject": "Hi", "text_body": "Hello."},
                           headers=agent.auth)
        assert resp.status_code == 201, resp.json
        return resp.json["message_id"]

    def message(message_id: str) -> dict:
        return client.get(f"/v1/messages/{message_id}/", headers=agent.auth).json

    def bounces() -> list[dict]:
        found = client.get("/v1/messages/", query_string={"direction": "inbound"}, headers=agent.auth).json
        return [client.get(f"/v1/messages/{m['message_id']}/", headers=agent.auth).json for m in found["results"]]
    send.message, send.bounces = message, bounces
    return send


@pytest.fixture
def listeners(remote_world):
    """aiosmtpd MX hosts on 127.0.0.1 and ::1, on the port the worker dials."""
    started = [RemoteReceiver(host, remote_world.port).start() for host in ("127.0.0.1", "::1")]
    yield dict(zip(("127.0.0.1", "::1"), started))
    for receiver in started:
        receiver.stop()


def publish(remote_world, domain: str, address: str, *, implicit: bool) -> None:
    """domain's mail goes to address: by an MX host with that address, or by the domain's own
    A/AAAA record (no MX)."""
    rtype = "AAAA" if ":" in address else "A"
    if implicit:
        remote_world.dns.publish(domain, rtype, address)
    else:
        remote_world.dns.publish(f"mx.{domain}", rtype, address, restart=False)
        remote_world.dns.publish(domain, "MX", f"10 mx.{domain}")


def run_worker(store, make_settings, remote_world, **overrides) -> None:
    overrides.setdefault("delivery_timeout", 2.0)
    settings = make_settings(delivery_port=remote_world.port, dns_servers=remote_world.dns_address,
                             dns_lifetime=1.0, **overrides)
    worker = Worker(store, settings)
    try:
        worker.run_once()
    finally:
        worker.close()


@pytest.mark.parametrize("implicit", [False, True], ids=["mx", "a_fallback"])
@pytest.mark.parametrize("address", NON_PUBLIC)
def test_a_non_public_mail_server_is_refused_without_a_connection(
        sender, store, make_settings, remote_world, listeners, address: str, implicit: bool) -> None:
    publish(remote_world, "inside.test", address, implicit=implicit)
    message_id = sender("someone@inside.test")
    run_worker(store, make_settings, remote_world, deliver_to_private=False)
    assert [r.connections for r in listeners.values()] == [0, 0]  # nothing was dialled
    sent = sender.message(message_id)
    [entry] = sent["delivery"]
    # Permanent, as for an unroutable domain: what DNS points at will not become public by waiting.
    assert sent["status"] == "bounced" and entry["status"] == "bounced"
    assert entry["smtp_reply"] == REFUSED
    [bounce] = sender.bounces()
    assert "5.4.4" in bounce["text_body"] and address not in bounce["text_body"]


@pytest.mark.parametrize("address", ["127.0.0.1", "::1"])
def test_with_deliver_to_private_on_the_same_server_gets_the_mail(
        sender, store, make_settings, remote_world, listeners, address: str) -> None:
    publish(remote_world, "inside.test", address, implicit=False)
    message_id = sender("someone@inside.test")
    run_worker(store, make_settings, remote_world, deliver_to_private=True)
    [received] = listeners[address].wait_for(1)
    assert list(received.rcpt_tos) == ["someone@inside.test"]
    assert sender.message(message_id)["status"] == "sent"


def test_a_public_host_is_tried_when_another_mx_is_private(sender, store, make_settings, remote_world,
                                                            listeners) -> None:
    # mx1 (preferred) on loopback is skipped; mx2 has a public address nothing answers on here, so
    # the attempt is a temporary failure (not the permanent refusal) and loopback saw nothing.
    remote_world.dns.publish("mx1.mixed.test", "A", "127.0.0.1", restart=False)
    remote_world.dns.publish("mx2.mixed.test", "A", "192.88.99.1", restart=False)  # public, unrouted here
    remote_world.dns.publish("mixed.test", "MX", "10 mx1.mixed.test", restart=False)
    remote_world.dns.publish("mixed.test", "MX", "20 mx2.mixed.test")
    message_id = sender("someone@mixed.test")
    run_worker(store, make_settings, remote_world, deliver_to_private=False, delivery_timeout=0.5)
    assert listeners["127.0.0.1"].connections == 0
    [entry] = sender.message(message_id)["delivery"]
    assert entry["status"] == "deferred" and entry["smtp_reply"].startswith("4"), entry


@pytest.fixture
def internal_host(remote_world):
    """An internal SMTP host that refuses with a banner naming internals, on 127.0.0.1."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", remote_world.port))
    sock.listen()
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            with conn:
                conn.sendall(b"554 5.7.0 db7.corp.internal 10.20.30.40 refuses you (build 1.2.3-secret)\r\n")
    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield "127.0.0.1"
    stop.set()
    sock.close()
    thread.join(5)


@pytest.mark.parametrize("where", ["banner", "unreachable"])
def test_what_a_private_host_said_is_not_shown_to_the_sender(sender, store, make_settings, remote_world,
                                                             internal_host, where: str) -> None:
    address = internal_host if where == "banner" else "10.0.0.1"
    publish(remote_world, "inside.test", address, implicit=False)
    message_id = sender("someone@inside.test")
    run_worker(store, make_settings, remote_world, deliver_to_private=True, delivery_timeout=1.0)
    [entry] = sender.message(message_id)["delivery"]
    assert entry["status"] == "deferred"
    assert entry["smtp_reply"] == "451 4.4.1 mx.inside.test could not take the message; will retry"


def test_a_smarthost_on_loopback_is_the_operators_own_and_its_errors_stay_in_the_log(
        sender, store, make_settings, tmp_path, caplog) -> None:
    cert, key = tmp_path / "relay-cert.pem", tmp_path / "relay-key.pem"
    write_self_signed(cert, key, "localhost")
    relay = RemoteReceiver("127.0.0.1", 0, starttls=True, credentials={"relayuser": "right"},
                           tls_files=(cert, key)).start()
    try:
        def attempt(password: str) -> dict:
            settings = make_settings(relay_host="localhost", relay_port=relay.port, relay_username="relayuser",
                                     relay_password=password, relay_ca_file=str(cert), delivery_timeout=3.0,
                                     deliver_to_private=False)
            message_id = sender("ann@anywhere-at-all.example")
            worker = Worker(store, settings)
            try:
                worker.run_once()
            finally:
                worker.close()
            return sender.message(message_id)
        refused = attempt("wrong")
        [entry] = refused["delivery"]
        assert entry["status"] == "deferred"
        assert entry["smtp_reply"] == "451 4.7.8 The outbound relay did not take the message; will retry"
        assert "535" in caplog.text and "localhost" in caplog.text  # the operator reads the details
        assert attempt("right")["status"] == "sent"  # exempt from the address rule
        assert len(relay.deliveries) == 1
    finally:
        relay.stop()


# --- the address rule itself ---------------------------------------------------------------------
@pytest.mark.parametrize("address", [
    "127.0.0.1", "10.0.0.1", "172.16.5.4", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0",
    "224.0.0.1", "239.255.255.250", "240.0.0.1", "255.255.255.255", "192.0.0.8", "192.0.2.1", "198.18.0.1",
    "::1", "::", "fe80::1", "fc00::1", "fd12:3456::1", "fec0::1", "ff02::1", "ff0e::1", "::ffff:127.0.0.1",
    "::ffff:10.0.0.1", "64:ff9b::a9fe:a9fe", "2002:7f00:1::1", "2001:db8::1", "fe80::1%lo", "not-an-ip"])
def test_these_addresses_are_not_public(address: str) -> None:
    assert not addresses.is_public(address)


@pytest.mark.parametrize("address", ["8.8.8.8", "192.88.99.1", "2001:4860:4860::8888", "64:ff9b::808:808",
                                     "::ffff:8.8.8.8", "2002:808:808::1"])
def test_these_addresses_are_public(address: str) -> None:
    assert addresses.is_public(address)


def test_the_appliances_own_addresses_are_refused_even_when_public() -> None:
    settings = Settings(public_ipv4="1.1.1.1", public_ipv6="2606:4700:4700::1111")
    assert not addresses.permitted(settings, "1.1.1.1")
    assert not addresses.permitted(settings, "2606:4700:4700:0::1111")
    assert addresses.permitted(settings, "1.0.0.1")
    assert "127.0.0.1" in addresses.own_addresses(settings)  # read from the interfaces (Linux)
    assert addresses.permitted(settings.model_copy(update={"deliver_to_private": True}), "1.1.1.1")


def test_the_setting_is_off_unless_turned_on() -> None:
    from appliance.config import load_settings
    assert Settings().deliver_to_private is False
    on = load_settings({"GENTBOX_DELIVER_TO_PRIVATE": "true", "GENTBOX_DATA_DIR": "/nonexistent"},
                       require_secret=False)
    assert on.deliver_to_private is True


def test_an_mta_sts_policy_host_on_a_non_public_address_is_not_fetched(remote_world, make_settings) -> None:
    """The policy host mta-sts.<domain> is named by the recipient domain too: with the setting off
    the fetch refuses its loopback address before any connection (a listener there counts them)."""
    from appliance.dns import Resolver
    from appliance.services.mail import mtasts_policy

    def pending_connections(server: socket.socket) -> int:
        """Connections the kernel completed on server (a client that dialled it is in the backlog)."""
        count = 0
        server.setblocking(False)
        while True:
            try:
                conn, _ = server.accept()
            except BlockingIOError:
                return count
            conn.close()
            count += 1

    remote_world.dns.publish("mta-sts.sts-ssrf.example", "A", "127.0.0.1")
    with socket.create_server(("127.0.0.1", 0)) as server:
        settings = make_settings(dns_servers=remote_world.dns_address, dns_lifetime=1.0, deliver_to_private=False,
                                 mta_sts_https_port=server.getsockname()[1], mta_sts_timeout=1.0)
        with pytest.raises(mtasts_policy.PolicyUnavailable, match="no public address"):
            mtasts_policy.fetch_policy(settings, Resolver(settings), "sts-ssrf.example")
        assert pending_connections(server) == 0
        # With the setting on, the same host is dialled (and the fetch fails: nothing answers TLS).
        with pytest.raises(mtasts_policy.PolicyUnavailable):
            mtasts_policy.fetch_policy(settings.model_copy(update={"deliver_to_private": True}),
                                       Resolver(settings), "sts-ssrf.example")
        assert pending_connections(server) == 1
