"""Runs inside the sandbox: call one Python stage with JSON arguments, reply with JSON.

Started by `isolation.stage` as ``python -I -c BOOT PATH...``. The request
(module or file, qualname, args, kwargs) arrives on stdin; the reply is one
JSON object on the original stdout. Everything the stage itself prints goes
to stderr, so nothing it prints can be mistaken for the reply.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import sys
import traceback
from types import ModuleType
from typing import Any

# The name a stage defined in a script (``__main__`` in the caller) is loaded
# under, so the script's ``if __name__ == "__main__":`` block does not run again.
SCRIPT_MODULE = "__isolation_stage_script__"


def _load(request: dict[str, Any]) -> Any:
    if request.get("file"):
        spec = importlib.util.spec_from_file_location(SCRIPT_MODULE, request["file"])
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load {request['file']}")
        module: ModuleType = importlib.util.module_from_spec(spec)
        sys.modules[SCRIPT_MODULE] = module
        spec.loader.exec_module(module)
    else:
        module = importlib.import_module(request["module"])
    obj: Any = module
    for part in request["qualname"].split("."):
        obj = getattr(obj, part)
    return obj.func if getattr(obj, "is_isolation_stage", False) else obj


def _write(fd: int, text: str) -> None:
    data = memoryview(text.encode())
    while data:
        data = data[os.write(fd, data) :]


def main() -> None:
    reply_fd = os.dup(1)  # close-on-exec: the stage's own subprocesses cannot write the reply
    os.dup2(2, 1)
    try:
        request = json.load(sys.stdin)
        value = _load(request)(*request["args"], **request["kwargs"])
        try:
            reply = json.dumps({"ok": True, "value": value}, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"the stage's return value is not JSON data: {exc}") from None
    except BaseException as exc:  # every failure, SystemExit included, is reported as data
        error = {
            "ok": False,
            "type": f"{type(exc).__module__}.{type(exc).__qualname__}",
            "message": str(exc),
            "traceback": traceback.format_exc(),
        }
        reply = json.dumps(error)
    sys.stdout.flush()
    _write(reply_fd, reply + "\n")


if __name__ == "__main__":
    main()
