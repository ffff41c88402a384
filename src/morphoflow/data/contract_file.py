r"""Rule ``contract_file`` (``data.source: file``): your own HDF5 file in the data contract → ``raw.h5``.

The file named by config ``data.path`` is read and validated with :func:`morphoflow.contract.read_galaxies`
(a contract error names the file and the dataset), copied to ``results/data/raw.h5`` (temporary name, then
renamed) and its SHA-256 recorded in a small JSON file beside it. Nothing else changes: pixel scale,
PSF, noise and band come from the file, so any survey runs through the DAG without a code change.
"""

from __future__ import annotations

__all__ = ["run_contract_file"]

import json
import logging
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pooch

from ..atomic import atomic_path
from ..contract import read_galaxies

log = logging.getLogger(__name__)


def run_contract_file(
    *, path: str | os.PathLike, raw: str | os.PathLike, record: str | os.PathLike, config: Mapping[str, Any]
) -> dict[str, Any]:
    r"""Rule ``contract_file``: validate the contract file ``path``, copy it to ``raw``, record its checksum.

    Arguments:
        path: The user's contract file (config ``data.path``).
        raw: The galaxy file to write (``results/data/raw.h5``), a byte copy of ``path``.
        record: JSON file to write: ``{"path", "sha256", "n_galaxies", "pixel_scale_arcsec", "band"}``.
        config: ``{"data": {"source", "path"}}`` from the validated config.

    Returns:
        The record.

    Raises:
        ContractError: ``path`` breaks the contract (the message names the file and the dataset).
    """

    gs = read_galaxies(path)
    digest = "sha256:" + pooch.file_hash(str(path), alg="sha256")
    with atomic_path(raw) as tmp:
        shutil.copyfile(path, tmp)
    info = {
        "path": str(Path(path).resolve()),
        "sha256": digest,
        "n_galaxies": len(gs),
        "pixel_scale_arcsec": gs.pixel_scale,
        "band": str(gs.attrs["band"]),
    }
    with atomic_path(record) as tmp:
        tmp.write_text(json.dumps(info, indent=2) + "\n")
    log.info("%s: %d galaxies at %.4g arcsec/pixel (%s) -> %s", path, len(gs), gs.pixel_scale, digest, raw)
    return info
