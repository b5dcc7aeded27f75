"""The `gentbox` command: set up, run and administer the appliance.

Commands parse arguments, open a unit of work and call one service; the rules live in
appliance/services/ so the CLI, the API and the web UI cannot disagree.
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

from appliance import cli_mail
from appliance.config import Settings, config_path_from, load_settings
from appliance.db import Store, migrate
from appliance.errors import ConfigError, GentError
from appliance.services import register_handlers


def _settings() -> Settings:
    return _template.settings if _template is not None else load_settings()


_schema_checked = False  # set by `gentbox run` once it migrated: the processes it forks skip it


def _store(settings: Settings, *, migrated: bool = True) -> Store:
    if _template is not None and settings is _template.settings:
        return _template.store  # a child of `gentbox run`: the store its template built (shared pages)
    store = Store(settings)
    if migrated and not _schema_checked:
        migrate(store.engine)  # loads Alembic (~10 MB): done once by `gentbox run`, not in each child
    return store


def _toml_string(value: str) -> str:
    """value as a TOML basic string (JSON's escapes are a subset TOML accepts, given ensure_ascii=False)."""
    return json.dumps(value, ensure_ascii=False)


def cmd_init(args: argparse.Namespace) -> int:
    """Create the data dir, the config file with generated secrets, the schema and an operator."""
    environ = dict(os.environ)
    path = config_path_from(environ)
    data_dir = Path(environ.get("GENTBOX_DATA_DIR", "./var"))
    if path.exists() and args.if_needed:
        return 0
    if path.exists():
        print(f"gentbox: {path} exists already; nothing to do (remove it to start over).", file=sys.stderr)
        return 1
    from appliance.services.identity import accounts
    from appliance.services.validation import normalize_email
    # Fail before writing anything: a bad address, host name or GENTBOX_* value must not leave a
    # config file behind, or the next `init --if-needed` would skip creating the operator.
    admin_email = normalize_email(args.admin_email, "--admin-email")
    given = load_settings(require_secret=False, hostname=args.hostname)
    hostname = given.hostname
    if _store_initialised(given):  # another node initialised this database: join it (docs/scaling.md)
        return _join(given, path, data_dir, args.hostname)
    data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(data_dir, 0o700)
    secret_file = (data_dir / "secret_key").resolve()
    cert_file, key_file = (data_dir / "tls" / "cert.pem").resolve(), (data_dir / "tls" / "key.pem").resolve()
    fd = os.open(secret_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # O_CREAT's mode does not apply to a file left by an earlier attempt
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_urlsafe(48) + "\n")
    try:
        from smtp.tls import write_self_signed
        # A self-signed certificate for STARTTLS: sending MTAs encrypt opportunistically without
        # verifying it. Replace the two files (or the settings) with a CA-signed pair for MTA-STS.
        write_self_signed(cert_file, key_file, hostname)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            "# Gentbox settings; every key can be overridden by a GENTBOX_<KEY> environment variable.\n"
            f"data_dir = {_toml_string(str(data_dir.resolve()))}\n"
            f"secret_key_file = {_toml_string(str(secret_file))}\n"
            f"hostname = {_toml_string(args.hostname)}\n"
            f"tls_cert_file = {_toml_string(str(cert_file))}\n"
            f"tls_key_file = {_toml_string(str(key_file))}\n")
        settings = load_settings()
        store = _store(settings)
        password = secrets.token_urlsafe(12)
        try:
            with store.session() as db:
                accounts.create_operator(db, admin_email, password, "Administrator")
        finally:
            store.dispose()
    except BaseException:
        # Leave no half-initialised appliance: a retry must start from scratch.
        path.unlink(missing_ok=True)
        secret_file.unlink(missing_ok=True)
        cert_file.unlink(missing_ok=True)
        key_file.unlink(missing_ok=True)
        raise
    print(f"Initialised {data_dir.resolve()} (config {path}).")
    print(f"Admin login (shown once): {admin_email} / {password}")
    return 0


def _store_initialised(settings: Settings) -> bool:
    """Has a first node initialised this store (an operator exists)? Migrates it first."""
    from appliance import nodes
    store = _store(settings)
    try:
        with store.session() as db:
            return nodes.is_initialised(db)
    finally:
        store.dispose()


