r"""Resumable, checksummed downloads of large files (the COSMOS training sample, > 4 GB).

What comes from pooch and what is ours:

* pooch does the checksums: :func:`pooch.file_hash` (chunked hashing) and :func:`pooch.hash_algorithm`
  parse and compute ``"sha256:<hex>"`` / ``"md5:<hex>"`` strings, as in ``pooch.retrieve(known_hash=...)``.
* the transfer is ours, because pooch's :class:`pooch.HTTPDownloader` always starts from byte 0 and
  ``pooch.retrieve`` deletes the partial file on failure: a dropped connection 3 GB into the COSMOS
  tarball would restart from nothing. :func:`fetch` writes to ``<name>.part``, resumes it with an HTTP
  ``Range`` request (RFC 9110 §14) after a drop or on the next run, shows a tqdm bar, verifies the
  checksum and only then renames the file to its final name.

If no checksum is configured, the SHA-256 of the first complete download is recorded beside the
file (``<name>.sha256``) and every later reuse of the file is checked against it.
"""

from __future__ import annotations

__all__ = ["DownloadError", "check_pin", "fetch", "recorded_hash", "run_download", "verify"]

import logging
import os
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pooch
import requests
from tqdm.auto import tqdm

from ..atomic import atomic_path

log = logging.getLogger(__name__)


class DownloadError(RuntimeError):
    r"""A download failed (unreachable host, HTTP error, checksum mismatch); the message names URL and file."""


def _hash_of(path: Path, known_hash: str) -> str:
    alg = pooch.hashes.hash_algorithm(known_hash)
    return f"{alg}:{pooch.file_hash(str(path), alg=alg)}"


def _normalise(known_hash: str) -> str:
    known_hash = known_hash.strip().lower()
    return known_hash if ":" in known_hash else f"sha256:{known_hash}"


def recorded_hash(path: str | os.PathLike) -> str | None:
    r"""The checksum recorded beside ``path`` (``<path>.sha256``), or ``None`` if there is none."""

    record = Path(path).with_name(Path(path).name + ".sha256")
    return _normalise(record.read_text()) if record.exists() else None


def check_pin(path: str | os.PathLike, known_hash: str | None) -> None:
    r"""Check a configured ``known_hash`` against the hash recorded beside ``path`` (run at DAG load).

    ``known_hash`` is not a rule parameter, so pinning the hash that the first download recorded
    reruns nothing. A pin of the same algorithm that differs from the record is refused here, before
    any job runs; a pin of another algorithm is checked on the file by the rules that read it.

    Raises:
        DownloadError: the pin and the recorded hash differ; the message names both and the files to delete.
    """

    recorded = recorded_hash(path)
    if known_hash is None or recorded is None:
        return
    pin = _normalise(known_hash)
    if pin.split(":")[0] == recorded.split(":")[0] and pin != recorded:
        raise DownloadError(
            f"config download.known_hash {pin} differs from the hash recorded for {path} in {path}.sha256 "
            f"({recorded}); if the pin is right, delete {path} and {path}.sha256 to download again"
        )


def verify(path: str | os.PathLike, known_hash: str | None = None) -> str:
    r"""Check ``path`` against ``known_hash`` (``"sha256:<hex>"``, ``"md5:<hex>"`` or bare SHA-256 hex).

    Without ``known_hash``, the hash recorded in ``<path>.sha256`` is used; if there is none, the
    file's SHA-256 is recorded there. Returns the file's hash string.

    Raises:
        DownloadError: the file's hash differs from the expected one.
    """

    path = Path(path)
    record = path.with_name(path.name + ".sha256")
    if known_hash is None and record.exists():
        known_hash = record.read_text().strip()
    if known_hash is None:
        got = _hash_of(path, "sha256")
        with atomic_path(record) as tmp:
            tmp.write_text(got + "\n")
        log.info("recorded checksum of %s in %s: %s", path, record, got)
        return got
    known_hash = _normalise(known_hash)
    got = _hash_of(path, known_hash)
    if got != known_hash:
        raise DownloadError(f"{path}: checksum mismatch (expected {known_hash}, got {got})")
    return got


def _transfer(url: str, part: Path, chunk_size: int, timeout: float, progress: bool) -> None:
    r"""Append the rest of ``url`` to ``part`` (HTTP Range from its current size)."""

    start = part.stat().st_size if part.exists() else 0
    # identity: byte offsets must count the bytes on disk, not a transparently decoded stream.
    headers = {"Accept-Encoding": "identity", **({"Range": f"bytes={start}-"} if start else {})}
    with requests.get(url, headers=headers, stream=True, timeout=timeout) as r:
        if r.status_code == 416:  # the part file already holds everything
            return
        r.raise_for_status()
        if start and r.status_code != 206:
            log.warning("%s: server ignored the Range request; restarting from byte 0", url)
            start = 0
        length = r.headers.get("Content-Length")
        total = start + int(length) if length is not None else None
        with (
            open(part, "ab" if start else "wb") as f,
            tqdm(total=total, initial=start, unit="B", unit_scale=True, desc=part.name, disable=not progress) as bar,
        ):
            for chunk in r.iter_content(chunk_size=chunk_size):
                f.write(chunk)
                bar.update(len(chunk))
        if total is not None and part.stat().st_size < total:
            raise requests.exceptions.ChunkedEncodingError(
                f"connection closed at byte {part.stat().st_size} of {total}"
            )


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0][:200] if text else ""


