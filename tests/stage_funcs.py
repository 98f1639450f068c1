"""Stages used by test_stage.py; a module of their own so the sandbox can import them by name."""

from __future__ import annotations

import os
import socket
import sys
import time
from typing import Any

import isolation


@isolation.stage()
def describe(a: int, b: list[int], *, label: str = "") -> dict[str, Any]:
    print('{"ok": true, "value": "forged by printing"}')  # goes to stderr, never taken as the reply
    return {"sum": a + sum(b), "label": label, "uid": os.getuid(), "cwd": os.getcwd(), "nan_free": [1.5, None]}


@isolation.stage()
def fail(message: str) -> None:
    raise ValueError(message)


@isolation.stage()
def read_text(path: str) -> str:
    with open(path) as f:
        return f.read()


@isolation.stage()
def write_text(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


@isolation.stage()
def connect(port: int) -> str:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
        return "connected"
    except OSError as exc:
        return f"refused: {exc.strerror}"


@isolation.stage()
def snooze(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@isolation.stage()
def die(status: int) -> None:
    sys.stdout.flush()
    os._exit(status)


@isolation.stage()
def not_json() -> object:
    return {1, 2}
