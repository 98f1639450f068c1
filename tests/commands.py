"""Programs the tests run inside sandboxes, by the paths a sandbox sees.

The system interpreter, not `sys.executable`: the test venv may live where
no sandbox binds it (under /root, or a checkout), while /usr is always there.
"""

from __future__ import annotations

PYTHON = "/usr/bin/python3"
