"""Settings: one frozen, typed object loaded once from a TOML file, then GENTBOX_* variables.

Any setting can also come from a file named by GENTBOX_<NAME>_FILE (for secrets). Values are
converted and validated here, so a bad value stops the process at start with a clear message.
Nothing else in the code base reads os.environ.
"""
from __future__ import annotations

import json
import os
import re
import tomllib
from pathlib import Path
from typing import Any, Mapping

import idna
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from appliance.errors import ConfigError

ENV_PREFIX = "GENTBOX_"
SMALL_MACHINE_BYTES = 2 * 1024**3  # below this much memory, one web worker and one SMTP process


def _memory_bytes() -> int:
    """The memory this machine (or its cgroup v2 limit, in a container) lets the appliance use."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        return min(total, int(limit)) if limit.isdigit() else total
    except OSError:
        return total


def default_process_count() -> int:
    """Processes for the web app and for the SMTP listener when the operator sets none: one on a
    small VPS (each process costs 20-40 MB, docs/benchmarks.md "Memory"), else one per core up to 4."""
    if _memory_bytes() < SMALL_MACHINE_BYTES:
        return 1
    return max(1, min(os.cpu_count() or 1, 4))


class ModelEndpoint(BaseModel):
    """One operator-configured OpenAI-compatible endpoint (issue 21.5, docs/configuration.md)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,39}$")  # what tenants choose; never "builtin"
    base_url: str  # up to /v1, e.g. http://127.0.0.1:11434/v1 (Ollama) or https://api.example.com/v1
    model: str = Field(min_length=1, max_length=200)
    api_key_file: Path | None = None  # read at each call (rotated keys apply at once); none: no key
    price_per_million_tokens: float = Field(0.0, ge=0)
    timeout: float = Field(20.0, gt=0, le=300)  # seconds per network step (connect, send, read)
    allow_private: bool = False  # the operator's say-so for a loopback or LAN endpoint (no SSRF check)

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if not value.startswith(("http://", "https://")) or len(value.split("://", 1)[1]) == 0:
            raise ValueError("must be an http(s) URL such as http://127.0.0.1:11434/v1")
        return value