def _join(given: Settings, path: Path, data_dir: Path, hostname: str) -> int:
    """Write this node's config for a store another node initialised: its own data dir and TLS
    pair, the first node's secret key (which must open what the store holds), no new operator."""
    from appliance import nodes
    if len(given.secret_key) < 32:
        print("gentbox: this database is initialised already (it has an operator). To add this host as "
              "another node, give it the first node's secret key: GENTBOX_SECRET_KEY_FILE=<a copy of its "
              "secret_key file> (docs/scaling.md).", file=sys.stderr)
        return 1
    store = _store(given, migrated=False)
    try:
        with store.session() as db:
            problem = nodes.secret_key_problem(db, given)
    finally:
        store.dispose()
    if problem:
        print(f"gentbox: this database is initialised already, and the secret key given is not its first "
              f"node's: {problem}. Copy the first node's secret_key file (docs/scaling.md).", file=sys.stderr)
        return 1
    _write_node_files(given, path, data_dir, hostname)
    print(f"Joined the initialised database as another node: {data_dir.resolve()} (config {path}).")
    print("Sign in with the operator login the first node's `gentbox init` printed.")
    return 0


def _write_node_files(given: Settings, path: Path, data_dir: Path, hostname: str) -> None:
    """A joining node's data dir: a copy of the key, a self-signed TLS pair, the config file."""
    data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(data_dir, 0o700)
    secret_file = (data_dir / "secret_key").resolve()
    cert_file, key_file = (data_dir / "tls" / "cert.pem").resolve(), (data_dir / "tls" / "key.pem").resolve()
    fd = os.open(secret_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(given.secret_key + "\n")
    from smtp.tls import write_self_signed
    write_self_signed(cert_file, key_file, given.hostname)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The database URL goes into the file too: this node is nothing without that store.
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))  # it holds the database password
    path.write_text(
        "# Gentbox settings; every key can be overridden by a GENTBOX_<KEY> environment variable.\n"
        f"data_dir = {_toml_string(str(data_dir.resolve()))}\n"
        f"database_url = {_toml_string(given.database_url)}\n"
        f"secret_key_file = {_toml_string(str(secret_file))}\n"
        f"hostname = {_toml_string(hostname)}\n"
        f"tls_cert_file = {_toml_string(str(cert_file))}\n"
        f"tls_key_file = {_toml_string(str(key_file))}\n")


def cmd_migrate(args: argparse.Namespace) -> int:
    _store(_settings())
    print("Schema is up to date.")
    return 0


def cmd_admin_create(args: argparse.Namespace) -> int:
    from appliance.services.identity import accounts
    if args.password_file:
        try:
            password = Path(args.password_file).read_text().strip()
        except OSError as exc:
            print(f"gentbox: --password-file: cannot read {args.password_file}: {exc.strerror}",
                  file=sys.stderr)
            return 1
    else:
        password = secrets.token_urlsafe(12)
    store = _store(_settings())
    with store.session() as db:
        user = accounts.create_operator(db, args.email, password, args.name or "")
    print(f"Created operator {user.email} ({user.id}).")
    if not args.password_file:
        print(f"Password (shown once): {password}")
    return 0


def cmd_waitlist(args: argparse.Namespace) -> int:
    from appliance.services.identity import waitlist
    settings = _settings()
    store = _store(settings)
    with store.session() as db:
        if args.action == "list":
            entries = waitlist.list_entries(db, args.status)
            for entry in entries:
                print(f"{entry.email}\t{entry.status}\t{entry.requested_at:%Y-%m-%d %H:%M}Z\t"
                      f"requests={entry.request_count}")
            if not entries:
                print("The waitlist is empty.")
        elif args.action == "approve":
            approval = waitlist.approve(db, settings, args.email, decided_by="cli")
            print(f"Approved {approval.entry.email}; the sign-up email is queued ({approval.mail_id}).")
            print(f"Sign-up link: {approval.signup_url}")
        else:
            entry = waitlist.reject(db, args.email, decided_by="cli")
            print(f"Rejected {entry.email}.")
    return 0


