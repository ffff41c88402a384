r"""Safe extraction of tar archives (the COSMOS training sample tarball).

Every member is checked before anything is written: no absolute path, no ``..`` component, no
member resolving outside the target folder, no symlink or hardlink pointing outside it, no device,
FIFO or other special file. Extraction then uses Python's ``tarfile`` ``filter="data"`` (PEP 706)
as a second line of defence, into a temporary sibling folder that is renamed when complete.
"""

from __future__ import annotations

__all__ = ["ArchiveError", "check_members", "safe_extract"]

import logging
import os
import shutil
import tarfile
import uuid
from pathlib import Path, PurePosixPath

log = logging.getLogger(__name__)


class ArchiveError(ValueError):
    r"""The archive is corrupt or holds an unsafe member; the message names the archive and member."""


def _inside(root: Path, target: Path) -> bool:
    return target == root or root in target.parents


def check_members(tar: tarfile.TarFile, dest: str | os.PathLike, name: str = "<archive>") -> list[tarfile.TarInfo]:
    r"""Return the members of ``tar`` after checking that each one stays inside ``dest``.

    Raises:
        ArchiveError: naming the archive and the first unsafe member.
    """

    root = Path(os.path.realpath(dest))
    members = tar.getmembers()
    for m in members:
        p = PurePosixPath(m.name)
        if p.is_absolute() or m.name.startswith(("/", "\\")):
            raise ArchiveError(f"{name}: member '{m.name}' has an absolute path")
        if ".." in p.parts:
            raise ArchiveError(f"{name}: member '{m.name}' climbs out of the target folder ('..')")
        target = Path(os.path.realpath(root / p))
        if not _inside(root, target):
            raise ArchiveError(f"{name}: member '{m.name}' would land outside {root}")
        if m.issym() or m.islnk():
            link = PurePosixPath(m.linkname)
            base = root / p.parent if m.issym() else root
            dest_link = Path(os.path.realpath(base / link))
            if link.is_absolute() or not _inside(root, dest_link):
                raise ArchiveError(f"{name}: link '{m.name}' -> '{m.linkname}' points outside the target folder")
        elif not (m.isfile() or m.isdir()):
            raise ArchiveError(f"{name}: member '{m.name}' is a device, FIFO or other special file")
    return members


def safe_extract(archive: str | os.PathLike, dest: str | os.PathLike) -> Path:
    r"""Extract ``archive`` (tar, tar.gz, tar.bz2, tar.xz) into the folder ``dest``, safely and atomically.

    The members are checked with :func:`check_members`, extracted with ``filter="data"`` into a
    temporary sibling of ``dest``, and the result is renamed to ``dest`` (an existing ``dest`` is
    replaced). Returns ``dest``.

    Raises:
        ArchiveError: the archive is missing, not a tar file, truncated / corrupt, or unsafe.
    """

    archive, dest = Path(archive), Path(dest)
    if not archive.is_file():
        raise ArchiveError(f"{archive}: archive not found")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.mkdir()
    try:
        try:
            with tarfile.open(archive, "r:*") as tar:
                members = check_members(tar, tmp, str(archive))
                tar.extractall(tmp, members=members, filter="data")
        except ArchiveError:
            raise
        except (tarfile.TarError, EOFError, OSError, ValueError) as err:
            raise ArchiveError(f"{archive}: corrupt or unreadable archive ({type(err).__name__}: {err})") from err
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    log.info("extracted %d members of %s into %s", len(members), archive, dest)
    return dest
