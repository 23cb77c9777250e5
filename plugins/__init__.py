"""The built-in provider plugins, one package each with the same files (see DESIGN.md)."""
