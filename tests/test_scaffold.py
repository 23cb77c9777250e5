"""``advisoros-hub new-plugin``: a scaffolded plugin has the standard shape, obeys the import
contract, passes its own tests (loaded as a module and through its entry point) and lint;
bad names are usage errors and an existing target is never overwritten."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from hub.cli import main
from hub.scaffold import write_plugin
from tests import test_contract as shape  # its checks, called here (not collected again)
from tests.core.test_contract import private_hub_imports

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
NAME = "acme_books"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A plugin project scaffolded once for this module's tests."""
    return write_plugin(NAME, tmp_path_factory.mktemp("scaffold"))


def run(project: Path, *command: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``command`` in the project folder; fail the test unless it succeeds."""
    done = subprocess.run(
        command,
        cwd=project,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"{command}:\n{done.stdout}\n{done.stderr}"
    return done


def test_the_project_has_the_standard_shape(project):
    package = project / NAME
    assert {*shape.PLUGIN_FILES, "tables.py"} <= {path.name for path in package.iterdir()}
    shape.test_plugin_init_holds_only_hook_implementations(package)
    pyproject = tomllib.loads((project / "pyproject.toml").read_text())
    assert pyproject["project"]["entry-points"]["advisoros_hub"] == {NAME: NAME}
    assert (project / "tests" / f"test_{NAME}.py").is_file()


def test_the_generated_code_imports_only_the_public_api(project):
    sources = sorted(project.rglob("*.py"))
    assert len(sources) == 9
    assert {str(path): private_hub_imports(path.read_text()) for path in sources} == {
        str(path): [] for path in sources
    }


@pytest.mark.parametrize("installed", [False, True], ids=["as a module", "by entry point"])
def test_the_generated_tests_pass(project, tmp_path, installed):
    paths = [str(project), *filter(None, [os.environ.get("PYTHONPATH")])]
    if installed:  # what `pip install -e .` adds, so the hub loads it by its entry point
        dist = tmp_path / "advisoros_hub_acme_books-0.1.0.dist-info"
        dist.mkdir()
        (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: advisoros-hub-acme-books\n")
        (dist / "entry_points.txt").write_text(f"[advisoros_hub]\n{NAME} = {NAME}\n")
        paths.append(str(tmp_path))
        listed = run(
            project,
            str(BIN / "advisoros-hub"),
            "plugins",
            PYTHONPATH=os.pathsep.join(paths),
            HUB_STORE__PATH=str(tmp_path / "hub.db"),
        )
        (row,) = [line for line in listed.stdout.splitlines() if line.startswith(NAME)]
        assert "entry point" in row and "FAILED" not in row
    done = run(
        project,
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        PYTHONPATH=os.pathsep.join(paths),
    )
    assert "4 passed" in done.stdout


def test_the_generated_code_passes_lint(project, tmp_path):
    run(project, str(BIN / "ruff"), "check", "--no-cache", ".")
    run(project, str(BIN / "ruff"), "format", "--check", "--no-cache", ".")
    # The hub here is an editable install (an import hook mypy cannot follow): give mypy its
    # sources, silenced like an installed package's, so only the plugin's code is judged.
    run(
        project,
        str(BIN / "mypy"),
        "--follow-imports=silent",
        "--cache-dir",
        str(tmp_path / "mypy"),
        MYPYPATH=str(ROOT),
    )


def test_the_command_prints_what_it_wrote_and_never_overwrites(tmp_path, capsys):
    assert main(["new-plugin", NAME, "--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"{NAME}/webhooks.py" in out and f"tests/test_{NAME}.py" in out
    assert "pip install -e" in out and "pytest" in out
    settings = tmp_path / NAME / NAME / "settings.py"
    settings.write_text("# the author's work\n")

    assert main(["new-plugin", NAME, "--dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err == f"advisoros-hub: error: {tmp_path / NAME}: already exists\n"
    assert settings.read_text() == "# the author's work\n"


@pytest.mark.parametrize(
    "name", ["AcmeBooks", "acme-books", "1acme", "_acme", "", "class", "json", "hub", "a" * 31]
)
def test_bad_names_are_usage_errors(tmp_path, capsys, name):
    assert main(["new-plugin", name, "--dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"advisoros-hub: error: invalid plugin name {name!r}")
    assert err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_every_template_is_package_data():
    """An installed (not editable) hub has the templates only if package-data names them."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    globs = pyproject["tool"]["setuptools"]["package-data"]["hub"]
    packaged = {path for pattern in globs for path in (ROOT / "hub").glob(pattern)}
    templates = {path for path in (ROOT / "hub" / "plugin_template").rglob("*") if path.is_file()}
    assert templates and templates <= packaged