def fetch(
    url: str,
    path: str | os.PathLike,
    *,
    known_hash: str | None = None,
    retries: int = 5,
    timeout: float = 60.0,
    chunk_size: int = 1 << 16,
    backoff: float = 2.0,
    progress: bool = True,
) -> Path:
    r"""Download ``url`` to ``path``, resuming a partial ``<path>.part``, and verify its checksum.

    An existing ``path`` is verified (against ``known_hash`` or the recorded ``<path>.sha256``) and
    reused. Dropped connections are resumed with HTTP Range up to ``retries`` times (waiting
    ``backoff`` × attempt seconds). The new file is checked (against ``known_hash``, or else a hash
    recorded in ``<path>.sha256`` by an earlier download) before it gets its final name; a file whose
    checksum does not match is deleted.

    Arguments:
        url: The HTTP(S) address.
        path: The final file.
        known_hash: ``"sha256:<hex>"``, ``"md5:<hex>"`` or bare SHA-256 hex; ``None`` records the hash.
        retries: Resumptions allowed after a dropped connection.
        timeout: Connect / read timeout in seconds.
        chunk_size: Bytes per write (at most this much is lost at a drop).

    Raises:
        DownloadError: unreachable host, HTTP error, too many drops or checksum mismatch.
    """

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        verify(path, known_hash)
        log.info("%s already downloaded and verified", path)
        return path

    part = path.with_name(path.name + ".part")
    _download_with_resume(url, part, retries, timeout, chunk_size, backoff, progress)
    _check_and_rename(url, part, path, known_hash)
    log.info("downloaded %s -> %s", url, path)
    return path


def _download_with_resume(
    url: str, part: Path, retries: int, timeout: float, chunk_size: int, backoff: float, progress: bool
) -> None:
    r"""Transfer ``url`` into ``part``, resuming after dropped connections up to ``retries`` times."""

    for attempt in range(retries + 1):
        before = part.stat().st_size if part.exists() else 0
        try:
            _transfer(url, part, chunk_size, timeout, progress)
            return
        except requests.exceptions.HTTPError as err:
            raise DownloadError(f"{url}: HTTP error {err.response.status_code} ({err.response.reason})") from err
        except (
            requests.exceptions.ConnectionError,
            requests.exceptions.Timeout,
            requests.exceptions.ChunkedEncodingError,
        ) as err:
            have = part.stat().st_size if part.exists() else 0
            # Could not connect and got nothing: the host is unreachable, retrying will not help.
            unreachable = isinstance(err, requests.exceptions.ConnectionError) and have == before
            if unreachable:
                cause = re.search(r"Caused by (\w+)", str(err))
                raise DownloadError(
                    f"{url}: cannot connect ({cause.group(1) if cause else type(err).__name__}; no network?)"
                    + (f", {have} bytes kept in {part} for a later resume" if have else "")
                ) from err
            if attempt == retries:
                raise DownloadError(
                    f"{url}: download failed after {attempt + 1} attempts, {have} bytes kept in {part} "
                    f"for a later resume ({type(err).__name__}: {_first_line(err)})"
                ) from err
            log.warning("%s: connection dropped at byte %d (%s); resuming", url, have, type(err).__name__)
            time.sleep(backoff * (attempt + 1))


def _check_and_rename(url: str, part: Path, path: Path, known_hash: str | None) -> None:
    r"""Verify the finished ``part`` (against ``known_hash`` or the recorded hash) before it becomes ``path``;
    a mismatching file is deleted. Without either hash, the new file's hash is recorded."""

    record = path.with_name(path.name + ".sha256")
    expected = known_hash if known_hash is not None else recorded_hash(path)
    try:
        if expected is not None:
            verify(part, expected)
    except DownloadError as err:
        part.unlink()
        stale = (
            f"; if the file at {url} has changed, delete the stale {record} and run again" if known_hash is None else ""
        )
        raise DownloadError(f"{url}: downloaded file {part} deleted: {err}{stale}") from err
    os.replace(part, path)
    if expected is None:
        verify(path)  # records <path>.sha256


def run_download(*, tarball: str | os.PathLike, config: Mapping[str, Any]) -> Path:
    r"""Rule ``download``: :func:`fetch` the COSMOS tarball; a :class:`DownloadError` is logged as one line and exits 1.

    Arguments:
        tarball: Output file.
        config: ``{"download": ...}`` from the validated config (``url`` with ``{sample}``, ``sample``,
            ``known_hash``, ``retries``, ``timeout_s``).
    """

    cfg = config["download"]
    url = cfg["url"].format(sample=cfg["sample"])
    try:
        return fetch(
            url, tarball, known_hash=cfg["known_hash"], retries=int(cfg["retries"]), timeout=float(cfg["timeout_s"])
        )
    except DownloadError as err:
        log.error("download failed: %s", err)
        raise SystemExit(1) from None
