r"""Rule ``preprocess``: clean, optionally re-convolve, split and normalise a raw galaxy file.

Steps, in order (all keys in the ``preprocess`` config section):

1. **Cleaning** (``cleaning``, :func:`clean`). Each galaxy is counted under the first rule that removes it:

   * ``nonfinite``: a non-finite value in the galaxy's ``images``, ``truth``, ``psf`` or ``noise_power``
     (when these are per galaxy) or in any numeric catalog column (so every ``flow.context`` column), or a
     non-finite or non-positive ``noise_sigma``; the log names the fields. A non-finite shared ``psf`` or
     ``noise_power`` is an error naming the file and dataset;
   * ``flux``: total image flux (sum of counts) non-positive or outside the ``flux_quantiles``
     of the galaxies still in;
   * ``edge``: share of the flux in the border ring of ``edge_width_px`` pixels above ``edge_max_fraction``
     (measured on ``truth`` when the file has it, else on ``images``) — sources cut by the stamp edge;
   * ``catalog_range:<col>``: catalog value outside ``catalog_ranges[col] = [min, max]``.

2. **Target PSF** (``target_psf``, optional, :func:`convolve_to_target`; docs/psf-matching.md). Each stamp is
   embedded in padding noise (a periodic field drawn from its own noise model, seeded per galaxy), becomes a
   ``galsim.InterpolatedImage``, is convolved with the kernel ``Deconvolve(old psf) ⊛ target`` and drawn on the
   target grid (``pixel_scale_arcsec``, ``stamp_size``; null keeps the data's): without a further pixel on the
   same grid, with the new pixel's response (``method='auto'``) on a new one, where ``truth`` is redrawn the
   same way (unchanged on the same grid). The stored ``psf`` becomes the target drawn with ``method='no_pixel'``
   at the target scale. The noise model follows the same map: ``noise_power`` is the mean
   :math:`|\mathrm{rfft2}|^2 / (HW)` of ``NOISE_DRAWS`` pure-noise stamps drawn exactly like the data (GalSim's
   numerical errors included; an impulse-response :math:`P |K|^2` underestimates the noise by up to 100x in
   the quiet high-frequency modes), one per kernel (a shared PSF and noise model: one spectrum);
   ``noise_sigma`` its root mean. ``target_noise_sigma`` adds white noise (counts per output pixel) to the
   images, ``noise_power`` and ``noise_sigma``. Refused (one line naming the key): a target FWHM above a quarter
   of the output stamp, or not above the data's PSF FWHM (``galsim.Image.calculateFWHM``).

3. **Split** (:func:`split_ids`) by hashing the galaxy id (``morphoflow.seeding.hash_unit``), fractions ``split``;
   a galaxy keeps its split whatever the seed or the other galaxies.

4. **Normalisation**: pixels stay in counts; the files get ``norm_method = "scale"`` and
   ``norm_scale`` = median ``noise_sigma`` of the training split (counts). Models see
   :func:`normalize` ``(images, norm_scale) = images / norm_scale``; :func:`denormalize` inverts it.
"""

from __future__ import annotations

