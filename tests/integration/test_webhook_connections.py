"""The webhook sender's own HTTP/1.1 client (webhooks.Clients, http.client on a pinned address):
kept-alive connections reused only while they are good, the answer read within bounds, the
whole attempt within webhook_timeout, and a Host header a server accepts for an IPv6 target.
Raw socket servers on loopback, so the test controls exactly what the receiver does."""
from __future__ import annotations

import datetime as dt
import socket
import threading
from pathlib import Path
from typing import Callable

from appliance.config import Settings
from appliance.dns import Resolver
from appliance.services.automation import webhooks

Answer = Callable[[socket.socket, threading.Event], bool]  # writes the answer; False: close the connection


class RawServer:
    """A TCP server that reads each request (head and content-length body) and lets `answer` reply."""

    def __init__(self, answer: Answer, family: int = socket.AF_INET, host: str = "127.0.0.1") -> None:
        self.answer, self.requests, self.connections = answer, [], 0
        self.stopping = threading.Event()
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.bind((host, 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            data = b""
            while True:
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                head, _, data = data.partition(b"\r\n\r\n")
                length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                while len(data) < length:
                    data += conn.recv(65536)
                self.requests.append((head.decode(), data[:length]))
                data = data[length:]
                if not self.answer(conn, self.stopping):
                    return

    def stop(self) -> None:
        self.stopping.set()
        self.sock.close()


def _settings(tmp_path: Path, **overrides) -> Settings:  # noqa: ANN003
    return Settings(data_dir=tmp_path, secret_key="k" * 48, webhook_allow_private=True, dns_servers="127.0.0.1:9",
                    **overrides)


def _send(settings: Settings, url: str, clients: webhooks.Clients | None, n: int = 1) -> webhooks.Result:
    now = dt.datetime.now(dt.timezone.utc)
    body = webhooks.body_for({"type": "webhook.test", "event_id": f"evt_{n}"}, now)
    headers = webhooks.headers_for(["whsec_" + "a" * 44], f"msg_{n}", now, body)
    return webhooks.send(settings, Resolver(settings), url, headers, body, now, clients)


def _ok(conn: socket.socket, stopping: threading.Event) -> bool:
    conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
    return True


def test_one_kept_connection_carries_every_send_with_its_whole_body(tmp_path) -> None:
    server, clients = RawServer(_ok), webhooks.Clients()
    try:
        results = [_send(_settings(tmp_path), f"http://127.0.0.1:{server.port}/hook?x=1", clients, n) for n in range(20)]
        assert all(r.ok for r in results), results
        assert server.connections == 1 and len(server.requests) == 20
        head, body = server.requests[0]
        assert head.startswith("POST /hook?x=1 HTTP/1.1\r\n")
        assert f"host: 127.0.0.1:{server.port}" in head.lower() and "webhook-signature: v1," in head
        assert body.startswith(b'{"type":"webhook.test"')
    finally:
        clients.close()
        server.stop()


def test_a_connection_the_receiver_closed_while_idle_is_not_reused(tmp_path) -> None:
    def once(conn: socket.socket, stopping: threading.Event) -> bool:
        _ok(conn, stopping)
        return False  # closes without saying so (no "connection: close"): the client must notice

    server, clients = RawServer(once), webhooks.Clients()
    try:
        results = [_send(_settings(tmp_path), f"http://127.0.0.1:{server.port}/hook", clients, n) for n in range(5)]
        assert all(r.ok for r in results), results
        assert server.connections == 5
    finally:
        clients.close()
        server.stop()


def test_a_long_answer_is_read_no_further_than_64_kib_and_its_connection_is_dropped(tmp_path) -> None:
    def large(conn: socket.socket, stopping: threading.Event) -> bool:
        try:
            conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 10000000\r\n\r\n" + b"x" * 10_000_000)
        except OSError:
            pass  # the client stopped reading and closed
        return False

    server, clients = RawServer(large), webhooks.Clients()
    try:
        assert _send(_settings(tmp_path), f"http://127.0.0.1:{server.port}/hook", clients).ok
        assert _send(_settings(tmp_path), f"http://127.0.0.1:{server.port}/hook", clients, 2).ok
        assert server.connections == 2
    finally:
        clients.close()
        server.stop()


def test_an_answer_that_trickles_in_is_cut_at_the_timeout_in_all(tmp_path) -> None:
    def trickle(conn: socket.socket, stopping: threading.Event) -> bool:
        conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n")
        for _ in range(1000):  # a byte every 0.1 s: no single read waits long, the whole does
            if stopping.wait(0.1):
                break
            try:
                conn.sendall(b"x")
            except OSError:
                break
        return False

    server = RawServer(trickle)
    try:
        result = _send(_settings(tmp_path, webhook_timeout=1.0), f"http://127.0.0.1:{server.port}/hook", None)
        assert not result.ok and result.error == "no answer within 1 s", result
    finally:
        server.stop()


def test_an_ipv6_target_gets_a_bracketed_host_header(tmp_path) -> None:
    server = RawServer(_ok, socket.AF_INET6, "::1")
    try:
        result = _send(_settings(tmp_path), f"http://[::1]:{server.port}/hook", None)
        assert result.ok, result
        assert f"host: [::1]:{server.port}\r\n" in server.requests[0][0].lower() + "\r\n"
    finally:
        server.stop()