def cmd_web(args: argparse.Namespace) -> int:
    """Serve the web app under gunicorn in the foreground."""
    settings = _settings()
    _store(settings).dispose()
    from gunicorn.app.base import BaseApplication

    bind = args.bind or f"{settings.bind}:{settings.http_port}"

    class _App(BaseApplication):
        def load_config(self) -> None:
            self.cfg.set("bind", [bind])
            self.cfg.set("workers", args.workers or settings.web_workers)
            self.cfg.set("worker_class", "gthread")
            # Each open event stream holds a thread (issue 15.5): they get threads of their own.
            self.cfg.set("threads", settings.web_threads + settings.event_stream_max_per_process)
            # Load the app once in the master and fork: workers share its pages (copy-on-write),
            # and each worker drops the master's engines so no database connection crosses a fork.
            self.cfg.set("preload_app", True)
            self.cfg.set("post_fork", lambda _server, worker: _web_worker_started(self.application, worker))
            self.cfg.set("accesslog", None)
            self.cfg.set("graceful_timeout", 10)
            self.cfg.set("proc_name", "gentbox-web")
            if "control_socket_disable" in self.cfg.settings:  # gunicorn >= 25: no ~/.gunicorn socket
                self.cfg.set("control_socket_disable", True)

        def load(self):  # noqa: ANN202
            from appliance.logging_setup import setup_logging
            loaded = load_settings()
            setup_logging(loaded)  # gunicorn's own records too: its loggers propagate to this handler
            self.application = _web_app(loaded)
            return self.application

    if args.no_master:
        _serve_one_worker(_App())
    else:
        _App().run()
    return 0


def _serve_one_worker(app) -> None:  # noqa: ANN001
    """Serve as one gunicorn worker in this process, without a gunicorn master (`gentbox web
    --no-master`): on a small machine `gentbox run` forks it and restarts it if it dies, so a
    master process (~25 MB PSS, docs/benchmarks.md) would only repeat that supervision."""
    from gunicorn import sock

    cfg = app.cfg
    log = cfg.logger_class(cfg)
    worker = cfg.worker_class(1, os.getppid(), sock.create_sockets(cfg, log), app, cfg.timeout / 2.0, cfg, log)
    worker.pid = os.getpid()
    app.wsgi()  # loads the app (the preloaded one under `gentbox run`), as the master would
    cfg.post_fork(None, worker)
    try:
        worker.init_process()  # serves until SIGTERM/SIGINT (or the parent goes away), then exits
    finally:
        worker.tmp.close()


def _web_worker_started(app, worker=None) -> None:  # noqa: ANN001
    """In a freshly forked gunicorn worker: drop the master's connections, start the heartbeat."""
    from appliance.heartbeat import start_heartbeat
    from appliance.services.automation.stream import watch_server
    if worker is not None:  # SIGTERM clears worker.alive: open event streams then end cleanly
        watch_server(lambda: worker.alive)
    store = app.extensions["gentbox"]
    store.dispose()
    # Each beat carries this worker's HTTP latency histogram, which /metrics adds up.
    app.extensions["gentbox_heartbeat"] = start_heartbeat(store, "web", app.extensions["gentbox_http_metrics"].to_json)


def cmd_mcp(args: argparse.Namespace) -> int:
    """Serve MCP: over stdio with GENTBOX_TOKEN (a local agent), or over streamable HTTP at /mcp."""
    from api import mcp_server  # the mcp SDK is only imported by this command
    from appliance.logging_setup import setup_logging

    settings = _settings()
    if args.http:
        setup_logging(settings)
        host = args.bind or settings.bind
        port = settings.mcp_port if args.port is None else args.port
        print(f"Gentbox MCP (streamable HTTP) on http://{host}:{port}/mcp", flush=True)
        mcp_server.serve_http(settings, host, port, _web_app(settings), _mcp_listener)
        return 0
    token = os.environ.get("GENTBOX_TOKEN", "").strip()
    if not token:
        print("gentbox mcp: set GENTBOX_TOKEN to the agent token the tools act with", file=sys.stderr)
        return 2
    import logging
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)  # stdout carries the protocol
    mcp_server.serve_stdio(settings, token)
    return 0


