r"""A GalSim config galaxy type: ``MorphoflowGalaxy``, drawn by a trained morphoflow model.

Load it with GalSim's ``modules:`` key; the ``morphoflow`` input loads the trained model once per
process, and every ``MorphoflowGalaxy`` is a flux-preserving ``galsim.InterpolatedImage`` (like
:meth:`~morphoflow.generator.Generator.galsim_objects`), so shear, PSF, noise and placement come from
the rest of the config as for any GalSim galaxy::

    modules: [morphoflow.galsim_config]
    input:
        morphoflow: {model: results}          # results/autoencoder/model.pt + results/flow/model.pt
        catalog: {file_name: conditions.fits}
    gal:
        type: MorphoflowGalaxy
        mag: {type: Catalog, col: mag}        # one field per model condition (Generator.context_columns)
        hlr_arcsec: {type: Catalog, col: hlr_arcsec}
        redshift: {type: Catalog, col: redshift}
        # seed: 7                             # optional; default: GalSim's per-object seed
        shear: {type: G1G2, g1: 0.02, g2: 0.0}

The ``morphoflow`` input takes ``model`` (a results directory) or ``autoencoder`` and ``flow`` (model
files), and optionally ``device`` (``cpu``), ``on_out_of_range`` (``warn`` / ``error``), ``batch_size``
(decoder batch) and ``batch`` (default true). The galaxy fields are the model's conditions (e.g. ``mag``
[AB mag], ``hlr_arcsec`` [arcsec], ``redshift``, any ``flow.context`` column), ``seed`` (int) and
``channel`` (int, default 0); GalSim's own ``flux`` (counts) rescales the model's flux.

Conditions usually come from a catalog (GalSim's ``catalog`` input reads FITS or ASCII tables);
``python -m morphoflow.galsim_config catalog results/data/test.h5 conditions.fits`` writes the catalog
of a data-contract file (here the held-out test split) as such a table.

Batching: at the first galaxy of an image, the conditions and seeds of all the image's galaxies are
evaluated from the config (on a copy of it, repeating GalSim's per-object steps) and the galaxies are
generated in one forward pass. Each galaxy's actual parameters are checked against the prediction; a
galaxy the prediction missed is generated on its own, so the result never depends on the batching: a
galaxy is always ``Generator.sample(its conditions, n=1, seeds=[its seed])``.
"""

from __future__ import annotations

__all__ = ["MorphoflowModel", "build_morphoflow_galaxy", "write_conditions"]

import argparse
import functools
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import galsim
import numpy as np

from .flow import OutOfRangeError
from .generator import Generator, to_galsim

_KIND = "morphoflow"
_TYPE = "MorphoflowGalaxy"


@functools.lru_cache(maxsize=4)
def _load_generator(
    model: str | None, autoencoder: str | None, flow: str | None, device: str, on_out_of_range: str | None, batch: int
) -> Generator:
    r"""One :class:`Generator` per process and model (GalSim may rebuild its input objects per file)."""

    return Generator.load(
        model, autoencoder=autoencoder, flow=flow, device=device, on_out_of_range=on_out_of_range, batch_size=batch
    )


