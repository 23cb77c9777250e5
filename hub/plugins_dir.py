"""Importing the plugins of ``plugins.dir``: loose ``.py`` files and packages.

Each is imported as a submodule of :data:`PLUGINS_DIR_PACKAGE`, so a dropped-in package's
relative imports resolve; names starting with ``_`` or ``.`` are skipped.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path


def plugin_files(directory: Path) -> list[Path]:
    """The plugin files and packages in ``directory`` (none if it does not exist), sorted."""
    if not directory.is_dir():
        return []
    return sorted(
        path
        for path in directory.iterdir()
        if not path.name.startswith(("_", "."))
        and ((path.suffix == ".py" and path.is_file()) or (path / "__init__.py").is_file())
    )


PLUGINS_DIR_PACKAGE = "hub_plugins_dir"


def import_path(path: Path) -> types.ModuleType:
    """Import the plugin file or package at ``path``."""
    if PLUGINS_DIR_PACKAGE not in sys.modules:  # the parent that relative imports resolve in
        parent = types.ModuleType(PLUGINS_DIR_PACKAGE, "Plugins loaded from plugins.dir")
        parent.__path__ = []
        sys.modules[PLUGINS_DIR_PACKAGE] = parent
    module_name = f"{PLUGINS_DIR_PACKAGE}.{path.stem if path.suffix == '.py' else path.name}"
    if path.is_dir():
        spec = importlib.util.spec_from_file_location(
            module_name, path / "__init__.py", submodule_search_locations=[str(path)]
        )
    else:
        spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module
