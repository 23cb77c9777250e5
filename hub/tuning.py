"""Process-wide interpreter tuning applied when a hub opens its store.

- glibc: large buffers (provider pages of megabytes) are served by ``mmap`` and returned to
  the system when freed, instead of fragmenting the heap.
- CPython's cyclic garbage collector runs after far more allocations than its default: a
  sync holds a parsed provider page (tens of thousands of dicts and lists, no cycles) per
  batch, and with the default threshold of 700 every page is scanned in all three
  generations and a full collection follows every few pages (a fifth of a sync's time).
- The GIL changes hands after 0.5 ms instead of 5: the store's writer thread, which runs
  SQLite without the GIL, needs it back briefly between statements, and while the event loop
  parses the next page it would otherwise wait up to 5 ms each time (a fifth of a sync's
  writes spent waiting).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
# Above 256 KiB: asyncio reads sockets into 256 KiB buffers, which must stay on the heap (an
# mmap and munmap per read cost a quarter of the webhook path's throughput).
MMAP_THRESHOLD_BYTES = 512 * 1024
TRIM_THRESHOLD_BYTES = 4 * MMAP_THRESHOLD_BYTES

GC_YOUNG_THRESHOLD = 50_000
"""Net container allocations between two young-generation collections (CPython: 700)."""
SWITCH_INTERVAL_S = 0.0005
"""How long a thread holds the GIL while another waits for it (CPython: 0.005)."""

_done = False


def tune_malloc() -> bool:
    """Fix glibc's mmap threshold (which otherwise grows after the first large free, moving
    multi-megabyte buffers onto the heap where they fragment it); True if applied."""
    global _done
    if _done or not sys.platform.startswith("linux"):
        return _done
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    _done = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    )
    return _done


def tune_gc() -> int:
    """Raise the young generation's collection threshold to :data:`GC_YOUNG_THRESHOLD`
    (never lower it: an operator's own setting stays); return the threshold in force."""
    young, middle, old = gc.get_threshold()
    if young < GC_YOUNG_THRESHOLD:
        gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)
    return gc.get_threshold()[0]


def tune_switch_interval() -> float:
    """Lower the GIL's switch interval to :data:`SWITCH_INTERVAL_S` (never raise it: an
    operator's own, shorter setting stays); return the interval in force."""
    if sys.getswitchinterval() > SWITCH_INTERVAL_S:
        sys.setswitchinterval(SWITCH_INTERVAL_S)
    return sys.getswitchinterval()
