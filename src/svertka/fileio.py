"""Atomic file writes: a temp file in the target's folder, fsync, then one
``os.replace``. A crash or Ctrl-C mid-write leaves the previous file whole and
no half-written one beside it; a full disk is a one-line WriteError, with the
previous file whole. A process killed by SIGKILL cannot clean up after itself:
``remove_stale_temps`` removes what such a kill left, when the folder is next
opened."""
from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

from .errors import WriteError

TEMP_SUFFIX = ".tmp"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp makes its file 0600; the final file gets the mode a plain open() would give it
FILE_MODE = 0o666 & ~_umask()


def atomic_write(path, write) -> Path:
    """Call ``write(tmp_path)`` then move the result onto ``path`` in one rename.
    An OSError on the way (a full disk, no permission) becomes a WriteError."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
        os.close(fd)
        write(tmp)
        os.chmod(tmp, FILE_MODE)  # after write: a writer may have made the file anew
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise WriteError(write_error_message(path, e)) from None
        raise
    return path


def write_error_message(path, e: OSError) -> str:
    kept = f"the previous {Path(path).name} is unchanged" if Path(path).exists() else "nothing was written"
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"cannot write {path}: the disk is full; {kept}. Free some space, or write elsewhere"
    return f"cannot write {path}: {e.strerror or e}; {kept}. Pick a folder you can write to"


def atomic_write_text(path, text: str) -> Path:
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def temp_files(folder, names) -> list[Path]:
    """The temp files ``atomic_write`` makes for ``names`` in ``folder``."""
    folder = Path(folder)
    return sorted(p for name in names for p in folder.glob(f".{name}.*{TEMP_SUFFIX}"))


def remove_stale_temps(folder, names) -> list[Path]:
    """Remove the temp files a killed writer left for ``names``; return them.
    Call it only where no other process writes ``folder``."""
    stale = temp_files(folder, names)
    for p in stale:
        p.unlink(missing_ok=True)
    return stale
