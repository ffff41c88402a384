r"""Rule ``preprocess``: clean, optionally re-convolve, split and normalise a raw galaxy file.

Steps, in order (all keys in the ``preprocess`` config section):

1. **Cleaning** (``cleaning``, :func:`clean`). Each galaxy is counted under the first rule that removes it:

   * ``nonfinite``: a non-finite pixel in ``images`` (or ``truth``), or a non-finite or non-positive
     ``noise_sigma``;
   * ``flux``: total image flux (sum of counts) non-positive or outside the ``flux_quantiles``
     of the galaxies still in;
   * ``edge``: share of the flux in the border ring of ``edge_width_px`` pixels above ``edge_max_fraction``
     (measured on ``truth`` when the file has it, else on ``images``) — sources cut by the stamp edge;
   * ``catalog_range:<col>``: catalog value outside ``catalog_ranges[col] = [min, max]``.

2. **Target PSF** (``target_psf``, optional, :func:`convolve_to_target`). Each stamp becomes a
   ``galsim.InterpolatedImage`` and is convolved with the kernel ``Deconvolve(old psf) ⊛ target`` and drawn
   without a further pixel (the pixel response already in the image stays), so the stored ``psf`` becomes
   the target drawn with ``method='no_pixel'``. The noise model follows the same linear map: the kernel's
   transfer function :math:`K` on the stamp grid is measured by applying the operation to a unit impulse, and
   ``noise_power`` becomes :math:`P |K|^2` (white noise σ² when the file had none), ``noise_sigma`` its
   root mean (approximation: stationary noise, periodic on the stamp). ``truth`` (PSF-free) is unchanged.
   The target must be broader than the old PSF at every frequency it keeps.

3. **Split** (:func:`split_ids`) by hashing the galaxy id (``morphoflow.seeding.hash_unit``), fractions ``split``;
   a galaxy keeps its split whatever the seed or the other galaxies.

4. **Normalisation**: pixels stay in counts; the files get ``norm_method = "scale"`` and
   ``norm_scale`` = median ``noise_sigma`` of the training split (counts). Models see
   :func:`normalize` ``(images, norm_scale) = images / norm_scale``; :func:`denormalize` inverts it.
"""

from __future__ import annotations

__all__ = [
    "MIN_GALAXIES",
    "PreprocessError",
    "check_sample_size",
    "clean",
    "convolve_to_target",
    "denormalize",
    "load_raw",
    "normalize",
    "run_preprocess",
    "split_ids",
]

import json
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import galsim
import h5py
import numpy as np
from tqdm import tqdm

from ..atomic import atomic_path
from ..contract import GalaxySet, read_galaxies, write_galaxies
from ..seeding import hash_unit
from .tfrecord import write_tfrecord

log = logging.getLogger(__name__)

SPLIT_NAMES = ("train", "val", "test")


class PreprocessError(ValueError):
    r"""Preprocessing cannot produce valid output; the message names the config key or file."""


def normalize(images: np.ndarray, norm_scale: float) -> np.ndarray:
    r"""Counts → model units: ``images / norm_scale`` (``norm_scale`` in counts)."""

    return images / norm_scale


def denormalize(x: np.ndarray, norm_scale: float) -> np.ndarray:
    r"""Model units → counts: ``x * norm_scale`` (inverse of :func:`normalize`)."""

    return x * norm_scale


def load_raw(path: str | os.PathLike) -> GalaxySet:
    r"""Read a contract galaxy file, keeping non-finite pixels (the cleaning step removes them).

    Raises:
        ContractError: naming the file and the missing or malformed dataset or attribute.
    """

    gs = read_galaxies(path, load_pixels=False)  # checks layout, shapes, attributes, catalog
    with h5py.File(path, "r") as f:
        gs.images = f["images"][()].astype(np.float32)
        gs.psf = f["psf"][()].astype(np.float32)
        gs.truth = f["truth"][()].astype(np.float32) if "truth" in f else None
        gs.noise_power = f["noise_power"][()].astype(np.float32) if "noise_power" in f else None
    return gs


def _edge_fraction(x: np.ndarray, width: int) -> np.ndarray:
    r"""Share of each stamp's flux (sum over channels) in its border ring of ``width`` pixels."""

    total = x.sum(axis=(1, 2, 3))
    inner = x[:, :, width:-width, width:-width].sum(axis=(1, 2, 3)) if width > 0 else total
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = (total - inner) / total
    return np.where(total > 0, frac, np.inf)


