"""Giving memory back to the system after start-up and after many grants ended.

CPython frees objects into its own pools and glibc's heap, and glibc returns the top of the
heap only: a start-up that parsed ten thousand grants, or a burst of ends, leaves the RSS near
its peak long after the objects are gone. `release()` collects cycles and asks glibc to hand
back every free page (`malloc_trim(0)`, a no-op where the C library is not glibc).

`GrantCountWatch` decides when that is worth it: once after start-up, and after the number of
live grants fell by half since its last high point (at least `_MIN_FALL` grants), a few seconds
after the fall stopped, then once more later, when the connections that burst opened (the API
server's admission calls, kopf's and our own) have been closed and their buffers freed.

TLS connections: asyncio gives each one a 256 KiB read buffer. Under a burst the API server
opens hundreds of connections to the admission webhook at once, so `limit_tls_buffers()`
lowers it to 32 KiB (two full TLS records): reads take a few more turns, and a thousand
connections cost 32 MiB instead of 256 MiB.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import logging
import time
from asyncio import sslproto
from collections.abc import Callable

log = logging.getLogger(__name__)

TLS_READ_BUFFER = 32 * 1024
_MIN_FALL = 500  # fewer grants than this going away is not worth a trim
_QUIET = 5.0  # seconds without a further fall before trimming
_AFTER_START = 30.0  # seconds: the watches' first listings have been handled by then
_AGAIN = 90.0  # seconds later, once more: a burst's keep-alive connections have closed by then


def limit_tls_buffers(size: int = TLS_READ_BUFFER) -> None:
    """New TLS connections of this process read into `size` bytes instead of 256 KiB."""
    if getattr(sslproto.SSLProtocol, "max_size", 0) > size:
        sslproto.SSLProtocol.max_size = size


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim: Callable[[int], int] = libc.malloc_trim
    except (OSError, AttributeError):
        return None  # not glibc (musl, macOS): nothing to ask
    return trim


_TRIM = _malloc_trim()


def release(reason: str) -> None:
    """Collect garbage and return free heap pages to the system."""
    began = time.monotonic()
    collected = gc.collect()
    trimmed = bool(_TRIM(0)) if _TRIM is not None else False
    log.debug(
        "memory released (%s): %d objects collected, pages returned: %s, %.0f ms",
        reason,
        collected,
        trimmed,
        (time.monotonic() - began) * 1000,
    )


class GrantCountWatch:
    """Calls `release()` when the number of live grants has fallen a lot, once it settles."""

    def __init__(self, count: Callable[[], int]) -> None:
        self._count = count
        self._high = 0
        self._pending: asyncio.TimerHandle | None = None

    def started(self) -> None:
        """Start-up is over: its listings and parsed bodies are garbage now. The watches list
        every kind once more as they begin (kopf, one event per object): trim again after."""
        release("start-up")
        self._high = self._count()
        self._schedule(_AFTER_START, again=False)

    def changed(self) -> None:
        """Call when a grant left the view (cheap: a comparison)."""
        now = self._count()
        if now > self._high:
            self._high = now
            return
        if self._high - now >= max(_MIN_FALL, self._high // 2):
            self._schedule(_QUIET, again=True)

    def grew(self) -> None:
        now = self._count()
        if now > self._high:
            self._high = now

    def _schedule(self, delay: float, *, again: bool) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        if self._pending is not None:
            self._pending.cancel()  # still falling: wait until it settles
        self._pending = loop.call_later(delay, self._fire, again)

    def _fire(self, again: bool) -> None:
        self._pending = None
        self._high = self._count()
        release("settled")
        if again:
            self._schedule(_AGAIN, again=False)

    def stop(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
