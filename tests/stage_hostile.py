"""Hostile stages for test_stage.py: they write their own "reply" past the worker's JSON encoding."""

from __future__ import annotations

import fcntl
import os
import stat

import isolation


def _reply_fd() -> int:
    """The worker's reply descriptor: the write end of a pipe above 2 (fd 1 is stderr by now)."""
    for fd in range(3, 64):
        try:
            mode = os.fstat(fd).st_mode
        except OSError:
            continue
        if stat.S_ISFIFO(mode) and fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_WRONLY:
            return fd
    raise RuntimeError("no reply descriptor")


def _send(chunks: list[bytes]) -> None:
    fd = _reply_fd()
    for chunk in chunks:
        view = memoryview(chunk)
        while view:
            view = view[os.write(fd, view) :]
    os._exit(0)


@isolation.stage()
def deep(levels: int) -> None:
    """A reply nested `levels` deep (json.loads would recurse once per level)."""
    _send([b'{"ok": true, "value": ', b"[" * levels, b"]" * levels, b"}\n"])


@isolation.stage()
def huge(mib: int) -> None:
    """A valid reply of `mib` MiB: a list of empty lists, the costliest JSON to decode per byte."""
    _send([b'{"ok": true, "value": [[]', *([b",[]" * (1 << 18)] * (mib * 4 // 3)), b"]}\n"])