def cmd_smtp(args: argparse.Namespace) -> int:
    """Serve the inbound SMTP listener in the foreground until SIGTERM or Ctrl-C."""
    from appliance.logging_setup import setup_logging

    settings = _settings()
    store = _store(settings)
    setup_logging(settings)  # JSON lines on stdout (or text); aiosmtpd's per-command INFO lines off
    from smtp.auth import make_authenticator
    from smtp.server import Listener
    try:
        submission = _start_submission(store, settings, args.bind)
    except OSError as exc:
        print(f"gentbox: cannot listen for SMTP submission on {args.bind or settings.bind}:"
              f"{settings.submission_port}/{settings.submissions_port}: {exc.strerror or exc}", file=sys.stderr)
        store.dispose()
        return 1
    beside: list = []  # what runs as threads beside the listener (--with-imap, --with-worker): stop callables

    def ready(address: tuple[str, int]) -> None:
        # The threads start once the listener has set up its store (its committer registers an
        # engine hook that other threads' first connections must not be running meanwhile).
        if args.with_imap:
            beside.append(_start_imap_thread(store, settings, args.bind))
        if args.with_worker:
            beside.append(_start_worker_thread(store, settings))
        print(f"Gentbox SMTP listening on {address[0]}:{address[1]}", flush=True)
    try:
        listener = Listener(store, settings, host=args.bind, port=args.port,
                            authenticate=make_authenticator(settings))
        listener.serve_forever(ready)
    except OSError as exc:
        host = args.bind or settings.bind
        port = settings.smtp_port if args.port is None else args.port
        what = f"IMAP on {host}:{settings.imap_port}/{settings.imaps_port}" if args.with_imap and not beside \
            else f"SMTP on {host}:{port}"
        print(f"gentbox: cannot listen for {what}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    finally:
        for stop in reversed(beside):
            stop()
        if submission is not None:
            submission.stop()
        store.dispose()
    return 0


def _start_imap_thread(store, settings: Settings, bind: str | None):  # noqa: ANN001, ANN202
    """IMAP as a thread of the SMTP process (`gentbox smtp --with-imap`: one process less); its stop."""
    from imap.thread import ImapThread

    imap = ImapThread(store, settings, settings.bind if bind is None else bind)  # "": every address
    addresses = imap.start()
    print("\n".join(f"Gentbox IMAP listening on {a[0]}:{a[1]}" for a in addresses), flush=True)
    return imap.stop


def _start_worker_thread(store, settings: Settings):  # noqa: ANN001, ANN202
    """The worker as a thread of the SMTP process (`gentbox smtp --with-worker`); its stop, which
    lets the deliveries in flight end as SIGTERM does to `gentbox worker`."""
    import threading

    from appliance.worker import Worker

    worker = Worker(store, settings)
    thread = threading.Thread(target=worker.serve_forever, name="worker", daemon=True)
    thread.start()
    print(f"Gentbox worker delivering {_delivery_route(settings)}", flush=True)

    def stop() -> None:
        worker.stopping.set()
        thread.join(60)
        worker.close()
    return stop


def _delivery_route(settings: Settings) -> str:
    return f"via the relay {settings.relay_host}:{settings.relay_port}" if settings.relay_host else \
        f"to MX hosts on port {settings.delivery_port}"


def _start_submission(store, settings, bind: str | None):  # noqa: ANN001, ANN202
    """SMTP submission for mail clients beside the listener (a thread of this process); None
    without a certificate: passwords never cross the network in clear text."""
    from smtp.submission import Submission

    if settings.tls_cert_file is None:
        print("Gentbox submission is off: no TLS certificate configured (tls_cert_file)", flush=True)
        return None
    submission = Submission(store, settings, host=bind)
    (host, port), (_h, tls_port) = submission.start()
    print(f"Gentbox submission listening on {host}:{port} (STARTTLS) and {host}:{tls_port} (TLS)", flush=True)
    return submission


def cmd_imap(args: argparse.Namespace) -> int:
    """Serve IMAP (STARTTLS port and TLS port) in the foreground until SIGTERM or Ctrl-C."""
    from appliance.logging_setup import setup_logging

    settings = _settings()
    store = _store(settings)
    setup_logging(settings)
    from imap.server import serve_forever
    host = settings.bind if args.bind is None else args.bind  # --bind "": every address (the unit's)
    try:
        serve_forever(store, settings, host, settings.imap_port, settings.imaps_port, lambda addresses: print(
            "\n".join(f"Gentbox IMAP listening on {a[0]}:{a[1]}" for a in addresses), flush=True))
    except OSError as exc:
        print(f"gentbox: cannot listen for IMAP on {host}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    finally:
        store.dispose()
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    """Deliver queued mail, scheduled events and alerts in the foreground until SIGTERM or Ctrl-C
    (--once: until nothing is due)."""
    from appliance.logging_setup import setup_logging
    from appliance.worker import Worker

    settings = _settings()
    store = _store(settings)
    setup_logging(settings)
    worker = Worker(store, settings)
    try:
        if args.once:
            handled = worker.run_until_idle()
            print(f"gentbox worker: {handled} queue row(s), scheduled event(s) and webhook delivery(ies) handled",
                  flush=True)
            return 0
        signal.signal(signal.SIGTERM, lambda *_a: worker.stopping.set())
        signal.signal(signal.SIGINT, lambda *_a: worker.stopping.set())
        print(f"Gentbox worker delivering {_delivery_route(settings)}", flush=True)
        worker.serve_forever()
        return 0
    finally:
        worker.close()
        store.dispose()


def _wait_for_port(host: str, port: int, timeout: float = 20.0, give_up=lambda: False) -> bool:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not give_up():
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.2)
    return False


class _Child:
    """One process of `gentbox run`, forked from the supervisor (the same calls as subprocess.Popen's
    that the supervision loop uses: poll, terminate, kill, wait)."""

    def __init__(self, argv: list[str]) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        self.returncode: int | None = None
        self.pid = os.fork()
        if self.pid == 0:  # the child: run the command as `gentbox <argv>` would, never return
            code = 1
            try:
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                if _mcp_listener is not None and argv[0] != "mcp":
                    _mcp_listener.close()  # only the MCP process serves the port the supervisor holds
                code = main(argv)
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def terminate(self) -> None:
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def _signal(self, sig: int) -> None:
        if self.poll() is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def wait(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while self.poll() is None:
            if time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"gentbox child {self.pid}", timeout)
            time.sleep(0.05)
        return self.returncode


_preloaded_app = None  # the web app `gentbox run` built before forking (web and MCP serve it)


class _Template(NamedTuple):
    """What `gentbox run` builds once before forking, for every child to use instead of making
    its own (each copy would be private to its process: ~1.5 MiB for the argument parser, ~4 MiB
    for a store's engines, docs/benchmarks.md)."""

    settings: Settings
    store: Store
    parser: argparse.ArgumentParser


_template: _Template | None = None


def _web_app(settings: Settings):  # noqa: ANN202
    """The app to serve: the supervisor's preloaded one (shared pages), or a new one."""
    from api.app import create_app
    return _preloaded_app if _preloaded_app is not None else create_app(settings)


def _preload(settings: Settings) -> None:
    """Import once, in the supervisor, what its children import, and build the web app, then fork
    them: the pages holding the code and the app are shared copy-on-write instead of made by each
    process (docs/architecture.md, "Memory"). gc.freeze() keeps the collector from touching (and
    so copying) those objects."""
    import gc

    import api.app
    import appliance.worker  # noqa: F401 - imported for its side effect: the modules are loaded
    import gunicorn.app.base  # noqa: F401
    import gunicorn.glogging  # noqa: F401 - what the web child imports as it starts
    import gunicorn.workers.gthread  # noqa: F401
    import imap.server  # noqa: F401
    import imap.thread  # noqa: F401
    import smtp.auth  # noqa: F401
    import smtp.server  # noqa: F401
    import smtp.submission  # noqa: F401
    global _preloaded_app, _template
    store = Store(settings)
    _preloaded_app = api.app.create_app(settings, store)
    store.dispose()  # no database connection crosses the fork
    _template = _Template(settings, store, build_parser())
    gc.collect()
    _trim_malloc()  # what the collector freed goes back to the system before the pages are shared
    gc.freeze()


def _trim_malloc() -> None:
    """Return glibc malloc's free pages to the system (nothing elsewhere: musl has no malloc_trim)."""
    import ctypes

    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def cmd_run(args: argparse.Namespace) -> int:
    """Start every process of the appliance in the foreground; Ctrl-C stops them all."""
    settings = _settings()
    global _schema_checked, _template
    code = _migrate_apart(settings)
    if code:
        return code
    _schema_checked = True  # for the children forked below (reset when this command returns)
    try:
        return _supervise(settings, args.mail_bind)
    finally:
        _schema_checked, _template = False, None


def _layout(settings: Settings, mail_bind: str | None = None) -> dict[str, list[str]]:
    """The processes `gentbox run` forks, by name: the command line each runs. With one web worker
    there is no gunicorn master, and with one SMTP process IMAP and the worker are threads of it
    (both the default on a small VPS, `config.default_process_count`); MCP starts on its first
    connection (`_Supervision.start_mcp_on_demand`)."""
    bind = [] if mail_bind is None else ["--bind", mail_bind]
    layout = {"web": ["web"] + (["--no-master"] if settings.web_workers == 1 else [])}
    if settings.smtp_processes == 1:
        layout["smtp"] = ["smtp", "--with-imap", "--with-worker", *bind]
    else:
        layout.update(smtp=["smtp", *bind], worker=["worker"], imap=["imap", *bind])
    return layout


_mcp_listener: socket.socket | None = None  # the MCP port, held by `gentbox run` until the first connection


def _listen_mcp(settings: Settings) -> socket.socket:
    """Bind the MCP port here: the MCP process (the SDK and uvicorn, ~60 MB) is forked when a
    client first connects, and serves this socket (the connection waits in its backlog)."""
    family, _t, _p, _n, address = socket.getaddrinfo(settings.bind or None, settings.mcp_port,
                                                     type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(address)
    sock.listen(128)
    return sock


_RESTARTS_PER_MINUTE = 3  # a child dying more often than that cannot start (a port in use): stop


class _Supervision:
    """The children of `gentbox run`: restart one that dies, stop them all on a signal."""

    def __init__(self, layout: dict[str, list[str]]) -> None:
        self.layout = layout
        self.procs: dict[str, _Child] = {name: _Child(argv) for name, argv in layout.items()}
        self.exits: dict[str, list[float]] = {}
        self.stopping = False
        self.failed = False  # stopped because a child kept dying: `gentbox run` exits with 1

    def stop(self, *_a: object) -> None:
        self.stopping = True
        for proc in self.procs.values():
            proc.terminate()

    def check(self) -> None:
        """Restart each child that exited (the MCP one is started again on demand)."""
        for name, proc in list(self.procs.items()):
            if self.stopping or proc.poll() is None:
                continue
            now = time.monotonic()
            recent = self.exits[name] = [t for t in self.exits.get(name, []) if now - t < 60] + [now]
            if len(recent) > _RESTARTS_PER_MINUTE:
                print(f"gentbox {name} exited with {proc.returncode} {len(recent)} times in a minute; stopping.",
                      file=sys.stderr)
                self.failed = True
                self.stop()
            elif name == "mcp":
                print(f"gentbox mcp exited with {proc.returncode}; it starts again on the next connection.",
                      file=sys.stderr)
                del self.procs[name]
            else:
                print(f"gentbox {name} exited with {proc.returncode}; restarting it.", file=sys.stderr)
                self.procs[name] = _Child(self.layout[name])

    def start_mcp_on_demand(self, listener: socket.socket, timeout: float) -> None:
        """Wait up to timeout for a first MCP connection while no MCP process runs; then fork one."""
        import select
        if "mcp" in self.procs or self.stopping:
            time.sleep(timeout)
            return
        try:
            readable, _w, _x = select.select([listener], [], [], timeout)
        except InterruptedError:
            return
        if readable and not self.stopping:
            self.procs["mcp"] = _Child(["mcp", "--http"])

    def wait_all(self) -> None:
        for proc in self.procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


def _migrate_apart(settings: Settings) -> int:
    """Bring the schema up to date in a short-lived child, so that Alembic and the migration
    scripts (~10 MB) never enter the supervisor, whose pages every process of `gentbox run` maps."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            _store(settings).dispose()
            code = 0
        except ConfigError as exc:
            print(f"gentbox: configuration error: {exc}", file=sys.stderr)
            code = 2
        except GentError as exc:
            print(f"gentbox: {exc.message}" + (f" ({exc.fix})" if exc.fix else ""), file=sys.stderr)
        except BaseException:  # noqa: BLE001 - said here, as main() would have let it end the command
            import traceback
            traceback.print_exc()
        finally:
            sys.stderr.flush()
            os._exit(code)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def _supervise(settings: Settings, mail_bind: str | None = None) -> int:
    """Fork the processes, print where they listen, restart one that dies, stop them all on a signal."""
    global _mcp_listener
    _preload(settings)
    try:
        _mcp_listener = _listen_mcp(settings)
    except OSError as exc:
        print(f"gentbox: cannot listen for MCP on {settings.bind}:{settings.mcp_port}: {exc.strerror or exc}",
              file=sys.stderr)
        return 1
    try:
        supervision = _Supervision(_layout(settings, mail_bind))
        signal.signal(signal.SIGTERM, supervision.stop)
        signal.signal(signal.SIGINT, supervision.stop)
        host = "127.0.0.1" if settings.bind in ("0.0.0.0", "::") else settings.bind
        if all(_wait_for_port(host, port, give_up=lambda: supervision.stopping)
               for port in (settings.http_port, settings.smtp_port, settings.imap_port)):
            _print_banner(settings, host)
        while not supervision.stopping:
            supervision.check()
            supervision.start_mcp_on_demand(_mcp_listener, 0.5)
        supervision.wait_all()
    finally:
        _mcp_listener.close()
        _mcp_listener = None
    return 1 if supervision.failed else 0


def _print_banner(settings: Settings, host: str) -> None:
    tls = "STARTTLS" if settings.tls_cert_file else "no STARTTLS: no certificate configured"
    print(f"\nGentbox is running.\n  API:      {settings.base_url}/v1/ "
          f"(OpenAPI: {settings.base_url}/v1/openapi.json)\n"
          f"  Web UI:   {settings.base_url}/admin/ (sign in at {settings.base_url}/login/)\n"
          f"  SMTP:     {host}:{settings.smtp_port} (inbound mail for your inboxes; {tls})\n"
          f"  Submission: {host}:{settings.submission_port} (STARTTLS) and {host}:{settings.submissions_port} "
          "(TLS) for mail clients: the inbox's address and an app password (web UI: App passwords)\n"
          f"  IMAP:     {host}:{settings.imap_port} (STARTTLS; mail clients log in with an inbox address)\n"
          f"  IMAP:     {host}:{settings.imaps_port} (TLS)\n"
          f"  MCP:      http://{host}:{settings.mcp_port}/mcp (streamable HTTP; bearer agent token; its process "
          "starts on the first connection)\n"
          f"  Worker:   delivers outbound mail "
          f"({'via ' + settings.relay_host if settings.relay_host else 'direct to MX hosts'})\n"
          "  Log in with the admin address and password that `gentbox init` printed\n"
          "  (in the web UI, or POST /auth/login/ for API tokens). Press Ctrl-C to stop.\n", flush=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gentbox", description="Gentbox mail appliance")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("init", help="create the config, secrets, schema and first operator")
    p.add_argument("--admin-email", default="admin@gentbox.test")
    p.add_argument("--hostname", default="mail.gentbox.test")
    p.add_argument("--if-needed", action="store_true", help="do nothing when already initialised")
    p.set_defaults(func=cmd_init)
    sub.add_parser("migrate", help="bring the schema up to date").set_defaults(func=cmd_migrate)
    p = sub.add_parser("run", help="start every process in the foreground")
    p.add_argument("--mail-bind", help="address SMTP, submission and IMAP listen on (default: GENTBOX_BIND; "
                   "\"\": every address, as the gentbox-run.service unit does)")
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("web", help="serve the web app and API under gunicorn")
    p.add_argument("--bind", help="host:port or fd://N (default from settings)")
    p.add_argument("--workers", type=int)
    p.add_argument("--no-master", action="store_true",
                   help="one worker in this process, no gunicorn master (a supervisor restarts it)")
    p.set_defaults(func=cmd_web)
    p = sub.add_parser("mcp", help="serve MCP tools: stdio with GENTBOX_TOKEN, or --http at /mcp")
    p.add_argument("--http", action="store_true", help="streamable HTTP on bind:mcp_port instead of stdio")
    p.add_argument("--bind", help="address to listen on with --http (default: GENTBOX_BIND)")
    p.add_argument("--port", type=int, help="port with --http (default: GENTBOX_MCP_PORT; 0 picks a free one)")
    p.set_defaults(func=cmd_mcp)
    p = sub.add_parser("smtp", help="serve the inbound SMTP listener")
    p.add_argument("--bind", help="address to listen on (default: GENTBOX_BIND)")
    p.add_argument("--port", type=int, help="port (default: GENTBOX_SMTP_PORT; 0 picks a free one)")
    p.add_argument("--with-imap", action="store_true",
                   help="serve IMAP in this process too (one process less on a small machine)")
    p.add_argument("--with-worker", action="store_true",
                   help="run the worker (outbound delivery, schedules, webhooks) in this process too")
    p.set_defaults(func=cmd_smtp)
    p = sub.add_parser("imap", help="serve IMAP for mail clients (imap_port with STARTTLS, imaps_port with TLS)")
    p.add_argument("--bind", help="address to listen on (default: GENTBOX_BIND)")
    p.set_defaults(func=cmd_imap)
    p = sub.add_parser("worker", help="deliver queued outbound mail")
    p.add_argument("--once", action="store_true", help="deliver what is due, then exit")
    p.set_defaults(func=cmd_worker)
    admin = sub.add_parser("admin", help="appliance operators").add_subparsers(dest="action", required=True)
    p = admin.add_parser("create", help="create an operator")
    p.add_argument("email")
    p.add_argument("--name")
    p.add_argument("--password-file", help="read the password from this file instead of generating one")
    p.set_defaults(func=cmd_admin_create)
    wl = sub.add_parser("waitlist", help="review access requests").add_subparsers(dest="action", required=True)
    p = wl.add_parser("list")
    p.add_argument("--status", choices=("pending", "approved", "rejected", "redeemed"))
    p.set_defaults(func=cmd_waitlist)
    for action in ("approve", "reject"):
        p = wl.add_parser(action)
        p.add_argument("email")
        p.set_defaults(func=cmd_waitlist)
    cli_mail.add_parsers(sub, runner=cmd_mail)
    __import__("appliance.cli_ops").cli_ops.add_parsers(sub)
    return parser


def cmd_mail(args: argparse.Namespace) -> int:
    """Domain and inbox commands (appliance/cli_mail.py) on a migrated store."""
    settings = _settings()
    store = _store(settings)
    try:
        return args.func_mail(args, settings, store)
    finally:
        store.dispose()


# Commands that change something, recorded in the audit log's box chain once they succeed.
AUDITED = {("admin", "create"), ("waitlist", "approve"), ("waitlist", "reject"), ("domain", "add"),
           ("domain", "verify"), ("domain", "rotate-dkim"), ("inbox", "create"), ("inbox", "pause"),
           ("inbox", "resume"), ("inbox", "delete"), ("restore", None)}
_NOT_A_CHANGE = {"func", "func_mail", "command", "action", "password_file", "passphrase_file"}


def _audit_command(args: argparse.Namespace) -> None:
    """One audit entry for an operator's command that changed something (docs/audit.md). The
    services it called ran their own transactions, so this entry follows them in its own."""
    from appliance.db import Store
    from appliance.services.governance import audit
    settings = _settings()
    store = Store(settings)
    try:
        with store.session() as db:
            changes = {k: v for k, v in vars(args).items() if k not in _NOT_A_CHANGE and v is not None}
            audit.record(db, settings.secret_key, action=f"cli.{args.command}" + (f".{args.action}" if getattr(
                args, "action", None) else ""), actor=audit.Actor("system", "system:cli", os.environ.get("USER", "")),
                tenant_id=None, edge="cli", changes=changes)
    finally:
        store.dispose()


def main(argv: list[str] | None = None) -> int:
    args = (_template.parser if _template is not None else build_parser()).parse_args(argv)
    if _template is None:  # a child of `gentbox run`: its template registered them
        register_handlers()
    try:
        code = args.func(args)
        if code == 0 and (args.command, getattr(args, "action", None)) in AUDITED:
            try:
                _audit_command(args)
            except Exception as exc:  # noqa: BLE001 - the change is made; say the entry is missing
                print(f"gentbox: warning: the change is made, but its audit entry could not be written: {exc}",
                      file=sys.stderr)
        return code
    except ConfigError as exc:
        print(f"gentbox: configuration error: {exc}", file=sys.stderr)
        return 2
    except GentError as exc:
        print(f"gentbox: {exc.message}" + (f" ({exc.fix})" if exc.fix else ""), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
