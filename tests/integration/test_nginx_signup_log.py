"""Issue 14.9 (e): nginx's access log never holds a sign-up link's token.

The role's nginx site is rendered as Ansible would (Jinja2, the role's defaults) and served by the
real nginx, wrapped in a minimal main configuration like the role's own check
(files/gentbox-nginx-check), in front of a plain HTTP server standing in for the app. The sign-up
link's query (and a Referer carrying it: the sign-up page's styles and script are fetched with
one) reaches the log as `signup_token=[hidden]`; other queries are logged as they were.
"""
from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import jinja2
import pytest
import yaml

from smtp.tls import write_self_signed

ROLE = Path(__file__).resolve().parents[2] / "ansible" / "roles" / "gentbox"
HOST = "mail.gentbox.test"
SECRETS = ("tok3nOneAAAA", "tok3nTwoBBBB", "tok3nThreeCC")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _App(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:  # noqa: ANN002
        pass


@pytest.fixture
def nginx(tmp_path: Path):
    """The role's site in a real nginx (HTTP and HTTPS on free ports) before a stand-in app."""
    assert shutil.which("nginx") or Path("/usr/sbin/nginx").exists(), \
        "nginx is missing: apt-get install nginx (scripts/test-services.sh does)"
    app = ThreadingHTTPServer(("127.0.0.1", 0), _App)
    threading.Thread(target=app.serve_forever, daemon=True).start()
    tls = tmp_path / "tls"
    tls.mkdir()
    write_self_signed(tls / "fullchain.pem", tls / "privkey.pem", HOST)
    log = tmp_path / "access.log"
    ports = {"gentbox_nginx_http_port": free_port(), "gentbox_nginx_https_port": free_port()}
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    site = jinja2.Template((ROLE / "templates" / "nginx-gentbox.conf.j2").read_text(),
                           undefined=jinja2.StrictUndefined).render(
        {**defaults, **ports, "ansible_managed": "Ansible managed", "gentbox_hostname": HOST,
         "gentbox_http_port": app.server_port, "gentbox_tls_dir": str(tls),
         "gentbox_acme_webroot": str(tmp_path), "gentbox_nginx_access_log": str(log)})
    (tmp_path / "site.conf").write_text(site)
    temp = tmp_path / "temp"
    temp.mkdir()
    # The default log of the http block is the same file: a site that sets no format of its own
    # would write the whole request line there.
    (tmp_path / "nginx.conf").write_text(f"""
user root;
daemon off;
pid {tmp_path}/nginx.pid;
error_log {tmp_path}/error.log;
events {{}}
http {{
    include /etc/nginx/mime.types;
    access_log {log};
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    include {tmp_path}/site.conf;
}}
""")
    proc = subprocess.Popen(["nginx", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", ports["gentbox_nginx_https_port"])) == 0:
                    break
            assert proc.poll() is None, (tmp_path / "error.log").read_text()
            assert time.monotonic() < deadline, "nginx did not listen"
            time.sleep(0.05)
        yield ports, log, tmp_path / "error.log"
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        app.shutdown()
        app.server_close()


def get(port: int, path: str, *, tls: bool, referer: str | None = None) -> int:
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    if tls:
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        raw = context.wrap_socket(raw, server_hostname=HOST)
    with raw:
        extra = f"Referer: {referer}\r\n" if referer else ""
        raw.sendall(f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\n{extra}Connection: close\r\n\r\n".encode())
        reply = b""
        while chunk := raw.recv(65536):
            reply += chunk
    return int(reply.split(b" ", 2)[1])


def test_the_access_log_never_holds_a_signup_token(nginx) -> None:
    ports, log, errors = nginx
    https, http = ports["gentbox_nginx_https_port"], ports["gentbox_nginx_http_port"]
    one, two, three = SECRETS
    assert get(https, f"/signup/?email=ada%40example.org&signup_token={one}", tls=True) == 200
    assert get(https, "/admin/static/gentbox.css", tls=True,
               referer=f"https://{HOST}/signup/?email=ada%40example.org&signup_token={two}") == 200
    assert get(http, f"/signup/?signup_token={three}&email=ada%40example.org", tls=False) == 301
    assert get(https, "/v1/messages/?limit=5", tls=True) == 200
    deadline = time.monotonic() + 10
    while not log.exists() or len(log.read_text().splitlines()) < 4:
        assert time.monotonic() < deadline, "nginx logged fewer than 4 requests"
        time.sleep(0.05)
    text = log.read_text()
    for secret in SECRETS:
        assert secret not in text, text
        assert not errors.exists() or secret not in errors.read_text()
    assert text.count('"GET /signup/?signup_token=[hidden] HTTP/1.1" 200') == 1, text
    assert text.count('"GET /signup/?signup_token=[hidden] HTTP/1.1" 301') == 1, text
    assert f'"https://{HOST}/signup/?signup_token=[hidden]"' in text, text
    assert '"GET /v1/messages/?limit=5 HTTP/1.1" 200' in text  # other queries as they were
