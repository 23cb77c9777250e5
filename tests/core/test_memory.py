"""Process-wide memory tuning applied at hub start: glibc malloc and the garbage collector."""

from __future__ import annotations

import gc

from hub import memory


def test_tune_malloc_applies_once(monkeypatch):
    monkeypatch.setattr(memory, "_done", False)
    assert memory.tune_malloc() is True
    assert memory.tune_malloc() is True  # idempotent


def test_tune_gc_raises_the_young_threshold_and_keeps_a_higher_one():
    saved = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)
        assert memory.tune_gc() == memory.GC_YOUNG_THRESHOLD
        assert gc.get_threshold() == (memory.GC_YOUNG_THRESHOLD, 10, 10)
        gc.set_threshold(200_000, 5, 5)  # an operator's own, higher setting stays
        assert memory.tune_gc() == 200_000
        assert gc.get_threshold() == (200_000, 5, 5)
    finally:
        gc.set_threshold(*saved)
