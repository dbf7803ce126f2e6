#!/usr/bin/env python3
# swapdirs.py A B - exchange the directory entries A and B (renameat2
# RENAME_EXCHANGE) in a loop until killed: a directory inside the spec dir and
# a symlink to a directory outside it trade places as fast as the kernel allows.
# Used by specdir_confine.bats as the attacker in the swap race.
import ctypes
import os
import sys

AT_FDCWD = -100
RENAME_EXCHANGE = 2

libc = ctypes.CDLL(None, use_errno=True)
a, b = (os.fsencode(p) for p in sys.argv[1:3])
print("swapping", flush=True)
while True:
    if libc.renameat2(AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE) != 0:
        e = ctypes.get_errno()
        sys.exit(f"renameat2: {os.strerror(e)}")