def clean(gs: GalaxySet, cfg: dict[str, Any], name: str = "<memory>") -> tuple[np.ndarray, dict[str, int]]:
    r"""Apply the cleaning rules (module docstring) in order.

    Arguments:
        gs: The raw galaxies.
        cfg: The ``preprocess.cleaning`` config section.
        name: File name for error messages.

    Returns:
        ``(keep, removed)``: boolean mask (N,) and removal count per rule.

    Raises:
        PreprocessError: if a rule removes every remaining galaxy (naming the rule), or a catalog range
            names a column the file does not have.
    """

    n = len(gs)
    keep = np.ones(n, bool)
    removed: dict[str, int] = {}

    def apply(reason: str, bad: np.ndarray) -> None:
        drop = keep & bad
        removed[reason] = int(drop.sum())
        if drop.any() and drop.sum() == keep.sum():
            raise PreprocessError(
                f"{name}: cleaning rule '{reason}' removed all {int(keep.sum())} remaining galaxies "
                f"(see config section preprocess.cleaning)"
            )
        keep[drop] = False

    finite = np.isfinite(gs.images).all(axis=(1, 2, 3))
    if gs.truth is not None:
        finite &= np.isfinite(gs.truth).all(axis=(1, 2, 3))
    sigma = np.asarray(gs.noise_sigma, np.float64)
    finite &= np.isfinite(sigma) & (sigma > 0)
    apply("nonfinite", ~finite)

    flux = np.where(finite, np.nan_to_num(gs.images, nan=0.0, posinf=0.0, neginf=0.0).sum(axis=(1, 2, 3)), 0.0)
    lo_q, hi_q = cfg["flux_quantiles"]
    lo, hi = np.quantile(flux[keep], [lo_q, hi_q]) if keep.any() else (0.0, 0.0)
    apply("flux", (flux <= 0) | (flux < lo) | (flux > hi))

    width = int(cfg["edge_width_px"])
    if 2 * width >= min(gs.images.shape[2:]):
        raise PreprocessError(f"config key 'preprocess.cleaning.edge_width_px': {width} leaves no inner region")
    source = gs.truth if gs.truth is not None else gs.images
    frac = _edge_fraction(np.nan_to_num(source.astype(np.float64)), width)
    apply("edge", frac > float(cfg["edge_max_fraction"]))

    for col, (vmin, vmax) in cfg["catalog_ranges"].items():
        if col not in gs.catalog:
            raise PreprocessError(
                f"config key 'preprocess.cleaning.catalog_ranges.{col}': {name} has no dataset 'catalog/{col}'"
            )
        val = np.asarray(gs.catalog[col], np.float64)
        apply(f"catalog_range:{col}", ~((val >= vmin) & (val <= vmax)))
    return keep, removed


def _target_profile(spec: Mapping[str, Any]) -> galsim.GSObject:
    r"""The target PSF profile of the validated ``preprocess.target_psf`` section (FWHM in arcsec)."""

    profile = spec["profile"]
    if profile == "moffat":
        return galsim.Moffat(beta=float(spec["beta"]), fwhm=float(spec["fwhm_arcsec"]))
    if profile == "gaussian":
        return galsim.Gaussian(fwhm=float(spec["fwhm_arcsec"]))
    raise PreprocessError(f"config key 'preprocess.target_psf.profile': unknown profile '{profile}'")


def _half_power_variance(p: np.ndarray, width: int) -> np.ndarray:
    r"""Pixel variance :math:`\mathrm{mean}_k P` from a half-plane (rfft layout) spectrum (..., H, W//2+1)."""

    w = np.full(p.shape[-1], 2.0)
    w[0] = 1.0
    if width % 2 == 0:
        w[-1] = 1.0
    return (p * w).sum(axis=(-2, -1)) / (p.shape[-2] * width)


