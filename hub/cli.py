"""The ``advisoros-hub`` command: serve, check, plugins, sync, demo, new-plugin.

Exit codes: 0 success, 1 a problem the user can fix (bad config, failed check or sync),
2 a usage error. Errors are one line naming the file, key or value at fault.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub import __version__
from hub.config import HubSettings, config_path_from_env, load_settings
from hub.errors import ConfigError, PluginTableError, StoreError
from hub.logs import configure_logging

if TYPE_CHECKING:
    from hub.plugins import HubPlugins
    from hub.store.database import Database
    from hub.store.plugin_migrations import SchemaState


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every sub-command."""
    parser = argparse.ArgumentParser(
        prog="advisoros-hub",
        description="Self-hosted integration hub for accounting firms: syncs providers into "
        "SQLite, receives verified webhooks, watches connection health.",
        epilog="Configuration: hub.toml (or --config / HUB_CONFIG), overridden by HUB_* "
        "environment variables such as HUB_SERVER__PORT=8800.",
    )
    parser.add_argument("--version", action="version", version=f"advisoros-hub {__version__}")
    config_help = "configuration file (default: $HUB_CONFIG, else ./hub.toml)"
    parser.add_argument("--config", type=Path, metavar="PATH", help=config_help)
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: given after the sub-command it wins, else the top-level value stays
    common.add_argument(
        "--config", type=Path, metavar="PATH", help=config_help, default=argparse.SUPPRESS
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("serve", parents=[common], help="run the daemon (the default)")
    check = sub.add_parser(
        "check", parents=[common], help="validate configuration, plugins and connection health"
    )
    check.add_argument(
        "--verbose", action="store_true", help="also print each connection's diagnostics dump"
    )
    sub.add_parser("plugins", parents=[common], help="list loaded plugins, origins and hooks")
    sync = sub.add_parser("sync", parents=[common], help="run one sync now, with progress")
    sync.add_argument("name", help="integration name (e.g. quickbooks)")
    sync.add_argument("--connection", metavar="ID", help="one connection (id or provider key)")
    sync.add_argument("--full", action="store_true", help="re-read everything, not only changes")
    sync.add_argument("--stream", action="append", metavar="NAME", help="only this stream")
    sub.add_parser(
        "demo", parents=[common], help="the daemon plus local sandbox providers, pre-connected"
    )
    new = sub.add_parser(
        "new-plugin", parents=[common], help="write a new plugin package (sandbox, tests)"
    )
    new.add_argument("name", help="integration name: lowercase letters, digits, _ (acme_books)")
    new.add_argument(
        "--dir",
        type=Path,
        default=Path(),
        metavar="D",
        help="folder to create the NAME project in (default: the current one)",
    )
    parser.set_defaults(command="serve", config=None)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    commands: dict[str, Callable[[argparse.Namespace, HubSettings], int]] = {
        "serve": _serve,
        "check": _check,
        "plugins": _plugins,
        "sync": _sync,
        "demo": _demo,
    }
    if args.command == "new-plugin":  # writes files only: no configuration needed
        return _new_plugin(args)
    try:
        settings = load_settings(args.config or config_path_from_env())
        configure_logging(settings.logging.level, settings.logging.format)
        return commands[args.command](args, settings)
    except (ConfigError, StoreError) as exc:
        for line in str(exc).splitlines():
            print(f"advisoros-hub: error: {line}", file=sys.stderr)
        return 1
    except sqlite3.DatabaseError as exc:  # a damaged file, found by a read at start
        print(
            f"advisoros-hub: error: {settings.store.path}: damaged ({exc}); restore it from a "
            "backup (see `advisoros-hub check` for what is wrong)",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `advisoros-hub plugins | head`
        sys.stderr.close()
        return 0


def _serve(args: argparse.Namespace, settings: HubSettings) -> int:
    from hub.daemon import serve

    return asyncio.run(serve(settings))


def _demo(args: argparse.Namespace, settings: HubSettings) -> int:
    from hub.daemon import demo

    return asyncio.run(demo(settings))


def _plugins(args: argparse.Namespace, settings: HubSettings) -> int:
    from hub.plugins import HubPlugins
    from hub.store.plugin_migrations import stored_states

    plugins = HubPlugins()
    plugins.load(settings.plugins)
    return _plugin_table(plugins, stored_states(settings.store.path))


def _plugin_table(plugins: HubPlugins, schemas: dict[str, SchemaState]) -> int:
    """Print the plugin table with each plugin's tables as the database has them; 1 if a
    plugin failed to load (or its tables to migrate, at the last start)."""
    rows, failed = [], 0
    for info in plugins.info.values():
        schema = schemas.get(_namespace(info.name))
        error = info.error or (f"tables: {schema.error}" if schema and schema.error else None)
        failed += error is not None
        tables = f"v{schema.version}: {', '.join(schema.tables)}" if schema else "-"
        hooks = f"FAILED: {error}" if error else ", ".join(info.hooks)
        rows.append(
            [info.name, info.version or "-", info.origin, info.integration or "-", tables, hooks]
        )
    _table(["plugin", "version", "origin", "integration", "tables", "hooks"], rows)
    return 1 if failed else 0


def _namespace(plugin: str) -> str:
    from hub.store.plugin_namespace import Namespace

    try:
        return Namespace.of(plugin).plugin
    except PluginTableError:
        return ""


def _check(args: argparse.Namespace, settings: HubSettings) -> int:
    from hub.core import Hub

    hub = Hub(settings)
    hub.load_plugins()
    print(f"configuration: ok ({args.config or 'hub.toml or defaults'})")
    return asyncio.run(_check_connections(hub, args.verbose))


async def _check_connections(hub: Any, verbose: bool) -> int:
    from hub.diagnostics import connection_diagnostics
    from hub.store.plugin_migrations import schema_states

    dumps: dict[str, Any] = {}
    await hub.start(deliver=False)  # which migrates plugin tables: list plugins after it
    try:
        problems = await _check_database(hub.store.db)
        _plugin_table(hub.plugins, await hub.store.db.read(schema_states))
        problems += len(hub.plugins.failed)
        rows = []
        for name in sorted(hub.plugins.integrations):
            connections = await hub.connections(name)
            if hub.settings_for(name) is None and not connections:
                rows.append([name, "-", "not configured", ""])
            for connection in connections:
                report = await hub.health.check(connection.id)
                if report.status.value != "healthy":
                    problems += 1
                detail = "; ".join(
                    f"{'ok' if c.ok else 'FAIL'} {c.name}{': ' + c.detail if c.detail else ''}"
                    for c in report.checks
                )
                rows.append([name, connection.id, report.status.value, report.message or detail])
                if report.message and detail:
                    rows.append(["", "", "", detail])
                if verbose:
                    dumps[connection.id] = await connection_diagnostics(hub, connection.id)
        print()
        _table(["integration", "connection", "health", "detail"], rows)
        for connection_id, dump in dumps.items():
            print(f"\ndiagnostics of {connection_id}:")
            print(json.dumps(dump, indent=2, default=str))
    finally:
        await hub.stop()
    print(f"\n{'no problems' if not problems else f'{problems} problem(s)'}")
    return 1 if problems else 0


async def _check_database(db: Database) -> int:
    """Print the database's state (its integrity checked to the end) as one line per
    problem, or ``database: ok``; return the number of problems."""
    from hub.readiness import database_problems

    if db.integrity.ok is None:  # too large to check whole when it was opened
        await db.check_integrity()
    problems = await database_problems(db)
    for problem in problems:
        print(f"{problem} ({db.path})")
    if not problems:
        print(f"database: ok ({db.path})")
    return len(problems)


def _sync(args: argparse.Namespace, settings: HubSettings) -> int:
    from hub.daemon import run_sync_command

    return asyncio.run(
        run_sync_command(settings, args.name, args.connection, args.full, args.stream)
    )


def _new_plugin(args: argparse.Namespace) -> int:
    from hub.scaffold import InvalidPluginName, next_steps, write_plugin

    try:
        root = write_plugin(args.name, args.dir)
    except InvalidPluginName as exc:
        print(f"advisoros-hub: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        reason = "already exists" if isinstance(exc, FileExistsError) else exc.strerror
        print(f"advisoros-hub: error: {args.dir / args.name}: {reason}", file=sys.stderr)
        return 1
    print(f"wrote plugin {args.name!r} in {root}:")
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        print(f"  {path.relative_to(root)}")
    print(next_steps(root, args.name))
    return 0


def _table(headers: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows, strict=False)]
    for row in [headers, *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=False)))


if __name__ == "__main__":
    sys.exit(main())
