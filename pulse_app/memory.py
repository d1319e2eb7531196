"""Memory for decoded images: a byte budget that decodes reserve, and freed memory handed back.

A small PNG can declare tens of megapixels; decoding it costs ~4 bytes a pixel, several times
over while it is converted. :class:`MemoryBudget` bounds what decodes hold at once: each
reserves its estimated peak before decoding and waits (at most ``wait_s``) for room, so eight
such uploads at once are decoded a few at a time instead of all together. One budget per
capacity and process (:func:`decode_budget`); the capacity is the ``image_memory_mb`` setting.

:func:`return_freed_memory` asks glibc to give freed pages back to the system
(``malloc_trim``): without it a process that once decoded a big image keeps its peak size.

>>> budget = MemoryBudget(100_000_000)
>>> with budget.reserve(60_000_000, "a.png"):
...     budget.in_use
60000000
>>> budget.in_use
0
>>> with budget.reserve(150_000_000, "huge.png"):
...     pass
Traceback (most recent call last):
...
pulse_app.errors.ImageRejected: huge.png needs about 150 MB of memory to open, more than this server allows for one image (100 MB). export or photograph it at a lower resolution
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import threading
from contextlib import contextmanager
from typing import Iterator

from pulse_app.errors import ImageRejected, ServerBusy

#: Bytes a decoded pixel takes in Pillow (RGB is stored as 4 bytes; RGBA, I, F are 4).
BYTES_PER_PIXEL = 4
#: Longest wait for room in the budget before an upload is turned away.
WAIT_S = 60.0


class MemoryBudget:
    """``capacity`` bytes shared by the decodes of this process (thread-safe)."""

    def __init__(self, capacity: int, wait_s: float = WAIT_S):
        self.capacity, self.wait_s = int(capacity), float(wait_s)
        self.in_use = 0
        self._room = threading.Condition()

    @contextmanager
    def reserve(self, nbytes: int, name: str) -> Iterator[None]:
        """Hold ``nbytes`` of the budget for the block; wait for room, at most ``wait_s``."""
        nbytes = max(0, int(nbytes))
        if nbytes > self.capacity:
            raise ImageRejected(f"{name} needs about {nbytes / 1e6:,.0f} MB of memory to open, "
                                f"more than this server allows for one image "
                                f"({self.capacity / 1e6:,.0f} MB)",
                                hint="export or photograph it at a lower resolution")
        with self._room:
            if not self._room.wait_for(lambda: self.in_use + nbytes <= self.capacity,
                                       timeout=self.wait_s):
                raise ServerBusy("the server is busy opening other uploads",
                                 hint="try again in a minute")
            self.in_use += nbytes
        try:
            yield
        finally:
            with self._room:
                self.in_use -= nbytes
                self._room.notify_all()


@functools.cache
def decode_budget(capacity: int) -> MemoryBudget:
    """The process's budget of ``capacity`` bytes (one per capacity: normally one)."""
    return MemoryBudget(capacity)


@functools.cache
def _libc():
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "malloc_trim") else None


def return_freed_memory() -> bool:
    """Give freed heap pages back to the system (glibc ``malloc_trim``); False elsewhere."""
    libc = _libc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True
