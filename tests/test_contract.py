"""Meta-tests of the plugin contract: every hook documented, every plugin the same shape."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import custom_accounting
import pytest

import plugins
from hub import hookspecs

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
HOOKS = [
    name
    for name, value in vars(hookspecs).items()
    if inspect.isfunction(value) and hasattr(value, "advisoros_hub_spec")
]
PLUGIN_FILES = (
    "__init__.py",
    "settings.py",
    "client.py",
    "sync.py",
    "webhooks.py",
    "health.py",
    "sandbox.py",
)
PACKAGES = sorted(
    [p for p in Path(plugins.__file__).parent.iterdir() if (p / "__init__.py").is_file()]
    + [Path(custom_accounting.__file__).parent]
)


def test_the_contract_has_the_hooks_of_the_design():
    assert {
        "authenticate",
        "sync",
        "webhook",
        "health",
        "register",
        "routes",
        "event",
        "alert",
        "startup",
        "shutdown",
    } <= set(HOOKS)


@pytest.mark.parametrize("name", HOOKS)
def test_every_hook_has_a_docstring_and_a_readme_row_with_its_exact_signature(name):
    spec = getattr(hookspecs, name)
    assert inspect.getdoc(spec), f"{name} has no docstring"
    signature = f"{name}{inspect.signature(spec)}".replace("'", "").replace("|", "\\|")
    assert f"| `{signature}` |" in README, f"README has no row for {signature}"


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.name)
def test_every_plugin_package_has_the_same_files(package):
    missing = [f for f in PLUGIN_FILES if not (package / f).is_file()]
    assert not missing, f"{package.name} lacks {missing}"


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.name)
def test_plugin_init_holds_only_hook_implementations(package):
    tree = ast.parse((package / "__init__.py").read_text())
    public = [
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and not node.name.startswith("_")
    ]
    decorated = {
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and any(re.search(r"hookimpl", ast.unparse(d)) for d in node.decorator_list)
    }
    assert public and set(public) <= decorated, f"not hooks: {sorted(set(public) - decorated)}"
    assert set(public) <= set(HOOKS), f"unknown hooks: {sorted(set(public) - set(HOOKS))}"
