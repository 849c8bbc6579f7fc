#!/usr/bin/env python3
"""What one 64 KiB O_DIRECT write + fdatasync costs, by how the file's blocks were prepared:
`fallocate` (unwritten extents, as Spate preallocates segments: every write converts an
extent, so every fdatasync also writes the file's metadata), `zeroed` (blocks written once
before: the fdatasync only flushes the device), `extend` (no preallocation: each write
allocates). Also tries FALLOC_FL_WRITE_ZEROES (Linux 6.17+), which allocates written zeroed
blocks through the device's write-zeroes offload, where the device has one.

Usage: sync-cost.py DIR [SECONDS_EACH]
"""

import ctypes
import mmap
import os
import sys
import time

DIR = sys.argv[1]
SECONDS = float(sys.argv[2]) if len(sys.argv) > 2 else 4.0
BLOCK, SIZE = 64 * 1024, 256 << 20
FALLOC_FL_WRITE_ZEROES = 0x80
libc = ctypes.CDLL("libc.so.6", use_errno=True)


def prepared(mode):
    path = os.path.join(DIR, f"sync-cost-{mode}")
    fd = os.open(path, os.O_CREAT | os.O_RDWR | os.O_TRUNC | os.O_DIRECT, 0o644)
    if mode == "fallocate":
        os.posix_fallocate(fd, 0, SIZE)
    elif mode == "zeroed":
        zeros = mmap.mmap(-1, 1 << 20)
        for offset in range(0, SIZE, 1 << 20):
            os.pwrite(fd, zeros, offset)
        os.fsync(fd)
    elif mode == "write-zeroes":
        if libc.fallocate(fd, FALLOC_FL_WRITE_ZEROES, ctypes.c_long(0), ctypes.c_long(SIZE)):
            error = os.strerror(ctypes.get_errno())
            os.close(fd)
            os.unlink(path)
            return None, f"FALLOC_FL_WRITE_ZEROES: {error}"
    return fd, path


def main():
    data = mmap.mmap(-1, BLOCK)
    data.write(b"x" * BLOCK)
    for mode in ["fallocate", "zeroed", "extend", "write-zeroes", "fallocate", "zeroed"]:
        fd, path = prepared(mode)
        if fd is None:
            print(f"{mode:13s}: not available ({path})")
            continue
        started, position, count = time.time(), 0, 0
        while time.time() - started < SECONDS and position + BLOCK <= SIZE:
            os.pwrite(fd, data, position)
            os.fdatasync(fd)
            position += BLOCK
            count += 1
        elapsed = time.time() - started
        print(f"{mode:13s}: {count / elapsed:6.0f} write+fdatasync/s, "
              f"{count * BLOCK / elapsed / 1e6:5.0f} MB/s")
        os.close(fd)
        os.unlink(path)


if __name__ == "__main__":
    main()
