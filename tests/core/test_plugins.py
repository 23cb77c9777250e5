"""The plugin manager: loading from every origin, isolation of failures, owner-only calls."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from hub import hookimpl
from hub.cli import main
from hub.config import PluginsSettings
from hub.model import (
    Alert,
    Connection,
    HealthReport,
    HealthStatus,
    Integration,
    IntegrationSettings,
    Stream,
)
from hub.plugins import HubPlugins, PluginLoadError

FIXTURES = Path(__file__).parent / "fixtures" / "plugins"


@pytest.fixture
def plugins_dir(tmp_path: Path):
    """A factory copying the named fixture plugins into a fresh plugins_dir."""

    def make(*names: str) -> Path:
        folder = tmp_path / "plugins"
        folder.mkdir(exist_ok=True)
        for name in names:
            source = FIXTURES / name
            if source.is_dir():
                shutil.copytree(source, folder / name, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy(source, folder / name)
        return folder

    return make


def loaded(settings: PluginsSettings) -> HubPlugins:
    plugins = HubPlugins()
    plugins.load(settings)
    return plugins


def connection(integration: str) -> Connection:
    return Connection(
        id=f"{integration}:k",
        integration=integration,
        key="k",
        title="t",
        credentials={},
        settings=IntegrationSettings(),
    )


# --------------------------------------------------------------------------- loading


def test_plugins_dir_file_and_package_load_beside_a_broken_one(plugins_dir):
    folder = plugins_dir("broken.py", "filed.py", "packaged")
    plugins = loaded(PluginsSettings(dir=folder))

    broken = plugins.info["broken"]
    assert broken.error == "import failed: RuntimeError: boom at import"
    assert broken.hooks == []
    assert [info.name for info in plugins.failed] == ["broken"]

    filed = plugins.info["filed"]
    assert filed.error is None
    assert filed.origin == f"plugins_dir ({folder / 'filed.py'})"
    assert filed.version == "2.3.4"
    assert filed.hooks == ["health", "register"]
    assert filed.integration == "filed"

    packaged = plugins.info["packaged"]
    assert packaged.error is None
    assert packaged.origin == f"plugins_dir ({folder / 'packaged'})"
    assert packaged.hooks == ["event", "register"]
    assert plugins.integrations["packaged"].title == "Packaged plugin"  # from .helper

    # the built-in and the entry-point plugin are unaffected
    assert plugins.info["log_alerts"].origin == "built-in"
    assert plugins.info["custom_accounting"].origin == "entry point"
    assert set(plugins.integrations) >= {"filed", "packaged", "custom_accounting"}


def test_hidden_and_private_files_are_ignored(plugins_dir):
    folder = plugins_dir("filed.py")
    (folder / "_private.py").write_text("raise RuntimeError('must not be imported')\n")
    (folder / ".hidden.py").write_text("raise RuntimeError('must not be imported')\n")
    (folder / "notes.txt").write_text("not a plugin\n")
    (folder / "not_a_package").mkdir()
    plugins = loaded(PluginsSettings(dir=folder))
    assert not plugins.failed
    assert "filed" in plugins.info
    assert not {"_private", ".hidden", "notes", "not_a_package"} & set(plugins.info)


def test_missing_plugins_dir_loads_nothing_from_it(tmp_path):
    plugins = loaded(PluginsSettings(dir=tmp_path / "absent"))
    assert not plugins.failed
    assert all(not info.origin.startswith("plugins_dir") for info in plugins.info.values())


def test_misspelt_hook_fails_the_plugin(plugins_dir):
    plugins = loaded(PluginsSettings(dir=plugins_dir("misspelt.py", "filed.py")))
    assert plugins.info["misspelt"].error == "unknown hook(s) healt (misspelt?)"
    assert plugins.pm.get_plugin("misspelt") is None
    assert "misspelt" not in plugins.integrations
    assert plugins.info["filed"].error is None


def test_misspelt_hook_on_an_object():
    class Plugin:
        @hookimpl
        def registr(self) -> None: ...

    plugins = HubPlugins()
    with pytest.raises(PluginLoadError, match=r"unknown hook\(s\) registr \(misspelt\?\)"):
        plugins.add(Plugin(), "typo")
    assert plugins.pm.get_plugin("typo") is None


def test_hook_with_an_unknown_argument_fails():
    class Plugin:
        @hookimpl
        def health(self, connection, hub, extra): ...

    plugins = HubPlugins()
    with pytest.raises(PluginLoadError, match="invalid hook implementation"):
        plugins.add(Plugin(), "bad_args")
    assert plugins.pm.get_plugin("bad_args") is None


def test_register_that_raises_or_returns_junk_fails():
    class Raises:
        @hookimpl
        def register(self):
            raise ValueError("nope")

    class BadName:
        @hookimpl
        def register(self):
            return Integration(name="Bad-Name", title="x")

    plugins = HubPlugins()
    with pytest.raises(PluginLoadError, match="register raised ValueError: nope"):
        plugins.add(Raises(), "raises")
    with pytest.raises(PluginLoadError, match="not lowercase"):
        plugins.add(BadName(), "bad_name")
    assert plugins.pm.get_plugin("raises") is None
    assert plugins.pm.get_plugin("bad_name") is None
    assert plugins.integrations == {}


def test_allow_list_loads_only_those(plugins_dir):
    plugins = loaded(PluginsSettings(dir=plugins_dir("filed.py", "broken.py"), allow=["filed"]))
    assert list(plugins.info) == ["filed"]
    assert list(plugins.integrations) == ["filed"]


def test_deny_list_skips_those(plugins_dir):
    folder = plugins_dir("filed.py", "broken.py", "packaged")
    plugins = loaded(
        PluginsSettings(dir=folder, deny=["broken", "custom_accounting", "log_alerts"])
    )
    assert {"filed", "packaged"} <= set(plugins.info)
    assert not {"broken", "custom_accounting", "log_alerts"} & set(plugins.info)
    assert not plugins.failed
    assert "custom_accounting" not in plugins.integrations


def test_second_plugin_with_the_same_integration_fails(plugins_dir):
    plugins = loaded(PluginsSettings(dir=plugins_dir("filed.py", "refiled.py")))
    assert plugins.info["filed"].error is None
    assert plugins.info["refiled"].error == "integration 'filed' is already provided"
    assert plugins.pm.get_plugin("refiled") is None
    assert plugins.integrations["filed"].title == "Filed plugin"
    assert plugins.info["refiled"].hooks == []


def test_plugins_dir_file_named_like_a_loaded_plugin_does_not_hide_it(plugins_dir):
    folder = plugins_dir()
    shutil.copy(FIXTURES / "filed.py", folder / "custom_accounting.py")
    plugins = loaded(PluginsSettings(dir=folder))
    assert plugins.info["custom_accounting"].origin == "entry point"
    assert plugins.info["custom_accounting"].error is None
    (failed,) = plugins.failed
    assert failed.name == "custom_accounting"
    assert failed.origin.startswith("plugins_dir")
    assert failed.error == "a plugin named 'custom_accounting' is already loaded (entry point)"


def test_adding_the_same_name_twice_fails():
    class A:
        @hookimpl
        def alert(self, alert): ...

    plugins = HubPlugins()
    plugins.add(A(), "same")
    with pytest.raises(PluginLoadError, match="already loaded"):
        plugins.add(A(), "same")
    assert plugins.info["same"].hooks == ["alert"]


# --------------------------------------------------------------------------- calling


def an_alert() -> Alert:
    return Alert(
        id=1,
        integration="x",
        connection_id="x:k",
        connection_title="X",
        status=HealthStatus.ERROR,
        previous=HealthStatus.HEALTHY,
        message="down",
    )


async def test_broadcast_isolates_a_raising_implementation():
    calls: list[str] = []

    class Raising:
        @hookimpl
        def alert(self, alert: Alert) -> None:
            calls.append("raising")
            raise RuntimeError("mail server down")

    class Async:
        @hookimpl
        async def alert(self, alert: Alert, hub: Any) -> str:
            calls.append("async")
            return f"sent {alert.message}"

    class Plain:
        @hookimpl
        def alert(self, alert: Alert) -> str:
            calls.append("plain")
            return "logged"

    plugins = HubPlugins()
    plugins.add(Async(), "async_channel")
    plugins.add(Raising(), "raising_channel")
    plugins.add(Plain(), "plain_channel")
    results = dict(await plugins.broadcast("alert", alert=an_alert(), hub=None))
    assert sorted(calls) == ["async", "plain", "raising"]
    assert results["async_channel"] == "sent down"
    assert results["plain_channel"] == "logged"
    assert isinstance(results["raising_channel"], RuntimeError)


async def test_event_broadcast_isolates_too():
    seen: list[str] = []

    class First:
        @hookimpl
        async def event(self, event: Any) -> None:
            raise ValueError("bad handler")

    class Second:
        @hookimpl
        def event(self, event: Any) -> None:
            seen.append(event)

    plugins = HubPlugins()
    plugins.add(Second(), "second")
    plugins.add(First(), "first")
    results = await plugins.broadcast("event", event="e1", hub=None)
    assert seen == ["e1"]
    assert [type(r).__name__ for _, r in results].count("ValueError") == 1


def test_broadcast_sync_skips_a_raising_implementation():
    class Good:
        @hookimpl
        def routes(self) -> list[str]:
            return ["ok"]

    class Bad:
        @hookimpl
        def routes(self) -> list[str]:
            raise RuntimeError("no routes")

    plugins = HubPlugins()
    plugins.add(Good(), "good")
    plugins.add(Bad(), "bad")
    assert plugins.broadcast_sync("routes", hub=None) == [("good", ["ok"])]


def health_plugin(name: str, calls: list[str]) -> object:
    class Plugin:
        @hookimpl
        def register(self) -> Integration:
            return Integration(name=name, title=name.upper())

        @hookimpl
        async def health(self, connection: Connection) -> HealthReport:
            calls.append(f"{name}:{connection.id}")
            return HealthReport(HealthStatus.HEALTHY, name)

    return Plugin()


async def test_per_integration_hooks_are_called_on_the_owner_only():
    calls: list[str] = []
    plugins = HubPlugins()
    plugins.add(health_plugin("alpha", calls), "alpha_plugin")
    plugins.add(health_plugin("beta", calls), "beta_plugin")

    report = await plugins.call_owner("alpha", "health", connection=connection("alpha"), hub=None)
    assert report.message == "alpha"
    assert calls == ["alpha:alpha:k"]

    report = await plugins.call_owner("beta", "health", connection=connection("beta"), hub=None)
    assert report.message == "beta"
    assert calls == ["alpha:alpha:k", "beta:beta:k"]

    assert plugins.has_owner_hook("alpha", "health")
    assert not plugins.has_owner_hook("alpha", "sync")
    with pytest.raises(LookupError, match="does not implement sync"):
        await plugins.call_owner("alpha", "sync", connection=connection("alpha"))
    with pytest.raises(LookupError, match="no plugin provides integration 'gamma'"):
        await plugins.call_owner("gamma", "health", connection=connection("gamma"))


def test_remove_forgets_the_plugin_and_its_integration():
    plugins = HubPlugins()
    plugins.add(health_plugin("alpha", []), "alpha_plugin")
    plugins.remove("alpha_plugin")
    assert "alpha" not in plugins.integrations
    assert plugins.pm.get_plugin("alpha_plugin") is None
    assert not plugins.has_owner_hook("alpha", "health")


# --------------------------------------------------------------------------- CLI


def test_plugins_command_lists_name_version_origin_hooks(
    plugins_dir, tmp_path, capsys, monkeypatch, restore_logging
):
    for name in [n for n in os.environ if n.startswith("HUB_")]:
        monkeypatch.delenv(name)
    folder = plugins_dir("filed.py", "packaged")
    config = tmp_path / "hub.toml"
    config.write_text(f'[plugins]\ndir = "{folder}"\n')
    assert main(["plugins", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    header, *rows = out.splitlines()
    assert header.split() == ["plugin", "version", "origin", "integration", "tables", "hooks"]
    by_name = {row.split()[0]: row for row in rows}
    assert "2.3.4" in by_name["filed"]
    assert f"plugins_dir ({folder / 'filed.py'})" in by_name["filed"]
    assert by_name["filed"].rstrip().endswith("health, register")
    assert "0.9.0" in by_name["packaged"] and "event, register" in by_name["packaged"]
    assert "built-in" in by_name["log_alerts"] and by_name["log_alerts"].rstrip().endswith("alert")
    assert "entry point" in by_name["custom_accounting"]
    assert "sync" in by_name["custom_accounting"]


def test_plugins_command_shows_failures_and_exits_1(
    plugins_dir, tmp_path, capsys, monkeypatch, restore_logging
):
    for name in [n for n in os.environ if n.startswith("HUB_")]:
        monkeypatch.delenv(name)
    config = tmp_path / "hub.toml"
    config.write_text(f'[plugins]\ndir = "{plugins_dir("broken.py", "misspelt.py")}"\n')
    assert main(["plugins", "--config", str(config)]) == 1
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert "FAILED: import failed: RuntimeError: boom at import" in rows["broken"]
    assert "FAILED: unknown hook(s) healt (misspelt?)" in rows["misspelt"]
    assert "Traceback" not in out


def test_integrations_whose_record_tables_would_collide_are_refused():
    class First:
        @hookimpl
        def register(self) -> Integration:
            return Integration(name="a_b", title="A B", streams=(Stream("c"),))

    class Second:
        @hookimpl
        def register(self) -> Integration:
            return Integration(name="a", title="A", streams=(Stream("b_c"),))

    plugins = HubPlugins()
    plugins.add(First(), "first")
    with pytest.raises(PluginLoadError, match=r"would share a records table with a_b\.c"):
        plugins.add(Second(), "second")
    assert "a" not in plugins.integrations
