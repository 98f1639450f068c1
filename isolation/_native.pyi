"""Type stub for the cffi-built extension (native/build.py)."""

from typing import Any

ffi: Any
lib: Any