class Settings(BaseModel):
    """Everything the appliance can be told. Field names are the TOML keys."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    data_dir: Path = Path("./var")
    database_url: str = ""  # empty: SQLite file in data_dir
    bind: str = "127.0.0.1"
    http_port: int = Field(8080, ge=0, le=65535)
    smtp_port: int = Field(2525, ge=0, le=65535)
    # SMTP submission for people's mail clients (smtp/submission.py): STARTTLS, and TLS from the
    # first byte (RFC 8314). Production: 587 and 465. Both need tls_cert_file/tls_key_file.
    submission_port: int = Field(1587, ge=0, le=65535)
    submissions_port: int = Field(1465, ge=0, le=65535)
    # Imports from another IMAP server (appliance/services/mail/imports.py): messages a second per
    # import, seconds a worker's claim on a job lasts without progress, seconds per IMAP command.
    import_rate: float = Field(50.0, gt=0, le=10_000)
    import_lease_seconds: int = Field(120, ge=1, le=3600)
    import_timeout: float = Field(60.0, gt=0, le=600)
    hostname: str = "mail.gentbox.test"
    public_url: str = ""  # empty: http://<bind>:<http_port>
    secret_key: str = Field("", repr=False)

    web_workers: int = Field(default_factory=default_process_count, ge=1, le=64)
    web_threads: int = Field(4, ge=1, le=64)
    access_token_ttl: int = Field(3600, ge=60)
    refresh_token_ttl: int = Field(30 * 86400, ge=3600)
    signup_token_ttl: int = Field(7 * 86400, ge=600)
    max_body_bytes: int = Field(1024 * 1024, ge=1024)

    # The SMTP listener (smtp/). STARTTLS needs both files; `gentbox init` makes a self-signed pair.
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = Field(None, validate_default=True)
    max_message_bytes: int = Field(25 * 1024 * 1024, ge=1024)  # advertised in SIZE; larger -> 552
    smtp_max_recipients: int = Field(100, ge=1, le=10_000)  # per message; more -> 452 4.5.3
    smtp_max_connections_per_ip: int = Field(20, ge=1)  # at once per IPv4 address or IPv6 /64, per process; more -> 421
    smtp_connection_rate_per_ip: int = Field(300, ge=1)  # new connections per minute per IP -> 421
    smtp_command_timeout: float = Field(300.0, gt=0, le=3600)  # seconds of silence between commands
    smtp_data_timeout: float = Field(600.0, gt=0, le=7200)  # seconds for one message's DATA in all
    smtp_processes: int = Field(default_factory=default_process_count, ge=1, le=64)  # sharing the port

    rate_limit_token: int = Field(1200, ge=1)  # requests per minute per token
    rate_limit_ip: int = Field(300, ge=1)  # per minute per IP on public and /auth/ routes
    rate_limit_waitlist: int = Field(10, ge=1)  # waitlist requests per hour per IP
    login_failures_ip: int = Field(20, ge=1)  # failed logins per 15 minutes per IP
    login_failures_account: int = Field(5, ge=1)  # failed logins of an account before each try waits
    web_session_ttl: int = Field(12 * 3600, ge=300)  # seconds a web UI sign-in lasts (revocable at once)

    # Outbound delivery (the worker). Retries wait retry_schedule[n] seconds after the n-th
    # failed attempt (the last value repeats) until queue_lifetime, then bounce.
    delivery_port: int = Field(25, ge=1, le=65535)  # the port of remote MX hosts (tests use their own)
    delivery_timeout: float = Field(60.0, gt=0, le=900)  # seconds per connect and per SMTP reply
    delivery_concurrency: int = Field(16, ge=1, le=256)  # SMTP transactions at once per worker
    retry_schedule: tuple[int, ...] = (60, 300, 900, 1800, 3600, 3600, 3600, 14400)
    queue_lifetime: int = Field(5 * 86400, ge=60)  # seconds before undeliverable mail bounces
    delay_notice_after: int = Field(4 * 3600, ge=0)  # seconds; 0 sends no delay notice
    queue_lease: int = Field(600, ge=10)  # seconds a worker holds a claimed row before others may take it
    worker_poll_interval: float = Field(1.0, gt=0, le=60)
    approval_ttl: int = Field(86400, ge=60)  # seconds a held agent action waits for a decision
    # A smarthost replaces direct MX delivery (for VPS providers that block port 25 out).
    relay_host: str = ""
    relay_port: int = Field(587, ge=1, le=65535)
    relay_tls: str = "starttls"  # starttls | implicit | none
    relay_username: str = ""
    relay_password: str = Field("", repr=False)
    relay_ca_file: Path | None = None  # trust this CA for the relay instead of the system's

    dns_servers: tuple[str, ...] = ()
    dns_timeout: float = Field(5.0, gt=0, le=60)  # seconds per try at one server
    dns_lifetime: float | None = Field(None, gt=0, le=120)  # seconds per query in all; default: dns_timeout
    public_ipv4: str = ""
    public_ipv6: str = ""
    log_level: str = "INFO"
    log_format: str = "auto"  # json (one object a line, for journald) | text | auto: text on a terminal

    # Operations (issue 7): heartbeats, `gentbox doctor`, /metrics.
    heartbeat_interval: float = Field(15.0, gt=0, le=300)  # seconds between a process's heartbeats
    outbound_probe: str = "gmail-smtp-in.l.google.com:25"  # host:port doctor connects to for port 25 out
    doctor_timeout: float = Field(5.0, gt=0, le=60)  # seconds per network probe of `gentbox doctor`
    clock_reference_url: str = ""  # when set, doctor compares the clock with this URL's HTTP Date
    metrics_token: str = Field("", repr=False)  # bearer token for /metrics; empty: loopback clients only
    # Reverse proxies in front of the web app whose X-Forwarded-For/-Proto are believed (the Ansible
    # role's nginx: 1). 0 ignores the headers, so a client cannot pick the address it is counted as.
    proxy_hops: int = Field(0, ge=0, le=5)
    # DNS checks (verify now, check) per hour per tenant: each asks the resolver about every record.
    rate_limit_dns_checks: int = Field(60, ge=1)

    # Outbound signing and TLS (issue 14). DKIM signatures carry x= this long after t= (seconds,
    # or a duration such as "7d", "12h"); it must outlast queue_lifetime, or a retried message
    # would arrive with an expired signature.
    dkim_expiry: int = Field(7 * 86400, ge=3600, le=366 * 86400)
    # Trust this PEM bundle instead of the system CAs when a certificate must be verified for
    # direct delivery: MX hosts under an enforced MTA-STS policy, and the policy fetch itself.
    tls_ca_file: Path | None = None
    mta_sts_timeout: float = Field(10.0, gt=0, le=120)  # seconds for one policy fetch in all
    mta_sts_https_port: int = Field(443, ge=1, le=65535)  # for tests only: where policies are fetched

    # Sign-in delays (issue 14): after login_failures_account failures an account's next try waits
    # login_delay_base seconds, doubled by each further failure up to login_delay_max. No lockout.
    login_delay_base: int = Field(30, ge=1, le=3600)
    login_delay_max: int = Field(900, ge=1, le=86400)

    # Inbound mail policy (issue 14, points 6 and 10; docs/inbound.md).
    dmarc_reject_action: str = "reject"  # DMARC fail under p=reject: reject (550 5.7.1) | quarantine
    smtp_bare_newline: str = "normal"  # bare LF in DATA: normal (stored as CRLF) | strict (550 5.6.0)

    # Files (issue 19; docs/files.md): the largest file a write may store, in bytes. Multipart
    # uploads stream up to it; JSON bodies (base64, text) stay under 64 MiB whatever it says.
    files_max_bytes: int = Field(512 * 1024 * 1024, ge=1024, le=64 * 1024 ** 3)

    @field_validator("dmarc_reject_action", "smtp_bare_newline")
    @classmethod
    def _inbound_choice(cls, value: str, info: ValidationInfo) -> str:
        value = value.strip().lower()
        choices = {"dmarc_reject_action": ("reject", "quarantine"), "smtp_bare_newline": ("normal", "strict")}
        if value not in choices[info.field_name]:
            raise ValueError(f"must be {' or '.join(choices[info.field_name])}")
        return value

    # Issue 14: a tenant's claim on a domain name lapses unverified after this many seconds; the
    # worker delivers to MX hosts on loopback, private, link-local (...) or our own addresses
    # only when this is on (tests and LAN setups), never by default: outbound SSRF.
    domain_claim_ttl: int = Field(7 * 86400, ge=3600)
    deliver_to_private: bool = False

    # Webhook delivery (issue 15): seconds per attempt (contract: 15); sends at once per worker
    # and per alert (one slow receiver never holds more than its share of the threads).
    webhook_timeout: float = Field(15.0, gt=0, le=60)
    webhook_concurrency: int = Field(16, ge=1, le=256)
    webhook_per_alert: int = Field(4, ge=1, le=64)

    # Inbound resource limits of the SMTP listener (issue 14, point 8); each per listener process.
    smtp_max_connections: int = Field(1000, ge=1, le=100_000)  # sessions at once; more -> 421 4.7.0
    smtp_store_threads: int = Field(8, ge=1, le=256)  # admission, RCPT lookups, parsing
    smtp_auth_threads: int = Field(16, ge=1, le=256)  # SPF/DKIM/DMARC (mostly waiting on DNS)
    mail_auth_deadline: float = Field(20.0, gt=0, le=300)  # seconds for one message's SPF+DKIM+DMARC
    dns_timeout_memory: float = Field(30.0, ge=0, le=600)  # seconds a timed-out name answers temperror at once

    # Events (issue 14.12): the worker deletes events older than this, a batch at a time.
    event_retention_days: int = Field(90, ge=1, le=36500)
    # The live stream GET /v1/events/stream/ (issue 15.5; docs/events.md, "Live stream"). Each open
    # stream holds one web thread: `gentbox web` adds event_stream_max_per_process threads to
    # web_threads, so streams never take the threads of ordinary requests.
    event_stream_max_per_token: int = Field(2, ge=1, le=1000)  # open streams of one token; more -> 429
    event_stream_max_per_process: int = Field(4, ge=1, le=1000)  # per web worker process; more -> 429
    event_stream_keepalive: float = Field(15.0, gt=0, le=3600)  # seconds between ": keepalive" comments
    event_stream_poll_interval: float = Field(0.25, gt=0, le=10)  # SQLite: how often the process reads max(seq)
    event_stream_auth_interval: float = Field(2.0, gt=0, le=60)  # seconds between credential re-checks

    # Alerts (issue 15): webhook targets must be https:// on public addresses (no SSRF); this lets
    # them be private or loopback, and http://, for a LAN and for tests. Never on by default.
    webhook_allow_private: bool = False

    # Usage and caps (issue 22, docs/usage-and-caps.md). Box-wide defaults for every tenant without
    # a tenant-level cap of its own (0: none), and the unit prices that make spend.
    default_tenant_sends_per_hour: int = Field(0, ge=0)
    default_tenant_sends_per_day: int = Field(0, ge=0)
    default_tenant_sends_per_month: int = Field(0, ge=0)
    default_tenant_mailbox_bytes: int = Field(0, ge=0)  # enforced (452 4.2.2) when set
    price_per_1000_smarthost_sends: float = Field(0.0, ge=0)
    price_per_gb_month: float = Field(0.0, ge=0)
    price_per_million_tokens: float = Field(0.0, ge=0)

    # IMAP (issue 25, docs/imap.md): STARTTLS before LOGIN on imap_port, TLS on imaps_port, both with
    # tls_cert_file/tls_key_file; 143/993 in production. 0 binds a free port (tests).
    imap_port: int = Field(1143, ge=0, le=65535)
    imaps_port: int = Field(1993, ge=0, le=65535)
    imap_max_connections: int = Field(1000, ge=1)  # at once, per process; more -> BYE
    imap_max_connections_per_ip: int = Field(50, ge=1)  # at once per IPv4 address or IPv6 /64; more -> BYE
    imap_max_sessions_per_account: int = Field(20, ge=1)  # logged-in sessions of one inbox, per process
    imap_commands_per_minute: int = Field(6000, ge=1)  # per session; more -> a pause before each answer
    imap_timeout: float = Field(1800.0, gt=0, le=86400)  # seconds of silence (RFC 3501: at least 30 min)
    # MCP (issue 24, docs/agents.md): `gentbox mcp --http` (a small ASGI process that `gentbox run`
    # and gentbox-mcp.service start) listens on bind:mcp_port; nginx proxies /mcp to it.
    mcp_port: int = Field(8090, ge=0, le=65535)
    # Workflows (issue 20, docs/workflows.md): the time one `matches` condition may take (seconds,
    # the regex module's timeout; a hostile pattern fails the condition instead of hanging the
    # worker), and how many forwarding hops a message may have made before no workflow forwards it.
    workflow_regex_timeout: float = Field(0.05, gt=0, le=5)
    workflow_forward_max_hops: int = Field(3, ge=1, le=20)
    # External models (issue 21.5, docs/configuration.md): named OpenAI-compatible endpoints that
    # tenants may opt into per inbox. None by default: nothing leaves the box. TOML: one
    # [[model_endpoints]] table each; GENTBOX_MODEL_ENDPOINTS: a JSON list of the same objects.
    model_endpoints: tuple[ModelEndpoint, ...] = ()
    # Outbound connection reuse (issue 26, docs/configuration.md): SMTP sessions the worker keeps
    # open per destination (an MX address or the relay) and in total, several messages each (RSET
    # between them), closed after delivery_idle_timeout seconds unused or delivery_session_messages.
    delivery_connections_per_destination: int = Field(8, ge=1, le=256)
    delivery_connections_total: int = Field(32, ge=1, le=1024)
    delivery_idle_timeout: float = Field(5.0, ge=0, le=300)
    delivery_session_messages: int = Field(100, ge=1, le=10000)

    # Blob store (issue 19, docs/files.md): when set, new blobs' bytes go to files under this
    # absolute directory (fsynced before their transaction commits); unset: in the database.
    blob_dir: Path | None = None

    @field_validator("blob_dir", mode="before")
    @classmethod
    def _blob_dir(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            return None
        if value is not None and not Path(value).is_absolute():
            raise ValueError("must be an absolute path")
        return value

    @field_validator("model_endpoints", mode="before")
    @classmethod
    def _model_endpoints(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                value = json.loads(value or "[]")
            except json.JSONDecodeError as exc:
                raise ValueError(f"must be a JSON list of endpoints ({exc.msg})") from None
        names = [item.get("name") if isinstance(item, dict) else getattr(item, "name", None) for item in value or ()]
        if "builtin" in names or len(set(names)) != len(names):
            raise ValueError("endpoint names must be unique and not 'builtin' (the model that runs on the box)")
        return value

    @field_validator("hostname")
    @classmethod
    def _hostname(cls, value: str) -> str:
        value = value.strip().rstrip(".").lower()
        if not value or " " in value or "." not in value:
            raise ValueError("must be a fully qualified host name such as mail.example.com")
        try:
            # It goes into HELO, MX records and Message-IDs: letters, digits and hyphens only,
            # an internationalised name in its punycode form.
            return idna.encode(value, uts46=True).decode("ascii")
        except idna.IDNAError as exc:
            raise ValueError(f"must be a fully qualified host name such as mail.example.com ({exc})") from None

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        value = value.strip()
        scheme = value.split("://", 1)[0].lower() if "://" in value else ""
        if value and scheme not in {"sqlite", "postgresql", "postgres", "postgresql+psycopg"}:
            raise ValueError("must be empty (SQLite in the data dir), sqlite:///PATH or "
                             "postgresql://USER:PASSWORD@HOST:PORT/DATABASE")
        return value

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str) -> str:
        value = value.strip()
        if value and (not value.startswith(("http://", "https://")) or len(value.split("://", 1)[1]) == 0):
            raise ValueError("must be empty or an http(s) URL such as https://mail.example.com")
        return value

    @field_validator("dns_servers", mode="before")
    @classmethod
    def _servers(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("retry_schedule", mode="before")
    @classmethod
    def _schedule(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = tuple(int(part) for part in value.split(",") if part.strip())
        if not value or any(int(v) < 1 for v in value):
            raise ValueError("must be a comma-separated list of positive seconds, e.g. 60,300,900,3600")
        return value

    @field_validator("relay_tls")
    @classmethod
    def _relay_tls(cls, value: str) -> str:
        value = value.strip().lower()
        if value not in {"starttls", "implicit", "none"}:
            raise ValueError("must be starttls, implicit or none")
        return value

    @field_validator("relay_ca_file", mode="before")
    @classmethod
    def _relay_ca(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        value = value.upper()
        if value not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
        return value

    @field_validator("log_format")
    @classmethod
    def _log_format(cls, value: str) -> str:
        value = value.strip().lower()
        if value not in {"auto", "json", "text"}:
            raise ValueError("must be auto, json or text")
        return value

    @field_validator("outbound_probe")
    @classmethod
    def _probe(cls, value: str) -> str:
        value = value.strip()
        host, _, port = value.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("must be host:port, e.g. gmail-smtp-in.l.google.com:25")
        return value

    @field_validator("tls_cert_file", "tls_key_file", mode="before")
    @classmethod
    def _optional_path(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("tls_key_file")
    @classmethod
    def _tls_pair(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if (info.data.get("tls_cert_file") is None) != (value is None):
            raise ValueError("tls_cert_file and tls_key_file go together: set both (for STARTTLS) or neither")
        return value

    @field_validator("dkim_expiry", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip().lower()
            units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
            if text[-1:] in units and text[:-1].strip().isdigit():
                return int(text[:-1]) * units[text[-1]]
            if not text.isdigit():
                raise ValueError("must be seconds or a duration such as 7d, 36h, 90m")
        return value

    @field_validator("dkim_expiry")
    @classmethod
    def _outlasts_queue(cls, value: int, info: ValidationInfo) -> int:
        lifetime = info.data.get("queue_lifetime")
        if lifetime is not None and value <= lifetime:
            raise ValueError(f"must be longer than queue_lifetime ({lifetime} s), or mail retried late "
                             "would arrive with an expired DKIM signature")
        return value

    @field_validator("tls_ca_file", mode="before")
    @classmethod
    def _tls_ca(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @property
    def sqlalchemy_url(self) -> str:
        """The database URL, defaulting to an SQLite file in the data directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'gentbox.db').resolve()}"

    @property
    def base_url(self) -> str:
        """Where people and agents reach the web app (used in sign-up links)."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.bind in ("0.0.0.0", "::") else self.bind
        return f"http://{host}:{self.http_port}"


def _from_environ(environ: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name in Settings.model_fields:
        key = ENV_PREFIX + name.upper()
        if key + "_FILE" in environ:
            path = Path(environ[key + "_FILE"])
            try:
                values[name] = path.read_text().strip()
            except OSError as exc:
                raise ConfigError(f"{key}_FILE: cannot read {path}: {exc.strerror}") from exc
        elif key in environ:
            values[name] = environ[key]
    return values


def config_path_from(environ: Mapping[str, str]) -> Path:
    """The TOML file to read: GENTBOX_CONFIG, else <data dir>/gentbox.toml."""
    if "GENTBOX_CONFIG" in environ:
        return Path(environ["GENTBOX_CONFIG"])
    return Path(environ.get(ENV_PREFIX + "DATA_DIR", "./var")) / "gentbox.toml"


def load_settings(environ: Mapping[str, str] | None = None, *, require_secret: bool = True,
                  **overrides: Any) -> Settings:
    """Load settings once: defaults, then the TOML file, then GENTBOX_* variables, then overrides."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    path = config_path_from(environ)
    if path.exists():
        try:
            values.update(tomllib.loads(path.read_text()))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read the config file: {exc}") from exc
    secret_file = values.pop("secret_key_file", None)
    if secret_file and "secret_key" not in values:
        try:
            values["secret_key"] = Path(secret_file).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"secret_key_file: cannot read {secret_file}: {exc.strerror}") from exc
    values.update(_from_environ(environ))
    values.update(overrides)
    try:
        settings = Settings(**values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{ENV_PREFIX}{'.'.join(str(p) for p in err['loc']).upper()}: {err['msg']}"
            for err in exc.errors())
        raise ConfigError(f"invalid settings ({path}): {problems}") from None
    if require_secret and len(settings.secret_key) < 32:
        raise ConfigError(
            "no secret key: run `gentbox init` to generate one, or set GENTBOX_SECRET_KEY_FILE")
    return settings
