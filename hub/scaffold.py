"""``advisoros-hub new-plugin NAME``: write a new plugin project in the standard shape.

The templates are package data under ``hub/plugin_template/``: each ``*.tmpl`` file becomes
the file without that suffix, ``PLUGIN`` in a path becomes the plugin's name, and
``$name``, ``$title``, ``$upper`` and ``$dist`` in a text are substituted
(:class:`string.Template`). The result is the example plugin's shape: a ``pyproject.toml``
with the ``advisoros_hub`` entry point, the package (hooks only in ``__init__.py``, then
``settings``, ``client``, ``sync``, ``webhooks``, ``health``, ``tables``, ``sandbox``) and a
test module that passes against the sandbox.
"""

from __future__ import annotations

import keyword
import re
import string
import sys
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

NAME_RE = re.compile(r"[a-z][a-z0-9_]{0,29}")
RESERVED = frozenset({"hub", "plugins", "tests", "generic", "hub_plugins_dir"})
"""Names a plugin package cannot take: the hub's own packages and webhook sources."""


class InvalidPluginName(ValueError):
    """The plugin name is not usable (a usage error)."""


def check_name(name: str) -> str:
    """Return ``name`` if it can name an integration and its package.

    :raise InvalidPluginName: not a lowercase identifier of at most 30 characters, a Python
        keyword, a standard-library module or a name the hub uses.
    """
    if not NAME_RE.fullmatch(name):
        raise InvalidPluginName(
            f"invalid plugin name {name!r}: use a lowercase letter, then lowercase letters, "
            "digits or _ (at most 30), e.g. acme_books"
        )
    if keyword.iskeyword(name) or name in sys.stdlib_module_names or name in RESERVED:
        raise InvalidPluginName(f"invalid plugin name {name!r}: it is taken by Python or the hub")
    return name


def render(name: str) -> dict[str, str]:
    """Every file of a new plugin ``name``: relative path → text."""
    words = check_name(name).split("_")
    values = {
        "name": name,
        "title": " ".join(word.capitalize() for word in words if word),
        "upper": name.upper(),
        "dist": name.replace("_", "-"),
    }
    return {
        path.removesuffix(".tmpl").replace("PLUGIN", name): string.Template(
            template.read_text(encoding="utf-8")
        ).substitute(values)
        for path, template in _templates(files("hub") / "plugin_template", "")
    }


def _templates(folder: Traversable, prefix: str) -> list[tuple[str, Traversable]]:
    found: list[tuple[str, Traversable]] = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.is_dir():
            found += _templates(entry, f"{prefix}{entry.name}/")
        elif entry.name.endswith(".tmpl"):
            found.append((prefix + entry.name, entry))
    return found


def write_plugin(name: str, parent: Path) -> Path:
    """Write the project of plugin ``name`` into ``parent/name`` and return that folder.

    :raise InvalidPluginName: see :func:`check_name`.
    :raise FileExistsError: ``parent/name`` exists (nothing is overwritten).
    """
    texts = render(name)
    root = parent / name
    root.mkdir(parents=True, exist_ok=False)
    for relative, text in texts.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def next_steps(root: Path, name: str) -> str:
    """What to run after :func:`write_plugin`."""
    return (
        f"next steps:\n"
        f"  cd {root}\n"
        f"  pip install -e '.[test]'   # into the hub's virtualenv: the entry point loads it\n"
        f"  pytest                      # a sync, a signed webhook and health, on the sandbox\n"
        f"  ruff check . && ruff format --check . && mypy\n"
        f"then replace the sandbox and {name}/client.py with the real API, step by step"
    )
