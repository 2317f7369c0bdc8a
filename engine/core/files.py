"""Reading files a user names (configurations, bundles, side files of an import) without blocking or
running out of memory: only regular files, and only up to a size limit checked before reading."""

from __future__ import annotations

import os
import stat
from pathlib import Path

MiB = 1 << 20


class FileRefused(ValueError):
    """A path that is not a readable regular file (or is larger than allowed); the message says which and
    what it is instead."""


def kind_of(mode: int) -> str:
    """What a file of this st_mode is, in words: "a directory", "a FIFO", ..."""
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def regular_file(path: str | Path) -> os.stat_result:
    """The stat of `path` (links followed) if it is a regular file; FileRefused saying what it is
    otherwise (missing, a directory, a FIFO, a device...). stat never opens the file, so a FIFO cannot
    block here."""
    path = Path(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise FileRefused(f"{path}: no such file") from None
    except OSError as error:
        raise FileRefused(f"{path}: cannot be read ({error.strerror or error})") from None
    if not stat.S_ISREG(info.st_mode):
        raise FileRefused(f"{path}: not a regular file ({kind_of(info.st_mode)})")
    return info


def read_bounded(path: str | Path, limit: int) -> bytes:
    """The bytes of the regular file `path`, refused (FileRefused) before reading if it is not a regular
    file or holds more than `limit` bytes. The file is opened without blocking and checked again on the
    open descriptor, so a FIFO swapped in after the first check is refused too, and at most limit + 1
    bytes are ever read (a file that grows while being read is refused)."""
    path = Path(path)
    regular_file(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as error:
        raise FileRefused(f"{path}: cannot be read ({error.strerror or error})") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise FileRefused(f"{path}: not a regular file ({kind_of(info.st_mode)})")
        if info.st_size > limit:
            raise FileRefused(f"{path}: {info.st_size:,} bytes, more than the {limit:,} allowed here")
        try:
            data = handle.read(limit + 1)
        except OSError as error:
            raise FileRefused(f"{path}: cannot be read ({error.strerror or error})") from None
    if len(data) > limit:
        raise FileRefused(f"{path}: more than the {limit:,} bytes allowed here")
    return data
