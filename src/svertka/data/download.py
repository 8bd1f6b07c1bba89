"""Downloading and checking dataset files.

A download goes to a temporary file in the target folder, is checked, and only
then renamed into place (``os.replace`` is atomic on one file system). Any
failure - network error, short read, checksum mismatch, Ctrl-C - removes the
temporary file, so a half-written dataset file never exists under its real name.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from svertka.data.formats import read_bytes
from svertka.errors import DataError

__all__ = ["Checksum", "digest", "verify_file", "fetch", "extract_members"]


@dataclass(frozen=True)
class Checksum:
    """Expected digests of one file. ``raw_*`` are over the DECOMPRESSED bytes
    (what the user's copy must match however it was compressed); ``archive_md5``
    is over the file exactly as the official mirror serves it."""

    raw_sha256: str | None = None
    raw_md5: str | None = None
    archive_md5: str | None = None
    raw_size: int | None = None


def digest(data: bytes, algo: str) -> str:
    return hashlib.new(algo, data).hexdigest()


def verify_file(path: Path, check: Checksum, archive: bool = False) -> None:
    """Raise DataError unless ``path`` matches ``check``.

    ``archive=True`` also checks the md5 of the file as stored (only meaningful
    right after a download: Debian and users may recompress .gz files).
    """
    if archive and check.archive_md5:
        got = digest(Path(path).read_bytes(), "md5")
        if got != check.archive_md5:
            raise DataError(f"{path}: md5 {got} does not match the official {check.archive_md5}; "
                            f"the download is corrupt, try again")
    if not (check.raw_sha256 or check.raw_md5 or check.raw_size):
        return
    raw = read_bytes(path)
    if check.raw_size is not None and len(raw) != check.raw_size:
        raise DataError(f"{path}: {len(raw)} bytes after decompression, expected {check.raw_size}; "
                        f"delete it and download again")
    for algo, want in (("sha256", check.raw_sha256), ("md5", check.raw_md5)):
        if want and digest(raw, algo) != want:
            raise DataError(f"{path}: {algo} of the decompressed data does not match {want}; "
                            f"delete it and download again")


def _progress(label: str, total: int | None, quiet: bool):
    """A tqdm byte counter on a TTY, disabled elsewhere: a pipe or a log gets
    one line when the file is in place, not a redrawn bar."""
    from tqdm import tqdm

    tty = hasattr(sys.stderr, "isatty") and sys.stderr.isatty()
    return tqdm(total=total, desc=label, unit="B", unit_scale=True, file=sys.stderr, mininterval=0.1,
                disable=quiet or not tty)


def fetch(urls, dest: Path, check: Checksum | None = None, timeout: float = 30.0,
          quiet: bool = False) -> Path:
    """Download the first URL in ``urls`` that works into ``dest``, verified; return ``dest``.

    Raises DataError naming every URL tried when none gives a file that passes ``check``.
    """
    if isinstance(urls, str):
        urls = [urls]
    dest = Path(dest)
    created = [d for d in (dest.parent, *dest.parent.parents) if not d.exists()]  # deepest first
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create {dest.parent} for the download ({exc.strerror}); "
                        f"pass a writable --root") from None
    try:
        return _fetch_first(urls, dest, check, timeout, quiet)
    except BaseException:
        for d in created:  # a failed download leaves no empty folders behind
            try:
                d.rmdir()
            except OSError:  # not empty (another file arrived) or gone: leave it
                break
        raise


def _fetch_first(urls, dest: Path, check: Checksum | None, timeout: float, quiet: bool) -> Path:
    errors = []
    for url in urls:
        try:
            _fetch_one(url, dest, check, timeout, quiet)
            return dest
        except DataError as exc:
            errors.append(f"{url}: {exc}")
        except (urllib.error.URLError, OSError, ValueError) as exc:  # network / HTTP / bad URL
            errors.append(f"{url}: {getattr(exc, 'reason', None) or exc}")
    raise DataError(f"could not download {dest.name} ({'; '.join(errors)})")


def _fetch_one(url: str, dest: Path, check: Checksum | None, timeout: float, quiet: bool) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            got = 0
            with _progress(dest.name, total, quiet) as bar:
                drawn = not bar.disable
                while chunk := resp.read(1 << 16):
                    out.write(chunk)
                    got += len(chunk)
                    bar.update(len(chunk))
            if total is not None and got != total:
                raise DataError(f"connection closed after {got} of {total} bytes")
        if check is not None:
            verify_file(Path(tmp), check, archive=True)
        os.replace(tmp, dest)
        if not quiet and not drawn:
            print(f"downloaded {dest.name} ({got / 1e6:.1f} MB)", file=sys.stderr, flush=True)
    except BaseException:
        # http.client raises IncompleteRead for short bodies; all paths end here.
        Path(tmp).unlink(missing_ok=True)
        raise


def extract_members(archive: Path, members: dict[str, Path]) -> None:
    """Extract the named regular-file members of a tar archive, and nothing else.

    ``members`` maps a member name to its destination. No path from the archive
    is ever used as a destination, so a malicious archive cannot write outside
    the target folder. Each file is written atomically.
    """
    try:
        with tarfile.open(archive, "r:*") as tar:
            for name, dest in members.items():
                try:
                    info = tar.getmember(name)
                except KeyError:
                    raise DataError(f"{archive}: member {name} missing; "
                                    f"the archive is not the official one") from None
                if not info.isfile():
                    raise DataError(f"{archive}: member {name} is not a regular file; refusing to extract")
                src = tar.extractfile(info)
                dest.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
                try:
                    with os.fdopen(fd, "wb") as out:
                        while chunk := src.read(1 << 20):
                            out.write(chunk)
                    os.replace(tmp, dest)
                except BaseException:
                    Path(tmp).unlink(missing_ok=True)
                    raise
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise DataError(f"{archive}: cannot read the archive ({exc}); delete it and download again") from None
