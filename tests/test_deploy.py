"""The systemd unit in deploy/: accepted by ``systemd-analyze verify`` and safe by default.

``verify`` rejects a unit whose ExecStart binary does not exist, and the unit points at the
production path (/opt/advisoros-hub/.venv/bin/advisoros-hub). The test therefore verifies a
copy in a temporary directory whose ExecStart names this environment's real console script;
every other line is checked as written. ``make test-deps`` installs systemd-analyze (Debian
package ``systemd``) when it is missing, so this test never skips.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "deploy" / "advisoros-hub.service"
PRODUCTION_BINARY = "/opt/advisoros-hub/.venv/bin/advisoros-hub"


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """``{section: {key: [values]}}``; systemd allows a key more than once."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"key outside a section: {line!r}"
        key, sep, value = line.partition("=")
        assert sep, f"not a key=value line: {line!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def service() -> dict[str, list[str]]:
    return parse_unit(UNIT.read_text())["Service"]


def last(values: dict[str, list[str]], key: str) -> str | None:
    return values[key][-1] if values.get(key) else None


def console_script() -> Path:
    """The ``advisoros-hub`` script installed beside this interpreter."""
    path = Path(sys.executable).parent / "advisoros-hub"
    assert path.is_file(), f"{path} is missing: install the project (make test-deps)"
    return path


def test_systemd_analyze_verify_accepts_the_unit(tmp_path):
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is not installed: run `make test-deps` (Debian: systemd)"
    text = UNIT.read_text()
    exec_start = f"ExecStart={PRODUCTION_BINARY} "
    assert text.count(exec_start) == 1, f"expected one line starting with {exec_start!r}"
    copy = tmp_path / UNIT.name
    copy.write_text(text.replace(exec_start, f"ExecStart={console_script()} "))

    result = subprocess.run(
        [analyze, "verify", "--man=no", str(copy)],
        capture_output=True,
        text=True,
        timeout=60,
    )

    about_unit = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if str(copy) in line or UNIT.name in line
    ]
    assert result.returncode == 0, result.stdout + result.stderr
    assert about_unit == [], "\n".join(about_unit)


def test_unit_restarts_on_failure_and_stops_with_sigterm():
    values = service()
    assert last(values, "Restart") == "on-failure"
    assert last(values, "KillSignal") == "SIGTERM"
    timeout = last(values, "TimeoutStopSec")
    assert timeout is not None and timeout.isdigit()
    assert int(timeout) > 5, "must exceed server.shutdown_timeout (default 5 s)"


def test_unit_runs_unprivileged():
    values = service()
    dynamic = (last(values, "DynamicUser") or "no").lower() in {"yes", "true", "1", "on"}
    user = last(values, "User")
    assert dynamic or (user is not None and user not in {"", "root", "0"})
    assert (last(values, "NoNewPrivileges") or "").lower() in {"yes", "true", "1", "on"}
    assert last(values, "ProtectSystem") == "strict"
    assert last(values, "CapabilityBoundingSet") == ""


def test_unit_paths():
    values = service()
    assert last(values, "ExecStart") == (
        f"{PRODUCTION_BINARY} serve --config /etc/advisoros-hub/hub.toml"
    )
    assert last(values, "StateDirectory") == "advisoros-hub"
    assert last(values, "WorkingDirectory") == "/var/lib/advisoros-hub"
    assert "/var/lib/advisoros-hub" in (last(values, "ReadWritePaths") or "").split()
    assert last(values, "EnvironmentFile") == "-/etc/advisoros-hub/env"


def test_unit_gives_room_for_many_connections():
    limit = last(service(), "LimitNOFILE")
    assert limit is not None and limit.isdigit(), "LimitNOFILE= one number (soft = hard)"
    # server.max_connections defaults to half the limit: thousands, not systemd's 512
    assert int(limit) >= 16384