__all__ = [
    "MIN_GALAXIES",
    "MIN_TEST_HALF",
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
from ..contract import GalaxySet, load_dataset, read_galaxies, write_galaxies
from ..seeding import hash_unit, item_rng
from .tfrecord import write_tfrecord

log = logging.getLogger(__name__)

SPLIT_NAMES = ("train", "val", "test")
#: Galaxies rule ``metrics`` needs in each half of the test split (checked here, before anything trains).
MIN_TEST_HALF = 2
NOISE_DRAWS = 32  # pure-noise stamps that estimate the matched noise power on a new grid


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
        gs.images = load_dataset(f, "images", str(path))
        gs.psf = load_dataset(f, "psf", str(path))
        gs.truth = load_dataset(f, "truth", str(path))
        gs.noise_power = load_dataset(f, "noise_power", str(path))
    return gs


def _edge_fraction(x: np.ndarray, width: int) -> np.ndarray:
    r"""Share of each stamp's flux (sum over channels) in its border ring of ``width`` pixels."""

    total = x.sum(axis=(1, 2, 3))
    inner = x[:, :, width:-width, width:-width].sum(axis=(1, 2, 3)) if width > 0 else total
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = (total - inner) / total
    return np.where(total > 0, frac, np.inf)


def _finite_galaxies(gs: GalaxySet, name: str) -> np.ndarray:
    r"""Mask (N,) of the galaxies whose every value is finite (``nonfinite`` rule); logs the bad fields.

    Raises:
        PreprocessError: a shared (1, C, H, W) ``psf`` or ``noise_power`` is non-finite (naming the file).
    """

    n = len(gs)
    fields = {k: getattr(gs, k) for k in ("images", "truth", "psf", "noise_power")}
    fields.update({f"catalog/{k}": v for k, v in gs.catalog.items() if np.asarray(v).dtype.kind in "fc"})
    finite, counts = np.ones(n, bool), {}
    for key, arr in fields.items():
        if arr is None:
            continue
        ok = np.isfinite(np.asarray(arr).reshape(len(arr), -1)).all(axis=1)
        if len(arr) == 1 and n != 1:
            if not ok[0]:
                raise PreprocessError(f"{name}: dataset '{key}' (shared by all galaxies) holds non-finite values")
            continue
        counts[key] = int((~ok).sum())
        finite &= ok
    sigma = np.asarray(gs.noise_sigma, np.float64)
    ok = np.isfinite(sigma) & (sigma > 0)
    counts["noise_sigma"] = int((~ok).sum())
    finite &= ok
    bad = {k: v for k, v in counts.items() if v}
    if bad:
        log.info("%s: galaxies with non-finite values, by dataset: %s", name, bad)
    return finite


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

    finite = _finite_galaxies(gs, name)
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
    r"""The kernels ``Deconvolve(old psf) ⊛ target`` of step 2, one per PSF image and channel, built on first use
    (a shared PSF gives one kernel per channel)."""

    def __init__(self, gs: GalaxySet, target: galsim.GSObject):
        self.gs, self.target = gs, target
        self.shared = len(gs.psf) == 1
        self._kernels: dict[tuple[int, int], galsim.GSObject] = {}

    def kernel(self, i: int, ch: int) -> galsim.GSObject:
        r"""Kernel of galaxy ``i``, channel ``ch``."""

        key = (0 if self.shared else i, ch)
        if key not in self._kernels:
            psf = self.gs.psf[key[0], ch]
            old = galsim.InterpolatedImage(
                galsim.ImageD(psf.astype(np.float64), scale=self.gs.pixel_scale), use_true_center=False
            )
            self._kernels[key] = galsim.Convolve(galsim.Deconvolve(old), self.target)
        return self._kernels[key]


def _output_grid(gs: GalaxySet, target: Mapping[str, Any]) -> tuple[float, int, int]:
    r"""Pixel scale (arcsec) and stamp shape of the matched stamps (``None`` keys keep the data's)."""

    _, _, h, w = gs.images.shape
    scale = target.get("pixel_scale_arcsec") or gs.pixel_scale
    size = target.get("stamp_size")
    return float(scale), int(size or h), int(size or w)


def _check_target(gs: GalaxySet, target: Mapping[str, Any], scale: float, shape: tuple[int, int]) -> None:
    r"""Refuse a target PSF wider than a quarter of the output stamp, or not broader than the data's PSF."""

    fwhm = float(target["fwhm_arcsec"])
    quarter = min(shape) * scale / 4
    if fwhm > quarter:
        raise PreprocessError(
            f"config key 'preprocess.target_psf.fwhm_arcsec': {fwhm} arcsec is more than a quarter of the "
            f"output stamp ({min(shape)} px x {scale} arcsec / 4 = {quarter:.3g} arcsec); "
            f"raise preprocess.target_psf.stamp_size or pixel_scale_arcsec"
        )
    h, w = gs.psf.shape[-2:]
    centre = galsim.PositionD(w // 2, h // 2)  # the contract's PSF centre (0-based pixel indices)
    data = max(
        galsim.ImageD(p.astype(np.float64), scale=gs.pixel_scale, xmin=0, ymin=0).calculateFWHM(center=centre)
        for p in gs.psf.reshape(-1, h, w)
    )
    if fwhm <= data:
        raise PreprocessError(
            f"config key 'preprocess.target_psf.fwhm_arcsec': {fwhm} arcsec is not broader than the data's "
            f"PSF (FWHM up to {data:.3g} arcsec)"
        )


def _old_power(gs: GalaxySet, i: int, ch: int) -> np.ndarray:
    r"""The data's noise power (H, W // 2 + 1) of galaxy ``i``, channel ``ch`` (σ² when the file has none)."""

    _, _, h, w = gs.images.shape
    if gs.noise_power is not None:
        return gs.noise_power[0 if len(gs.noise_power) == 1 else i, ch].astype(np.float64)
    return np.full((h, w // 2 + 1), float(gs.noise_sigma[i]) ** 2)


class _Resampler:
    r"""Draws stamps on a new grid: the data embedded in padding noise, as an ``InterpolatedImage``."""

    def __init__(self, gs: GalaxySet, scale: float, shape: tuple[int, int], fwhm: float):
        _, _, h, w = gs.images.shape
        self.old, self.scale, self.shape = gs.pixel_scale, scale, shape
        need = [(s * scale + 4 * fwhm) / self.old for s in shape]  # output field plus the kernel's reach
        self.pad = [max(0, int(np.ceil((need[0] - h) / 2))), max(0, int(np.ceil((need[1] - w) / 2)))]
        self.method = "no_pixel" if np.isclose(scale, self.old) else "auto"
        self.same = self.method == "no_pixel" and tuple(shape) == (h, w)  # truth stays as it is

    def embed(self, img: np.ndarray, field: np.ndarray) -> np.ndarray:
        r"""``img`` (H, W) at the centre of the padding ``field`` (a periodic noise field on the old grid)."""

        (py, px), (h, w) = self.pad, img.shape
        iy = (np.arange(h + 2 * py) - py) % h
        ix = (np.arange(w + 2 * px) - px) % w
        out = field[np.ix_(iy, ix)].astype(np.float64)
        out[py : py + h, px : px + w] = img
        return out

    def draw(self, arr: np.ndarray, kernel: galsim.GSObject | None) -> np.ndarray:
        r"""``arr`` (old grid) convolved with ``kernel`` (or alone: its maxk is measured) and drawn on the new grid."""

        measure = kernel is None  # the target's maxk bounds a convolution; a bare image needs its own
        ii = galsim.InterpolatedImage(
            galsim.ImageD(arr.astype(np.float64), scale=self.old),
            use_true_center=False,
            calculate_stepk=measure,
            calculate_maxk=measure,
        )
        obj = ii if kernel is None else galsim.Convolve(ii, kernel)
        out = galsim.ImageD(self.shape[1], self.shape[0], scale=self.scale)
        obj.drawImage(out, method=self.method, use_true_center=False)
        return out.array


def _noise_field(power: np.ndarray, w: int, rng: np.random.Generator) -> np.ndarray:
    r"""One periodic noise field (H, W) of spectrum ``power`` (rfft layout, contract normalisation)."""

    h = power.shape[0]
    return np.fft.irfft2(np.fft.rfft2(rng.standard_normal((h, w))) * np.sqrt(power), s=(h, w))


def _match(
    gs: GalaxySet, conv: _Reconvolver, res: _Resampler, per_gal: bool, seed: int
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    r"""Images, truth and the expected noise power on the new grid (``NOISE_DRAWS`` pure-noise stamps)."""

    n, c, _, w = gs.images.shape
    oh, ow = res.shape
    images = np.empty((n, c, oh, ow), np.float32)
    truth = None if gs.truth is None else np.empty((n, c, oh, ow), np.float32)
    power = np.zeros((n if per_gal else 1, c, oh, ow // 2 + 1), np.float64)
    for i in tqdm(range(n), desc="target psf", unit="gal", mininterval=2.0):
        rng = item_rng(seed, int(gs.ids[i]), "target_psf_padding")
        for ch in range(c):
            k = conv.kernel(i, ch)
            old = _old_power(gs, i, ch)
            images[i, ch] = res.draw(res.embed(gs.images[i, ch], _noise_field(old, w, rng)), k)
            if truth is not None:
                truth[i, ch] = gs.truth[i, ch] if res.same else res.draw(gs.truth[i, ch], None)
            if per_gal or i == 0:
                for _ in range(NOISE_DRAWS):
                    noise = res.draw(res.embed(_noise_field(old, w, rng), _noise_field(old, w, rng)), k)
                    power[i if per_gal else 0, ch] += np.abs(np.fft.rfft2(noise)) ** 2 / (oh * ow * NOISE_DRAWS)
    return images, truth, power


def convolve_to_target(gs: GalaxySet, target: Mapping[str, Any], seed: int = 0) -> GalaxySet:
    r"""Re-convolve every stamp from its PSF to the ``target`` PSF, on the target grid (module docstring).

    Arguments:
        gs: Galaxies in counts.
        target: The validated ``preprocess.target_psf`` section, ``{profile: moffat|gaussian, fwhm_arcsec, beta,
            pixel_scale_arcsec, stamp_size, target_noise_sigma}`` (arcsec; pixels; counts).
        seed: Seeds the padding and added noise of each galaxy (with its id).

    Returns:
        A new set with images, ``psf``, ``noise_power``, ``noise_sigma`` (and, on a new grid, ``truth`` and the
        ``pixel_scale_arcsec`` attribute) replaced.

    Raises:
        PreprocessError: naming the key, for a target wider than a quarter of the output stamp or not broader
            than the data's PSF.
    """

    n, c, _, w = gs.images.shape
    scale, oh, ow = _output_grid(gs, target)
    _check_target(gs, target, scale, (oh, ow))
    tgt = _target_profile(target)
    tgt_stamp = tgt.drawImage(nx=ow, ny=oh, scale=scale, method="no_pixel", use_true_center=False).array
    tgt_stamp = (tgt_stamp / tgt_stamp.sum()).astype(np.float32)
    conv = _Reconvolver(gs, tgt)
    per_gal = not conv.shared or gs.noise_power is None or len(gs.noise_power) != 1
    res = _Resampler(gs, scale, (oh, ow), float(target["fwhm_arcsec"]))
    images, truth, power = _match(gs, conv, res, per_gal, seed)

    variance = _half_power_variance(power, ow).mean(axis=1)  # (1 or N,) averaged over channels
    if len(variance) == 1 and gs.noise_power is not None:
        old_var = _half_power_variance(gs.noise_power[:1].astype(np.float64), w).mean()
        sigma = gs.noise_sigma * np.sqrt(variance[0] / old_var)
    else:
        sigma = np.sqrt(np.broadcast_to(variance, (n,)))
    white = float(target.get("target_noise_sigma") or 0.0)
    if white > 0:
        for i in range(n):
            images[i] += item_rng(seed, int(gs.ids[i]), "target_noise").normal(0.0, white, images[i].shape)
        power, sigma = power + white**2, np.sqrt(sigma**2 + white**2)
    return GalaxySet(
        images=images.astype(np.float32),
        psf=tgt_stamp[None, None].repeat(c, axis=1),
        noise_sigma=sigma.astype(np.float32),
        catalog=gs.catalog,
        attrs={**gs.attrs, "target_psf": json.dumps(target, sort_keys=True), "pixel_scale_arcsec": scale},
        units=gs.units,
        truth=truth,
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


def _check_splits(
    masks: dict[str, np.ndarray], ids: np.ndarray, split_cfg: Mapping[str, float], name: str, min_test_half: int
) -> None:
    r"""Refuse splits too small for the rules that read them, before anything trains.

    Every split needs a galaxy; rule ``metrics`` needs ``min_test_half`` (:data:`MIN_TEST_HALF` in the DAG)
    test galaxies in each half of the test split (``metrics.distances.split_halves``).
    """

    from ..metrics.distances import split_halves

    n = len(ids)
    for s in SPLIT_NAMES:
        if not masks[s].any():
            raise PreprocessError(
                f"{name}: split '{s}' is empty ({n} galaxies after cleaning; "
                f"config key 'preprocess.split.{s}' = {split_cfg[s]})"
            )
    a, b = split_halves(ids[masks["test"]])
    if min(a.sum(), b.sum()) < min_test_half:
        raise PreprocessError(
            f"{name}: split 'test' has {int(masks['test'].sum())} galaxies, halves of {int(a.sum())} and "
            f"{int(b.sum())}; rule metrics needs at least {min_test_half} in each half ({n} galaxies after "
            f"cleaning; raise config key 'preprocess.split.test' = {split_cfg['test']} or use more galaxies)"
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
    min_test_half: int = 0,
) -> dict[str, Any]:
    r"""Rule ``preprocess``: clean, re-convolve (optional), split and normalise ``raw``; write the split files.

    Arguments:
        raw: The raw contract file.
        train, val, test: Output split files.
        cleaning: Output JSON report (removals per rule, ``n_in``, ``n_out``, split sizes, ``norm_scale``).
        config: ``{"preprocess": ..., "seed": ...}`` from the validated config. The seed is recorded in the
            outputs (the split hashes ids with a fixed salt, so a galaxy keeps its split across seeds).
        tfrecords: TFRecord outputs in train, val, test order, or empty to skip the export.
        min_test_half: Galaxies needed in each half of the test split by the rules downstream; the DAG
            passes :data:`MIN_TEST_HALF` (rule ``metrics``), so a too-small split fails here, before training.

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
        gs = convolve_to_target(gs, cfg["target_psf"], int(config["seed"]))

    masks = split_ids(gs.ids, cfg["split"])
    _check_splits(masks, gs.ids, cfg["split"], name, min_test_half)
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