class _Reconvolver:
    r"""Applies the kernels ``Deconvolve(old psf) ⊛ target`` on the stamp grid of ``gs`` (step 2).

    One kernel and its transfer function :math:`|K|^2` (rfft layout, measured on a unit impulse) per
    PSF image and channel, built on first use: a shared PSF gives one kernel per channel.
    """

    def __init__(self, gs: GalaxySet, target: galsim.GSObject):
        self.gs, self.target = gs, target
        _, _, h, w = gs.images.shape
        self.scale = gs.pixel_scale
        self.shared = len(gs.psf) == 1
        self._out = galsim.ImageD(w, h, scale=self.scale)
        self._impulse = np.zeros((h, w))
        self._impulse[h // 2, w // 2] = 1.0
        self._kernels: dict[tuple[int, int], galsim.GSObject] = {}
        self._transfer: dict[tuple[int, int], np.ndarray] = {}

    def apply(self, img: np.ndarray, k: galsim.GSObject) -> np.ndarray:
        r"""``img`` (H, W) convolved with the kernel ``k``, drawn without a further pixel."""

        ii = galsim.InterpolatedImage(
            galsim.ImageD(img.astype(np.float64), scale=self.scale),
            use_true_center=False,
            calculate_stepk=False,
            calculate_maxk=False,
        )
        galsim.Convolve(ii, k).drawImage(self._out, method="no_pixel", use_true_center=False)
        return self._out.array.copy()

    def kernel(self, i: int, ch: int) -> tuple[galsim.GSObject, np.ndarray]:
        r"""Kernel and transfer function :math:`|K|^2` (H, W // 2 + 1) of galaxy ``i``, channel ``ch``."""

        key = (0 if self.shared else i, ch)
        if key not in self._kernels:
            psf = self.gs.psf[key[0], ch]
            old = galsim.InterpolatedImage(
                galsim.ImageD(psf.astype(np.float64), scale=self.scale), use_true_center=False
            )
            self._kernels[key] = galsim.Convolve(galsim.Deconvolve(old), self.target)
            resp = self.apply(self._impulse, self._kernels[key])
            self._transfer[key] = np.abs(np.fft.rfft2(np.fft.ifftshift(resp))) ** 2
        return self._kernels[key], self._transfer[key]


def convolve_to_target(gs: GalaxySet, target: Mapping[str, Any]) -> GalaxySet:
    r"""Re-convolve every stamp from its PSF to the ``target`` PSF (see the module docstring).

    Arguments:
        gs: Galaxies in counts.
        target: The validated ``preprocess.target_psf`` section, ``{profile: moffat|gaussian, fwhm_arcsec, beta}``
            (FWHM in arcsec).

    Returns:
        A new set with images, ``psf``, ``noise_power`` and ``noise_sigma`` replaced.
    """

    n, c, h, w = gs.images.shape
    tgt = _target_profile(target)
    tgt_stamp = tgt.drawImage(nx=w, ny=h, scale=gs.pixel_scale, method="no_pixel", use_true_center=False).array
    tgt_stamp = (tgt_stamp / tgt_stamp.sum()).astype(np.float32)
    conv = _Reconvolver(gs, tgt)

    images = np.empty_like(gs.images)
    per_gal = not conv.shared or gs.noise_power is None or len(gs.noise_power) != 1
    power = np.empty((n if per_gal else 1, c, h, w // 2 + 1), np.float64)
    for i in tqdm(range(n), desc="target psf", unit="gal", mininterval=2.0):
        for ch in range(c):
            k, k2 = conv.kernel(i, ch)
            images[i, ch] = conv.apply(gs.images[i, ch], k)
            if per_gal or i == 0:
                if gs.noise_power is not None:
                    old = gs.noise_power[0 if len(gs.noise_power) == 1 else i, ch]
                else:
                    old = np.full((h, w // 2 + 1), float(gs.noise_sigma[i]) ** 2)
                power[i if per_gal else 0, ch] = old * k2

    variance = _half_power_variance(power, w).mean(axis=1)  # (1 or N,) averaged over channels
    if len(variance) == 1 and gs.noise_power is not None:
        old_var = _half_power_variance(gs.noise_power[:1].astype(np.float64), w).mean()
        sigma = gs.noise_sigma * np.sqrt(variance[0] / old_var)
    else:
        sigma = np.sqrt(np.broadcast_to(variance, (n,)))
    return GalaxySet(
        images=images,
        psf=tgt_stamp[None, None].repeat(c, axis=1),
        noise_sigma=sigma.astype(np.float32),
        catalog=gs.catalog,
        attrs={**gs.attrs, "target_psf": json.dumps(target, sort_keys=True)},
        units=gs.units,
        truth=gs.truth,
        noise_power=power.astype(np.float32),
    )


def split_ids(ids: np.ndarray, fractions: dict[str, float]) -> dict[str, np.ndarray]:
    r"""Boolean masks of the train/val/test splits from ``hash_unit(id)`` and the split fractions."""

    total = sum(float(fractions[s]) for s in SPLIT_NAMES)
    if not np.isclose(total, 1.0):
        raise PreprocessError(f"config key 'preprocess.split': fractions must sum to 1, got {total}")
    u = np.array([hash_unit(int(i)) for i in ids])
    edges = np.cumsum([0.0] + [float(fractions[s]) for s in SPLIT_NAMES])
    edges[-1] = 1.0 + 1e-12
    return {s: (u >= edges[j]) & (u < edges[j + 1]) for j, s in enumerate(SPLIT_NAMES)}


MIN_GALAXIES = 50  #: below this, say up front what the split and the flux-quantile cut need


def check_sample_size(ids: np.ndarray, cfg: Mapping[str, Any], name: str) -> None:
    r"""Say up front, in one line, when a raw file is too small for the split and the cleaning.

    With fewer than :data:`MIN_GALAXIES` galaxies, the hashed split of all ``ids`` (before any cleaning)
    is computed: an empty split is an error, otherwise a warning notes that the flux-quantile cut removes
    the faintest and brightest galaxies whatever their number.

    Raises:
        PreprocessError: a split of the ``ids`` is already empty; the message gives the galaxy count,
            the split sizes and what the split needs.
    """

    n = len(ids)
    if n >= MIN_GALAXIES:
        return
    masks = split_ids(ids, cfg["split"])
    sizes = "/".join(str(int(masks[s].sum())) for s in SPLIT_NAMES)
    fractions = "/".join(f"{float(cfg['split'][s]):g}" for s in SPLIT_NAMES)
    quantiles = list(cfg["cleaning"]["flux_quantiles"])
    line = (
        f"{name}: only {n} galaxies (fewer than {MIN_GALAXIES}): the hashed split train/val/test = {fractions} "
        f"gives {sizes} before cleaning, and flux_quantiles {quantiles} remove the faintest and brightest"
    )
    empty = [s for s in SPLIT_NAMES if not masks[s].any()]
    if empty:
        raise PreprocessError(
            f"{line}; split '{empty[0]}' is empty: every split needs at least one galaxy, so use about "
            f"{MIN_GALAXIES} galaxies or more, or raise config key 'preprocess.split.{empty[0]}'"
        )
    log.warning("%s; expect empty or tiny splits after cleaning (use about %d galaxies or more)", line, MIN_GALAXIES)


def _check_splits(masks: dict[str, np.ndarray], n: int, split_cfg: Mapping[str, float], name: str) -> None:
    for s in SPLIT_NAMES:
        if not masks[s].any():
            raise PreprocessError(
                f"{name}: split '{s}' is empty ({n} galaxies after cleaning; "
                f"config key 'preprocess.split.{s}' = {split_cfg[s]})"
            )


def _write_splits(
    gs: GalaxySet,
    masks: dict[str, np.ndarray],
    outputs: dict[str, str | os.PathLike],
    tfrecords: Sequence[str | os.PathLike],
    norm_scale: float,
    seed: int,
) -> None:
    for i, s in enumerate(SPLIT_NAMES):
        part = gs.subset(np.flatnonzero(masks[s]))
        part.attrs.update(norm_scale=norm_scale, norm_method="scale", split=s, seed=int(seed))
        write_galaxies(outputs[s], part)
        if tfrecords:
            write_tfrecord(tfrecords[i], part)


def run_preprocess(
    *,
    raw: str | os.PathLike,
    train: str | os.PathLike,
    val: str | os.PathLike,
    test: str | os.PathLike,
    cleaning: str | os.PathLike,
    config: Mapping[str, Any],
    tfrecords: Sequence[str | os.PathLike] = (),
) -> dict[str, Any]:
    r"""Rule ``preprocess``: clean, re-convolve (optional), split and normalise ``raw``; write the split files.

    Arguments:
        raw: The raw contract file.
        train, val, test: Output split files.
        cleaning: Output JSON report (removals per rule, ``n_in``, ``n_out``, split sizes, ``norm_scale``).
        config: ``{"preprocess": ..., "seed": ...}`` from the validated config. The seed is recorded in the
            outputs (the split hashes ids with a fixed salt, so a galaxy keeps its split across seeds).
        tfrecords: TFRecord outputs in train, val, test order, or empty to skip the export.

    Returns:
        The cleaning report.
    """

    cfg, name = config["preprocess"], str(raw)
    gs = load_raw(raw)
    n_in = len(gs)
    check_sample_size(gs.ids, cfg, name)
    keep, removed = clean(gs, cfg["cleaning"], name)
    gs = gs.subset(np.flatnonzero(keep))
    log.info("cleaning kept %d of %d galaxies: %s", len(gs), n_in, removed)
    if cfg["target_psf"] is not None:
        gs = convolve_to_target(gs, cfg["target_psf"])

    masks = split_ids(gs.ids, cfg["split"])
    _check_splits(masks, len(gs), cfg["split"], name)
    norm_scale = float(np.median(gs.noise_sigma[masks["train"]]))
    if not (np.isfinite(norm_scale) and norm_scale > 0):
        raise PreprocessError(f"{name}: median noise_sigma of the train split is {norm_scale}; cannot normalise")
    _write_splits(gs, masks, {"train": train, "val": val, "test": test}, tfrecords, norm_scale, int(config["seed"]))

    report = {
        "n_in": n_in,
        "n_out": len(gs),
        "removed": removed,
        "split": {s: int(masks[s].sum()) for s in SPLIT_NAMES},
        "norm_scale": norm_scale,
        "norm_method": "scale",
        "cleaning": cfg["cleaning"],
        "target_psf": cfg["target_psf"],
    }
    with atomic_path(cleaning) as tmp:
        tmp.write_text(json.dumps(report, indent=2))
    return report
