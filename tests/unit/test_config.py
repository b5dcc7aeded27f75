"""Settings: defaults < TOML file < GENTBOX_* variables < GENTBOX_*_FILE; frozen; checked at load."""
from __future__ import annotations

from pathlib import Path

import pydantic
import pytest

from appliance.config import Settings, config_path_from, load_settings
from appliance.errors import ConfigError

SECRET = "s" * 48


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    return tmp_path / "gentbox.toml"


def environ(config_file: Path, **variables: str) -> dict[str, str]:
    """An environment naming config_file, plus GENTBOX_<KEY> variables."""
    env = {"GENTBOX_CONFIG": str(config_file)}
    env.update({f"GENTBOX_{key.upper()}": value for key, value in variables.items()})
    return env


def test_defaults(config_file: Path) -> None:
    settings = load_settings(environ(config_file, secret_key=SECRET))
    assert settings.data_dir == Path("./var")
    assert settings.database_url == ""
    assert settings.sqlalchemy_url == f"sqlite:///{Path('./var/gentbox.db').resolve()}"
    assert (settings.bind, settings.http_port, settings.smtp_port) == ("127.0.0.1", 8080, 2525)
    assert settings.hostname == "mail.gentbox.test"
    assert settings.base_url == "http://127.0.0.1:8080"
    assert settings.signup_token_ttl == 7 * 86400
    assert settings.log_level == "INFO"


def test_toml_overrides_defaults(config_file: Path, tmp_path: Path) -> None:
    config_file.write_text(
        f'data_dir = "{tmp_path}"\nhttp_port = 9000\nhostname = "MX.Example.org."\n'
        'dns_servers = ["192.0.2.53"]\nbind = "0.0.0.0"\n')
    settings = load_settings(environ(config_file, secret_key=SECRET))
    assert settings.data_dir == tmp_path
    assert settings.sqlalchemy_url == f"sqlite:///{tmp_path / 'gentbox.db'}"
    assert settings.http_port == 9000
    assert settings.hostname == "mx.example.org"  # normalised: lower case, no trailing dot
    assert settings.dns_servers == ("192.0.2.53",)
    assert settings.base_url == "http://127.0.0.1:9000"  # a wildcard bind is reached on loopback
    assert settings.smtp_port == 2525  # untouched keys keep their defaults


def test_environment_overrides_toml(config_file: Path) -> None:
    config_file.write_text('http_port = 9000\nhostname = "toml.example.org"\nlog_level = "DEBUG"\n')
    settings = load_settings(environ(config_file, secret_key=SECRET, http_port="9100",
                                     dns_servers="192.0.2.1, 192.0.2.2", log_level="warning"))
    assert settings.http_port == 9100
    assert settings.hostname == "toml.example.org"
    assert settings.dns_servers == ("192.0.2.1", "192.0.2.2")
    assert settings.log_level == "WARNING"


def test_file_variables_override_plain_variables_and_toml(config_file: Path, tmp_path: Path) -> None:
    toml_secret, env_secret, file_secret = "t" * 40, "e" * 40, "f" * 40
    secret_path = tmp_path / "secret"
    secret_path.write_text(file_secret + "\n")
    config_file.write_text(f'secret_key = "{toml_secret}"\n')
    assert load_settings(environ(config_file)).secret_key == toml_secret
    assert load_settings(environ(config_file, secret_key=env_secret)).secret_key == env_secret
    settings = load_settings(environ(config_file, secret_key=env_secret, secret_key_file=str(secret_path)))
    assert settings.secret_key == file_secret  # stripped of the trailing newline
    db_url_file = tmp_path / "db_url"
    db_url_file.write_text("postgresql://u:p@db.example.org/gentbox\n")
    settings = load_settings(environ(config_file, database_url_file=str(db_url_file)))
    assert settings.database_url == "postgresql://u:p@db.example.org/gentbox"


def test_toml_may_name_the_secret_file(config_file: Path, tmp_path: Path) -> None:
    secret_path = tmp_path / "secret_key"
    secret_path.write_text(SECRET + "\n")
    config_file.write_text(f'secret_key_file = "{secret_path}"\n')
    assert load_settings(environ(config_file)).secret_key == SECRET


def test_keyword_overrides_come_last(config_file: Path) -> None:
    settings = load_settings(environ(config_file, secret_key=SECRET, http_port="9100"), http_port=9200)
    assert settings.http_port == 9200


def test_config_path_defaults_to_the_data_dir() -> None:
    assert config_path_from({}) == Path("./var/gentbox.toml")
    assert config_path_from({"GENTBOX_DATA_DIR": "/srv/g"}) == Path("/srv/g/gentbox.toml")
    assert config_path_from({"GENTBOX_DATA_DIR": "/srv/g", "GENTBOX_CONFIG": "/etc/g.toml"}) == Path("/etc/g.toml")


