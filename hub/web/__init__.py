"""The hub's aiohttp application: health, API, metrics, admin page and plugin routes."""