class MorphoflowModel:
    r"""The ``morphoflow`` GalSim input: a trained generator and the galaxies of the current image.

    Arguments:
        model: Results directory with ``autoencoder/model.pt`` and ``flow/model.pt``.
        autoencoder: Autoencoder model file (overrides ``model``).
        flow: Flow model file (overrides ``model``).
        device: Torch device.
        on_out_of_range: ``warn`` or ``error`` for conditions outside the training range.
        batch_size: Decoder batch size.
        batch: Generate the galaxies of an image in one forward pass (else one call per galaxy).
    """

    _req_params: ClassVar[dict] = {}
    _opt_params: ClassVar[dict] = {
        "model": str,
        "autoencoder": str,
        "flow": str,
        "device": str,
        "on_out_of_range": str,
        "batch_size": int,
        "batch": bool,
    }
    _single_params: ClassVar[list] = []
    _takes_rng: ClassVar[bool] = False

    def __init__(
        self,
        model: str | None = None,
        autoencoder: str | None = None,
        flow: str | None = None,
        device: str = "cpu",
        on_out_of_range: str | None = None,
        batch_size: int = 256,
        batch: bool = True,
    ) -> None:
        self._load_args = (model, autoencoder, flow, device, on_out_of_range, int(batch_size))
        self.batch = bool(batch)
        self.generator  # noqa: B018 - load now: a bad path fails at the input stage, naming the file
        self._image: tuple[int, int, int] | None = None  # (image_num, first obj_num, objects)
        self._batches: dict[int, dict] = {}  # {image_num: {(path, obj_num): (row, image)}}
        self.model_calls = 0  # forward passes in this process (for tests and benchmarks)

    @property
    def generator(self) -> Generator:
        return _load_generator(*self._load_args)

    def __getstate__(self) -> dict:  # sent to GalSim's worker processes without the cached images
        return dict(self.__dict__, _batches={})

    def start_image(self, image_num: int, obj_num: int, nobjects: int) -> None:
        r"""Called by GalSim at the start of each image: its number, first object and object count."""

        self._image = (int(image_num), int(obj_num), int(nobjects))
        self._batches = {}

    def image(self, config: dict, base: dict, params: Mapping[str, float], seed: int, logger) -> np.ndarray:
        r"""The (C, H, W) image [counts] of the galaxy with these conditions and seed (from the batch if any)."""

        row = (dict(params), int(seed))
        if self.batch:
            path = _find(base, config)
            key = (int(base.get("image_num", 0)), int(base.get("obj_num", 0)))
            if key[0] not in self._batches:
                self._batches = {key[0]: self._generate_image(base, path, row, logger)}
            hit = self._batches[key[0]].pop((path, key[1]), None)
            if hit is not None and hit[0] == row:
                return hit[1]
        return self._generate([row])[0]

    def _generate(self, rows: list[tuple[dict, int]]) -> np.ndarray:
        r"""One forward pass: images (N, C, H, W) [counts] of ``(conditions, seed)`` rows."""

        self.model_calls += 1
        gen = self.generator
        table = {c: np.array([r[0][c] for r in rows], dtype=np.float64) for c in gen.context_columns}
        return gen.sample(table, n=1, seeds=[r[1] for r in rows]).images

    def _generate_image(self, base: dict, path: tuple | None, current: tuple[dict, int], logger) -> dict:
        r"""``{(path, obj_num): (row, image)}``: the image's galaxies from the current one on, in one pass."""

        obj_num, image_num = int(base.get("obj_num", 0)), int(base.get("image_num", 0))
        last = obj_num + 1
        if self._image is not None and self._image[0] == image_num:
            last = max(last, self._image[1] + self._image[2])
        rows = _predict_rows(base, range(obj_num + 1, last), logger) if path is not None else {}
        rows[(path, obj_num)] = current
        if len(rows) < 2:
            return {}
        keys = list(rows)
        try:
            images = self._generate([rows[k] for k in keys])
        except OutOfRangeError:  # let the offending galaxy itself raise, on its own
            return {}
        logger.info("morphoflow: image %d: %d galaxies generated in one pass", image_num, len(keys))
        return {k: (rows[k], img) for k, img in zip(keys, images, strict=True)}


def _galaxy_params(config: dict, base: dict, ignore: list, gen: Generator) -> tuple[dict, int, int]:
    r"""The conditions, seed and channel of one galaxy from its config fields."""

    columns = gen.context_columns
    req = dict.fromkeys(columns, float)
    opt = {"seed": int, "channel": int}
    ignore = [k for k in ignore if k not in req] + ["flux"]  # GalSim applies flux itself
    kwargs, _ = galsim.config.GetAllParams(config, base, req=req, opt=opt, ignore=ignore)
    seed = kwargs.pop("seed", None)
    if seed is None:  # GalSim's per-object seed (image.random_seed + object), else a draw from its rng
        random_seed = "random_seed" in base.get("image", {})
        seed = int(base["seed"]) if random_seed else int(base["rng"].duplicate().raw())
    channel = int(kwargs.pop("channel", 0))
    return {c: float(kwargs[c]) for c in columns}, int(seed), channel


_RECORDING: dict | None = None  # {(path, obj_num): (conditions, seed)} while predicting


def _predict_rows(base: dict, obj_nums: range, logger) -> dict:
    r"""``{(path, obj_num): (conditions, seed)}`` of every ``MorphoflowGalaxy`` of objects ``obj_nums``.

    Each object goes through GalSim's own steps of ``galsim.config.BuildStamp`` (object number, random
    generator, stamp position, PSF, profile) on a copy of the config, with the galaxies recorded instead
    of generated, so random and catalog-driven fields get the values the real pass will give. Stops at
    the first object that fails (the real pass then generates the rest one by one).
    """

    global _RECORDING
    copy = galsim.config.CopyConfig(base)
    quiet = logging.getLogger("morphoflow.galsim_config.predict")
    _RECORDING = {}
    try:
        for k in obj_nums:
            try:
                _replay_stamp(copy, k, quiet)
            except galsim.config.SkipThisObject:
                continue
            except Exception as err:  # a failed prediction only costs speed
                logger.debug("morphoflow: no prediction from object %d on (%s)", k, err)
                break
        return _RECORDING
    finally:
        _RECORDING = None


