"""Fetching dataset files: checksummed, atomic downloads and safe archive extraction.

Every file a source downloads goes through :func:`fetch`: it is written to a temporary file
beside its destination, its md5 is checked, and only then is it renamed into place, so a
half-written or tampered file is never read. Network failures and checksum mismatches end in
one :class:`~ftprop.data.base.DatasetError` that says which file and what to do.
"""

from __future__ import annotations

import glob
import hashlib
import http.client
import os
import shutil
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from .base import DatasetError

__all__ = ["fetch", "md5sum", "safe_extract_tar", "missing_data_error"]

CHUNK = 1 << 20
TIMEOUT_S = 60.0
USER_AGENT = "ftprop-dataset-fetch/0.1 (+python urllib)"


def md5sum(path: str | Path) -> str:
    """The hex md5 of a file (read in 1 MiB chunks)."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(url: str, dest: str | Path, md5: str, *, timeout: float = TIMEOUT_S) -> Path:
    """Download ``url`` to ``dest`` unless a file with the right ``md5`` is already there.

    The bytes go to a temporary file in ``dest``'s folder, are checked against ``md5``, then
    renamed onto ``dest`` (atomic on one file system). A mismatch deletes the download and
    raises :class:`DatasetError` naming the file; so does a network failure.
    """
    dest = Path(dest)
    md5 = md5.lower()
    if dest.is_file() and md5sum(dest) == md5:
        return dest
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DatasetError(f"cannot create the folder {dest.parent} for {dest.name}: {e}; "
                           f"pass a writable --data-root") from None
    _remove_stale_parts(dest)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    except OSError as e:
        raise DatasetError(f"cannot write {dest.name} into {dest.parent}: {e.strerror or e}; "
                           f"pass a writable --data-root") from None
    tmp = Path(tmp_name)
    digest = hashlib.md5(usedforsecurity=False)
    try:
        try:
            with os.fdopen(fd, "wb") as out:  # closed whatever happens next
                request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
                with urllib.request.urlopen(request, timeout=timeout) as response:
                    for chunk in iter(lambda: response.read(CHUNK), b""):
                        digest.update(chunk)
                        out.write(chunk)
        # HTTPError and timeouts are URLError/OSError; a connection cut mid-body is an HTTPException
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as e:
            reason = repr(e) if isinstance(e, http.client.HTTPException) else getattr(e, "reason", None) or e
            raise DatasetError(f"could not download {url}: {reason}; download it by hand to {dest} "
                               f"or pass --data-root with a folder that already holds the data") from None
        got = digest.hexdigest()
        if got != md5:
            raise DatasetError(f"checksum mismatch for {dest.name} downloaded from {url}: md5 {got}, "
                               f"expected {md5}; the download was deleted. Try again (a proxy or an interrupted "
                               f"transfer can corrupt it) or download it by hand to {dest}")
        try:
            os.replace(tmp, dest)
        except OSError as e:
            raise DatasetError(f"cannot put the download in place at {dest}: {e.strerror or e}; move what is "
                               f"there away, or pass another --data-root") from None
    finally:
        tmp.unlink(missing_ok=True)
    return dest


STALE_PART_S = 600  # a download in progress writes its .part every few seconds


def _remove_stale_parts(dest: Path) -> None:
    """Delete what killed downloads of ``dest`` left (a killed process runs no clean-up): .part files
    of this name untouched for STALE_PART_S; a download running beside this one keeps its file."""
    now = time.time()
    for part in dest.parent.glob(f".{glob.escape(dest.name)}.*.part"):
        try:
            if now - part.stat().st_mtime > STALE_PART_S:
                part.unlink()
        except OSError:
            pass


def _check_member(member: tarfile.TarInfo, archive: Path) -> None:
    name = PurePosixPath(member.name)
    if name.is_absolute() or ".." in name.parts or member.name.startswith("\\"):
        raise DatasetError(f"{archive} holds an unsafe path {member.name!r} (absolute or with '..'); "
                           f"refusing to extract it. Delete the archive and download it again")
    if not (member.isfile() or member.isdir()):
        raise DatasetError(f"{archive} holds {member.name!r}, which is a link or a special file; refusing to "
                           f"extract it. Delete the archive and download it again")


def safe_extract_tar(archive: str | Path, dest: str | Path) -> list[str]:
    """Extract a (possibly compressed) tar archive into ``dest``, refusing unsafe members.

    Every member must be a plain file or folder with a relative path that stays inside
    ``dest`` (no absolute paths, no '..', no links, no devices); all are checked before
    anything is written. Each file is written beside its place and renamed into it once whole.
    Returns the member names.
    """
    archive, dest = Path(archive), Path(dest)
    try:
        with tarfile.open(archive) as tar:
            members = tar.getmembers()
            for m in members:
                _check_member(m, archive)
            root = dest.resolve()
            for m in members:
                target = (dest / m.name).resolve()
                if root != target and root not in target.parents:
                    raise DatasetError(f"{archive} member {m.name!r} would land outside {dest}; refusing")
            dest.mkdir(parents=True, exist_ok=True)
            for m in members:
                target = dest / m.name
                if m.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                src = tar.extractfile(m)
                assert src is not None
                part = target.with_name(target.name + ".part")  # renamed when whole: an interrupted
                try:  # extraction leaves a file missing (extracted again by --download), never cut short
                    with src, open(part, "wb") as out:
                        shutil.copyfileobj(src, out, CHUNK)
                    os.replace(part, target)
                finally:
                    part.unlink(missing_ok=True)
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        if isinstance(e, OSError) and e.errno is not None:  # the file system's answer (no space, no
            # permission, a file in the way), not the archive's (a bad gzip stream is an OSError without errno)
            raise DatasetError(f"could not extract {archive} into {dest}: {e}. The archive itself may be "
                               f"whole: free space, make {dest} writable, or move away what is in the way; "
                               f"then run again") from None
        raise DatasetError(f"{archive} is not a readable archive ({e}); delete it and download it again") from None
    return [m.name for m in members]


def missing_data_error(what: str, looked_in: Iterable[str | Path], how: str) -> DatasetError:
    """The error for data that is not there: what was missing, where we looked, how to get it."""
    places = ", ".join(str(p) for p in looked_in)
    return DatasetError(f"{what} not found (looked in: {places}). {how}")
