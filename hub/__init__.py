"""advisoros-hub: a self-hosted, plugin-based integration hub for accounting firms."""

from hub.hookspecs import hookimpl

__version__ = "0.1.0"
__all__ = ["__version__", "hookimpl"]