def test_the_toml_file_in_the_data_dir_is_read(tmp_path: Path) -> None:
    (tmp_path / "gentbox.toml").write_text("smtp_port = 2600\n")
    settings = load_settings({"GENTBOX_DATA_DIR": str(tmp_path), "GENTBOX_SECRET_KEY": SECRET})
    assert settings.smtp_port == 2600 and settings.data_dir == tmp_path


def test_settings_are_frozen(config_file: Path) -> None:
    settings = load_settings(environ(config_file, secret_key=SECRET))
    with pytest.raises(pydantic.ValidationError):
        settings.http_port = 1  # type: ignore[misc]
    assert settings.http_port == 8080
    assert SECRET not in repr(settings)  # the secret never shows in logs or tracebacks


@pytest.mark.parametrize(("variables", "needles"), [
    ({"http_port": "notanumber"}, ("GENTBOX_HTTP_PORT", "valid integer")),
    ({"http_port": "70000"}, ("GENTBOX_HTTP_PORT", "65535")),
    ({"smtp_port": "-1"}, ("GENTBOX_SMTP_PORT",)),
    ({"web_workers": "0"}, ("GENTBOX_WEB_WORKERS",)),
    ({"hostname": "localhost"}, ("GENTBOX_HOSTNAME", "fully qualified host name")),
    ({"hostname": 'bad"name.example.com'}, ("GENTBOX_HOSTNAME", "fully qualified host name")),
    ({"hostname": "under_score.example.com"}, ("GENTBOX_HOSTNAME",)),
    ({"log_level": "LOUD"}, ("GENTBOX_LOG_LEVEL", "DEBUG, INFO, WARNING or ERROR")),
    ({"dns_timeout": "0"}, ("GENTBOX_DNS_TIMEOUT",)),
    ({"database_url": "mysql://db/gentbox"}, ("GENTBOX_DATABASE_URL", "postgresql://")),
    ({"public_url": "mail.example.com"}, ("GENTBOX_PUBLIC_URL", "http(s) URL")),
])
def test_bad_values_are_refused_with_a_message_naming_the_setting(config_file: Path, variables, needles) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(environ(config_file, secret_key=SECRET, **variables))
    for needle in needles:
        assert needle in str(caught.value)
    assert str(config_file) in str(caught.value)


def test_bad_toml_values_and_unknown_keys_are_refused(config_file: Path) -> None:
    config_file.write_text("http_port = \"eighty\"\n")
    with pytest.raises(ConfigError, match="GENTBOX_HTTP_PORT"):
        load_settings(environ(config_file, secret_key=SECRET))
    config_file.write_text("htp_port = 8080\n")  # a typo must not be silently ignored
    with pytest.raises(ConfigError, match="HTP_PORT.*[Ee]xtra"):
        load_settings(environ(config_file, secret_key=SECRET))
    config_file.write_text("http_port = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(environ(config_file, secret_key=SECRET))


def test_unreadable_secret_files_are_named(config_file: Path, tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(ConfigError, match=r"GENTBOX_SECRET_KEY_FILE: cannot read .*nope"):
        load_settings(environ(config_file, secret_key_file=str(missing)))
    config_file.write_text(f'secret_key_file = "{missing}"\n')
    with pytest.raises(ConfigError, match=r"secret_key_file: cannot read .*nope"):
        load_settings(environ(config_file))


@pytest.mark.parametrize("secret", [None, "", "too-short"])
def test_a_missing_or_short_secret_says_to_run_init(config_file: Path, secret: str | None) -> None:
    env = environ(config_file) if secret is None else environ(config_file, secret_key=secret)
    with pytest.raises(ConfigError, match="run `gentbox init`"):
        load_settings(env)


def test_the_secret_is_optional_only_when_asked(config_file: Path) -> None:
    assert load_settings(environ(config_file), require_secret=False).secret_key == ""


def test_internationalised_hostnames_become_punycode() -> None:
    assert Settings(hostname="Mail.Bücher.example").hostname == "mail.xn--bcher-kva.example"


def test_public_url_drives_links() -> None:
    assert Settings(public_url="https://mail.example.com/").base_url == "https://mail.example.com"
    assert Settings(bind="192.0.2.5", http_port=8443).base_url == "http://192.0.2.5:8443"


@pytest.mark.parametrize(("memory", "cores", "expected"), [
    (1 * 1024**3, 2, 1),  # a 1 GB VPS: one web worker, one SMTP process
    (4 * 1024**3, 1, 1),
    (4 * 1024**3, 2, 2),
    (64 * 1024**3, 32, 4),  # one per core, at most four
])
def test_process_counts_follow_the_machine_unless_set(monkeypatch, config_file: Path, memory, cores, expected) -> None:
    import appliance.config as config
    monkeypatch.setattr(config, "_memory_bytes", lambda: memory)
    monkeypatch.setattr(config.os, "cpu_count", lambda: cores)
    settings = load_settings(environ(config_file, secret_key=SECRET))
    assert (settings.web_workers, settings.smtp_processes) == (expected, expected)
    settings = load_settings(environ(config_file, secret_key=SECRET, web_workers="3", smtp_processes="5"))
    assert (settings.web_workers, settings.smtp_processes) == (3, 5)
