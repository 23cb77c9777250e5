"""Configuration: hub.toml + HUB_ environment, one clear line per problem, secrets never echoed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hub.cli import main
from hub.config import load_settings, validate_integration
from hub.core import Hub
from hub.errors import ConfigError


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No HUB_ variable from the outer environment, and no ./hub.toml in the working dir."""
    for name in list(os.environ):
        if name.upper().startswith("HUB_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def problems(exc: pytest.ExceptionInfo[ConfigError]) -> list[str]:
    return str(exc.value).splitlines()


# --------------------------------------------------------------------------- load_settings


def test_defaults_without_a_file():
    settings = load_settings()
    assert (settings.server.host, settings.server.port) == ("127.0.0.1", 8700)
    assert settings.store.path == Path("hub.db")
    assert settings.admin.token is None
    assert settings.integrations == {}


def test_hub_toml_in_the_working_directory_is_read(tmp_path: Path):
    write(tmp_path / "hub.toml", "[server]\nport = 8123\n")
    assert load_settings().server.port == 8123


def test_environment_overrides_the_file_and_nests(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    path = write(
        tmp_path / "conf.toml",
        """
[server]
host = "0.0.0.0"
port = 9000

[store]
path = "from-file.db"

[integrations.custom_accounting]
base_url = "http://file.example"
api_token = "file-token"
""",
    )
    monkeypatch.setenv("HUB_SERVER__PORT", "9100")
    monkeypatch.setenv("HUB_STORE__PATH", str(tmp_path / "from-env.db"))
    monkeypatch.setenv("HUB_INTEGRATIONS__CUSTOM_ACCOUNTING__API_TOKEN", "env-token")
    monkeypatch.setenv("HUB_INTEGRATIONS__X__Y", "z")
    settings = load_settings(path)
    assert settings.server.port == 9100  # env wins
    assert settings.server.host == "0.0.0.0"  # the file's other keys of the section survive
    assert settings.store.path == tmp_path / "from-env.db"
    assert settings.integrations["custom_accounting"] == {
        "base_url": "http://file.example",
        "api_token": "env-token",
    }
    assert settings.integrations["x"] == {"y": "z"}


def test_toml_syntax_error_is_one_line_naming_the_file(tmp_path: Path):
    path = write(tmp_path / "broken.toml", "[server\nport = 1\n")
    with pytest.raises(ConfigError) as exc:
        load_settings(path)
    (line,) = problems(exc)
    assert line.startswith(f"{path}: TOML syntax error")


def test_missing_file_is_an_error(tmp_path: Path):
    with pytest.raises(ConfigError, match="no such file"):
        load_settings(tmp_path / "absent.toml")


def test_unknown_key_names_file_and_key(tmp_path: Path):
    path = write(tmp_path / "hub.toml", "[server]\nprot = 8800\n")
    with pytest.raises(ConfigError) as exc:
        load_settings(path)
    assert problems(exc) == [f"{path}: server.prot: unknown key"]


def test_the_removed_ingest_workers_key_is_an_unknown_key(tmp_path: Path):
    path = write(tmp_path / "hub.toml", "[webhooks]\nworkers = 1\n")
    with pytest.raises(ConfigError) as exc:
        load_settings(path)
    assert problems(exc) == [f"{path}: webhooks.workers: unknown key"]


def test_unknown_section_is_an_error(tmp_path: Path):
    path = write(tmp_path / "hub.toml", "[sever]\nport = 8800\n")
    with pytest.raises(ConfigError) as exc:
        load_settings(path)
    assert problems(exc) == [f"{path}: sever: unknown key"]


def test_wrong_type_names_key_and_expected_shape_not_value(tmp_path: Path):
    path = write(tmp_path / "hub.toml", '[server]\nport = "eighty"\n')
    with pytest.raises(ConfigError) as exc:
        load_settings(path)
    (line,) = problems(exc)
    assert line.startswith(f"{path}: server.port: ")
    assert "valid integer" in line and "(got a string)" in line
    assert "eighty" not in line


def test_out_of_range_value_is_an_error(tmp_path: Path):
    path = write(tmp_path / "hub.toml", "[server]\nport = 70000\n")
    with pytest.raises(ConfigError) as exc:
        load_settings(path)
    (line,) = problems(exc)
    assert line.startswith(f"{path}: server.port: ") and "less than or equal to 65535" in line
    assert "70000" not in line


def test_every_problem_is_its_own_line(tmp_path: Path):
    path = write(
        tmp_path / "hub.toml", '[server]\nprot = 1\nport = "x"\n[sync]\nmax_concurrent = 0\n'
    )
    with pytest.raises(ConfigError) as exc:
        load_settings(path)
    lines = problems(exc)
    assert len(lines) == 3
    assert {line.split(": ")[1] for line in lines} == {
        "server.prot",
        "server.port",
        "sync.max_concurrent",
    }


@pytest.mark.parametrize(
    ("value", "shown", "reason"),
    [
        ("987654321", "987654321", "Input should be a valid string"),  # wrongly typed
        ('"t0o-short"', "t0o-short", "shorter than 32 characters"),
    ],
)
def test_a_bad_admin_token_names_the_key_and_is_never_echoed(tmp_path: Path, value, shown, reason):
    path = write(tmp_path / "hub.toml", f"[admin]\ntoken = {value}\n")
    with pytest.raises(ConfigError) as exc:
        load_settings(path)
    (line,) = problems(exc)
    assert line.startswith(f"{path}: admin.token: {reason}")
    assert shown not in str(exc.value)
    assert load_settings(None, {"admin": {"token": "x" * 32}}, read_default=False).admin.token


def test_secret_given_where_a_section_belongs_is_not_echoed(tmp_path: Path):
    # a user who writes the sender's secret where its table belongs
    path = write(tmp_path / "hub.toml", '[webhooks.generic]\nzapier = "whsec_abcdefgh12345678"\n')
    with pytest.raises(ConfigError) as exc:
        load_settings(path)
    (line,) = problems(exc)
    assert line.startswith(f"{path}: webhooks.generic.zapier: ")
    assert "abcdefgh12345678" not in line


# --------------------------------------------------------------------------- integrations


def hub_for(tmp_path: Path, toml: str) -> Hub:
    path = write(tmp_path / "hub.toml", f'[store]\npath = "{tmp_path / "hub.db"}"\n' + toml)
    return Hub(load_settings(path))


def test_missing_required_secret_names_key_and_env_var(tmp_path: Path):
    hub = hub_for(tmp_path, '[integrations.custom_accounting]\nbase_url = "http://x"\n')
    with pytest.raises(ConfigError) as exc:
        hub.load_plugins()
    (line,) = problems(exc)
    assert "integrations.custom_accounting.api_token" in line
    assert "HUB_INTEGRATIONS__CUSTOM_ACCOUNTING__API_TOKEN" in line


def test_validate_integration_directly(tmp_path: Path):
    from custom_accounting.settings import LedgerSettings

    hub = hub_for(
        tmp_path,
        '[integrations.custom_accounting]\nbase_url = "http://x"\napi_token = "t0k"\n'
        "page_size = 9999\n",
    )
    with pytest.raises(ConfigError) as exc:
        validate_integration(hub.settings, "custom_accounting", LedgerSettings)
    (line,) = problems(exc)
    assert "integrations.custom_accounting.page_size" in line and "9999" not in line


def test_wrongly_typed_plugin_secret_is_not_echoed(tmp_path: Path):
    hub = hub_for(
        tmp_path,
        '[integrations.custom_accounting]\nbase_url = "http://x"\napi_token = 55667788\n',
    )
    with pytest.raises(ConfigError) as exc:
        hub.load_plugins()
    assert "integrations.custom_accounting.api_token" in str(exc.value)
    assert "55667788" not in str(exc.value)


def test_valid_integration_settings_are_available(tmp_path: Path):
    hub = hub_for(
        tmp_path, '[integrations.custom_accounting]\nbase_url = "http://x"\napi_token = "t"\n'
    )
    hub.load_plugins()
    settings = hub.settings_for("custom_accounting")
    assert settings is not None
    assert settings.api_token.get_secret_value() == "t"  # type: ignore[attr-defined]


def test_disabled_integration_is_not_validated(tmp_path: Path):
    hub = hub_for(tmp_path, "[integrations.custom_accounting]\nenabled = false\n")
    hub.load_plugins()
    assert hub.settings_for("custom_accounting") is None


def test_disabled_by_environment(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("HUB_INTEGRATIONS__CUSTOM_ACCOUNTING__ENABLED", "false")
    hub = hub_for(tmp_path, '[integrations.custom_accounting]\nbase_url = "http://x"\n')
    hub.load_plugins()
    assert hub.settings_for("custom_accounting") is None


def test_unknown_integration_key_is_an_error(tmp_path: Path):
    hub = hub_for(
        tmp_path,
        '[integrations.custom_accounting]\nbase_url = "http://x"\napi_token = "t"\ncolour = 1\n',
    )
    with pytest.raises(ConfigError) as exc:
        hub.load_plugins()
    assert problems(exc) == ["configuration: integrations.custom_accounting.colour: unknown key"]


def test_section_without_a_plugin_is_an_error(tmp_path: Path):
    hub = hub_for(tmp_path, '[integrations.nope]\napi_key = "k"\n')
    with pytest.raises(ConfigError) as exc:
        hub.load_plugins()
    (line,) = problems(exc)
    assert "integrations.nope" in line and "no loaded plugin" in line


# --------------------------------------------------------------------------- CLI


def test_check_prints_one_error_line_per_problem(tmp_path: Path, capsys, restore_logging):
    path = write(
        tmp_path / "hub.toml",
        '[server]\nprot = 1\nport = "x"\n[admin]\ntoken = 987654321\n',
    )
    assert main(["check", "--config", str(path)]) == 1
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert len(lines) == 3
    assert all(line.startswith(f"advisoros-hub: error: {path}: ") for line in lines)
    assert "Traceback" not in err and "Traceback" not in out
    assert "987654321" not in err


def test_check_reports_integration_problems(tmp_path: Path, capsys, restore_logging):
    path = write(
        tmp_path / "hub.toml",
        f'[store]\npath = "{tmp_path / "hub.db"}"\n'
        '[integrations.custom_accounting]\nbase_url = "http://x"\n'
        "[integrations.nope]\nx = 1\n",
    )
    assert main(["check", "--config", str(path)]) == 1
    _, err = capsys.readouterr()
    # logging is configured by now, so only the error lines are counted
    lines = [line for line in err.splitlines() if line.startswith("advisoros-hub: error: ")]
    assert len(lines) == 2
    assert any("integrations.nope" in line for line in lines)
    assert any("integrations.custom_accounting.api_token" in line for line in lines)
    assert "Traceback" not in err


def test_check_with_a_syntax_error(tmp_path: Path, capsys, restore_logging):
    path = write(tmp_path / "hub.toml", "[server\n")
    assert main(["check", "--config", str(path)]) == 1
    _, err = capsys.readouterr()
    (line,) = err.splitlines()
    assert line.startswith(f"advisoros-hub: error: {path}: TOML syntax error")


def test_unknown_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["bogus"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_secrets_from_files_named_by_file_variables(tmp_path, monkeypatch):
    secret = tmp_path / "ledger-token"
    secret.write_text("from-a-file-of-at-least-32-characters\n")
    monkeypatch.setenv("HUB_INTEGRATIONS__CUSTOM_ACCOUNTING__API_TOKEN_FILE", str(secret))
    monkeypatch.setenv("HUB_ADMIN__TOKEN_FILE", str(secret))
    settings = load_settings(None, read_default=False)
    assert settings.integrations["custom_accounting"]["api_token"] == (
        "from-a-file-of-at-least-32-characters"
    )
    assert settings.admin.token is not None
    assert settings.admin.token.get_secret_value() == "from-a-file-of-at-least-32-characters"
    monkeypatch.setenv("HUB_ADMIN__TOKEN", "plain-variable-wins-of-32-characters")
    assert load_settings(None, read_default=False).admin.token.get_secret_value() == (
        "plain-variable-wins-of-32-characters"
    )


def test_an_unreadable_secret_file_is_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HUB_ADMIN__TOKEN_FILE", str(tmp_path / "missing"))
    with pytest.raises(ConfigError) as caught:
        load_settings(None, read_default=False)
    assert str(caught.value).startswith("HUB_ADMIN__TOKEN_FILE: cannot read ")
    assert "\n" not in str(caught.value)


def test_a_bad_environment_value_is_blamed_on_the_variable(tmp_path, monkeypatch):
    config = tmp_path / "hub.toml"
    config.write_text("[server]\nport = 8700\n")
    monkeypatch.setenv("HUB_SERVER__PORT", "not-a-port")
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    assert str(caught.value).startswith("environment (HUB_SERVER__PORT): server.port: ")


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("https://Hub.Example.com/", "https://hub.example.com"),
        ("https://hub.example.com:8443", "https://hub.example.com:8443"),
        ("http://127.0.0.1:8700", "http://127.0.0.1:8700"),
        ("http://localhost:8700", "http://localhost:8700"),
        ("http://[::1]:8700", "http://[::1]:8700"),
    ],
)
def test_public_url_is_kept_without_a_trailing_slash(given, kept):
    settings = load_settings(None, {"server": {"public_url": given}}, read_default=False)
    assert settings.server.public_url == kept == settings.server.base_url


@pytest.mark.parametrize(
    ("given", "reason"),
    [
        ("hub.example.com", "http(s) URL"),
        ("ftp://hub.example.com", "http(s) URL"),
        ("https://hub example.com", "http(s) URL"),
        ("https://hub.example.com:99999", "http(s) URL"),
        ("https://hub.example.com/hub", "no user, path, query or fragment"),
        ("https://hub.example.com/?a=1", "no user, path, query or fragment"),
        ("https://hub.example.com/#top", "no user, path, query or fragment"),
        ("https://admin@hub.example.com", "no user, path, query or fragment"),
        ("http://hub.example.com", "must use https"),
        ("http://192.0.2.7:8700", "must use https"),
    ],
)
def test_a_bad_public_url_is_one_line_naming_the_key(given, reason):
    with pytest.raises(ConfigError) as caught:
        load_settings(None, {"server": {"public_url": given}}, read_default=False)
    (line,) = problems(caught)
    assert line.startswith("configuration: server.public_url: ") and reason in line


@pytest.mark.parametrize(
    ("server", "url"),
    [
        ({}, "http://127.0.0.1:8700"),
        ({"host": "0.0.0.0", "port": 8123}, "http://127.0.0.1:8123"),
        ({"host": "::"}, "http://[::1]:8700"),
        ({"host": "hub.lan"}, "http://hub.lan:8700"),
    ],
)
def test_without_a_public_url_the_hub_is_reached_at_its_listening_address(server, url):
    assert load_settings(None, {"server": server}, read_default=False).server.base_url == url
