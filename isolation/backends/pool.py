"""Things made ahead of demand by a background thread, each handed out once.

What the native backend's prepared namespaces (`nspool`) and prepared
sandboxes (`prepared`) share: per key, up to `size()` items are kept ready; a
daemon thread makes the missing ones when the subclass lets it; `release()`
disposes of every item and stops the thread (the next take starts it again);
`fork()` waits for an item being made, and the child starts empty (the
parent's items stay the parent's).
"""

from __future__ import annotations

import collections
import os
import threading
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")
Make = Callable[[], "T | None"]


class BackgroundPool(Generic[T]):
    env = ""  # the variable that sets how many items are kept per key (0: off)
    default_size = 1
    idle_wait = 30.0  # how long the thread sleeps with nothing to do (it then expires what is idle)

    def __init__(self, thread_name: str) -> None:
        self._thread_name = thread_name
        self._cond = threading.Condition()
        self._ready: collections.OrderedDict[Hashable, collections.deque[T]] = collections.OrderedDict()
        self._wanted: dict[Hashable, tuple[Make[T], float]] = {}  # key -> (make, last asked for)
        self._thread: threading.Thread | None = None
        self._generation = 0  # a thread runs while its generation is current
        # Held while an item is made and recorded: fork() waits for it, so a child
        # never inherits descriptors of an item the pool has not recorded yet.
        self._making = threading.Lock()
        os.register_at_fork(
            before=self._before_fork,
            after_in_parent=self._after_fork_in_parent,
            after_in_child=self._after_fork_in_child,
        )

    # -- what subclasses define --------------------------------------------------

    def dispose(self, item: T) -> None:
        """Let an item go unused."""
        raise NotImplementedError

    def forget(self, item: T) -> None:
        """In a child after fork(): drop this process's copy of a parent's item."""
        raise NotImplementedError

    def _hold_back(self, now: float) -> float:
        """Seconds to wait before making anything (called with the lock held)."""
        return 0.0

    def _expire(self, now: float) -> list[T]:
        """Items to let go because their key was not asked for lately (lock held)."""
        return []

    # -- the machinery --------------------------------------------------------------

    def size(self) -> int:
        try:
            return max(0, int(os.environ.get(self.env, self.default_size)))
        except ValueError:
            return self.default_size

    def _pop(self, key: Hashable, make: Make[T]) -> T | None:
        """With the lock held: a ready item for `key` or None; `key` is wanted from now on."""
        ready = self._ready.get(key)
        found = ready.popleft() if ready else None
        self._wanted[key] = (make, time.monotonic())
        self._ready.setdefault(key, collections.deque())
        self._ready.move_to_end(key)
        if self._thread is None:
            refill = self._refill
            thread = threading.Thread(target=refill, args=(self._generation,), name=self._thread_name, daemon=True)
            try:
                thread.start()
                self._thread = thread
            except RuntimeError:  # no thread to be had (RLIMIT_NPROC): nothing ahead of demand, runs build their own
                pass
        self._cond.notify()  # the thread works out when it may make the next one
        return found

    def _next(self) -> tuple[Hashable, Make[T]] | None:
        size = self.size()
        for key, (make, _) in self._wanted.items():
            if len(self._ready.get(key, ())) < size:
                return key, make
        return None

    def _refill(self, generation: int) -> None:
        while True:
            with self._cond:
                if self._generation != generation:
                    return
                gone = self._expire(time.monotonic())
                job = None if gone else self._next()
                if not gone:
                    hold = self._hold_back(time.monotonic()) if job is not None else 0.0
                    if job is None or hold > 0:
                        self._cond.wait(self.idle_wait if job is None else hold)
                        continue
            for item in gone:
                self.dispose(item)
            if job is None:
                continue
            key, make = job
            unused: T | None = None
            with self._making:
                try:
                    made = make()  # outside the condition's lock; cffi releases the GIL meanwhile
                except Exception:  # noqa: BLE001 - e.g. out of descriptors: a run on demand will say
                    made = None
                with self._cond:
                    if made is None:  # it could not be made: stop until the next take asks again
                        self._wanted.pop(key, None)
                    elif self._generation == generation and key in self._wanted:
                        self._ready.setdefault(key, collections.deque()).append(made)
                    else:
                        unused = made
            if unused is not None:
                self.dispose(unused)

    def release(self) -> None:
        """Dispose of every ready item and stop the thread (a later take starts it again)."""
        with self._cond:
            thread, self._thread = self._thread, None
            self._generation += 1
            self._cond.notify_all()
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        with self._cond:
            gone = [item for ready in self._ready.values() for item in ready]
            self._ready.clear()
            self._wanted.clear()
        for item in gone:
            self.dispose(item)

    def _before_fork(self) -> None:
        self._making.acquire()

    def _after_fork_in_parent(self) -> None:
        self._making.release()

    def _after_fork_in_child(self) -> None:
        self._making = threading.Lock()
        self._cond = threading.Condition()
        for ready in self._ready.values():
            for item in ready:
                self.forget(item)
        self._ready = collections.OrderedDict()
        self._wanted = {}
        self._thread = None
        self._generation += 1
