"""glibc malloc tuning applied at hub start (the hub runs on Linux servers)."""

from __future__ import annotations

from hub import memory


def test_tune_malloc_applies_once(monkeypatch):
    monkeypatch.setattr(memory, "_done", False)
    assert memory.tune_malloc() is True
    assert memory.tune_malloc() is True  # idempotent
