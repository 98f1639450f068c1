"""isolation/landlock.py's FILE_RIGHTS is the one copy of "the rights a rule may grant
on a non-directory" (the C masks file rules with it): checked against the kernel."""

from __future__ import annotations

import ctypes
import os
import struct
import sys

from isolation import landlock

_SYS_CREATE_RULESET, _SYS_ADD_RULE = 444, 445  # the unified table: the same on x86_64 and aarch64
_RULE_PATH_BENEATH = 1


def _accepted_on_a_file(handled: int) -> set[int]:
    """Each handled right, alone, in a path-beneath rule on a regular file: the ones the kernel takes."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    attr = ctypes.create_string_buffer(struct.pack("=Q", handled))
    ruleset = libc.syscall(ctypes.c_long(_SYS_CREATE_RULESET), attr, ctypes.c_size_t(8), ctypes.c_uint32(0))
    assert ruleset >= 0, os.strerror(ctypes.get_errno())
    fd = os.open(sys.executable, os.O_PATH | os.O_CLOEXEC)
    accepted = set()
    try:
        for bit in (1 << i for i in range(handled.bit_length()) if handled & (1 << i)):
            rule = ctypes.create_string_buffer(struct.pack("=Qi", bit, fd))
            rc = libc.syscall(ctypes.c_long(_SYS_ADD_RULE), ctypes.c_long(ruleset), _RULE_PATH_BENEATH, rule, 0)
            if rc == 0:
                accepted.add(bit)
            else:
                assert ctypes.get_errno() == 22, os.strerror(ctypes.get_errno())  # EINVAL: not for a file
    finally:
        os.close(fd)
        os.close(ruleset)
    return accepted


def test_file_rights_are_exactly_what_the_kernel_accepts_on_a_file() -> None:
    handled = landlock.handled_fs(landlock.kernel_abi())
    accepted = _accepted_on_a_file(handled)
    assert accepted == {bit for bit in (1 << i for i in range(16)) if landlock.FILE_RIGHTS & handled & bit}
    assert landlock.READ_DIR & handled and landlock.READ_DIR not in accepted  # control: a right the kernel refuses