def _replay_stamp(base: dict, obj_num: int, logger: logging.Logger) -> None:
    r"""GalSim's per-object steps up to the profile (``galsim.config.BuildStamp``), on ``base``."""

    galsim.config.SetupConfigObjNum(base, obj_num, logger)
    stamp = base["stamp"]
    builder = galsim.config.valid_stamp_types[stamp["type"]]
    if builder.quickSkip(stamp, base):
        return
    builder.setupRNG(stamp, base, logger)
    xsize, ysize = base.get("stamp_xsize", 0), base.get("stamp_ysize", 0)
    xsize, ysize, image_pos, world_pos = builder.setup(
        stamp, base, xsize, ysize, galsim.config.stamp.stamp_ignore, logger
    )
    builder.locateStamp(stamp, base, xsize, ysize, image_pos, world_pos, logger)
    gsparams = {}
    if "gsparams" in stamp:
        gsparams = galsim.config.UpdateGSParams(gsparams, stamp["gsparams"], base)
    if builder.getSkip(stamp, base, logger):
        return
    psf = builder.buildPSF(stamp, base, gsparams, logger)
    builder.buildProfile(stamp, base, psf, gsparams, logger)


def _find(node: Any, target: dict, depth: int = 0) -> tuple | None:
    r"""The key path from the config root to the dict ``target`` (by identity), or None."""

    if node is target:
        return ()
    if depth > 8:
        return None
    if isinstance(node, dict):
        items = [(k, v) for k, v in node.items() if not str(k).startswith("_") and k != "current"]
    elif isinstance(node, list):
        items = list(enumerate(node))
    else:
        return None
    for key, child in items:
        sub = _find(child, target, depth + 1)
        if sub is not None:
            return (key, *sub)
    return None


def build_morphoflow_galaxy(config: dict, base: dict, ignore: list, gsparams: dict, logger) -> tuple:
    r"""GalSim builder of ``MorphoflowGalaxy``: the generated galaxy as a ``galsim.InterpolatedImage``."""

    model = galsim.config.GetInputObj(_KIND, config, base, _TYPE)
    gen = model.generator
    conditions, seed, channel = _galaxy_params(config, base, ignore, gen)
    if _RECORDING is not None:  # predicting an image's galaxies: note this one, draw nothing
        _RECORDING[(_find(base, config), int(base.get("obj_num", 0)))] = (conditions, seed)
        return galsim.Gaussian(sigma=1.0), False
    image = model.image(config, base, conditions, seed, logger)
    kwargs = {"gsparams": galsim.GSParams(**gsparams)} if gsparams else {}
    obj = to_galsim(image[None], gen.pixel_scale_arcsec, channel=channel, **kwargs)[0]
    return obj, False


class _Loader(galsim.config.InputLoader):
    r"""Loads :class:`MorphoflowModel` without a proxy (each process has its own model) and tells it
    where each image starts."""

    def setupImage(self, input_obj, config, base, logger) -> None:  # GalSim's hook
        image_num = int(base.get("image_num", 0))
        nobj = galsim.config.GetNObjForImage(base, image_num, logger=logger)
        input_obj.start_image(image_num, int(base.get("obj_num", 0)), int(nobj))


galsim.config.RegisterInputType(_KIND, _Loader(MorphoflowModel, use_proxy=False))
galsim.config.RegisterObjectType(_TYPE, build_morphoflow_galaxy, input_type=_KIND)


def write_conditions(data_file: str | os.PathLike, output: str | os.PathLike, columns: Sequence[str] = ()) -> int:
    r"""Write the catalog of a data-contract file (e.g. ``results/data/test.h5``) as a FITS table for
    GalSim's ``catalog`` input; ``columns`` (default: all) with their units. Returns the row count."""

    from astropy.io import fits

    from .atomic import atomic_path
    from .contract import read_galaxies

    gs = read_galaxies(data_file, load_pixels=False)
    names = list(columns) or list(gs.catalog)
    missing = [c for c in names if c not in gs.catalog]
    if missing:
        raise ValueError(f"{data_file}: catalog column(s) {missing} missing (it has {sorted(gs.catalog)})")
    cols = []
    for c in names:
        values = np.asarray(gs.catalog[c])
        fmt = "K" if values.dtype.kind in "iu" else "D"
        cols.append(fits.Column(name=c, format=fmt, unit=gs.units.get(c) or None, array=values))
    with atomic_path(output) as tmp:
        fits.BinTableHDU.from_columns(cols).writeto(tmp)
    return len(gs.catalog[names[0]]) if names else 0


def main(argv: Sequence[str] | None = None) -> int:
    r"""``python -m morphoflow.galsim_config catalog DATA.h5 OUT.fits [--columns ...]``."""

    parser = argparse.ArgumentParser(prog="python -m morphoflow.galsim_config", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    cat = sub.add_parser("catalog", help="write a data-contract file's catalog as a FITS table for GalSim")
    cat.add_argument("data", help="data-contract HDF5 file, e.g. results/data/test.h5")
    cat.add_argument("output", help="FITS table to write")
    cat.add_argument("--columns", nargs="+", default=(), help="columns to keep (default: all)")
    args = parser.parse_args(argv)
    n = write_conditions(args.data, args.output, args.columns)
    print(f"{args.output}: {n} rows", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
