"""Process-wide tuning applied at hub start: glibc malloc, the garbage collector, the GIL."""

from __future__ import annotations

import gc
import sys

import pytest

from hub import tuning


def test_tune_malloc_applies_once(monkeypatch):
    monkeypatch.setattr(tuning, "_done", False)
    assert tuning.tune_malloc() is True
    assert tuning.tune_malloc() is True  # idempotent


def test_tune_gc_raises_the_young_threshold_and_keeps_a_higher_one():
    saved = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)
        assert tuning.tune_gc() == tuning.GC_YOUNG_THRESHOLD
        assert gc.get_threshold() == (tuning.GC_YOUNG_THRESHOLD, 10, 10)
        gc.set_threshold(200_000, 5, 5)  # an operator's own, higher setting stays
        assert tuning.tune_gc() == 200_000
        assert gc.get_threshold() == (200_000, 5, 5)
    finally:
        gc.set_threshold(*saved)


def test_tune_switch_interval_shortens_it_and_keeps_a_shorter_one():
    saved = sys.getswitchinterval()
    try:
        sys.setswitchinterval(0.005)
        assert tuning.tune_switch_interval() == pytest.approx(tuning.SWITCH_INTERVAL_S)
        sys.setswitchinterval(0.0001)  # an operator's own, shorter setting stays
        assert tuning.tune_switch_interval() == pytest.approx(0.0001)
    finally:
        sys.setswitchinterval(saved)
