r"""Assemble ``results/metrics.json``: every distance between real and generated galaxies beside its floor.

The test split is cut deterministically into halves A and B by hashing the ids
(:func:`~morphoflow.metrics.distances.split_halves`). For each statistic

* floor     = d(real A, real B): how far two independent real samples of that size are;
* distance  = d(real A, generated at B's conditions): the generated galaxy of each B galaxy;
* ratio     = distance / floor (1 = as close as real data is to itself).

Non-finite numbers are never written: a property whose distance cannot be computed is reported
as ``{"failed": true, "n_failed_real": int, "n_failed_generated": int}``. The layout is checked
against the package schema ``morphoflow/schemas/metrics-output.schema.json``
(:data:`METRICS_SCHEMA`) before the atomic write (:func:`write_metrics`).
"""

from __future__ import annotations

__all__ = [
    "FORMAT_VERSION",
    "METRICS_SCHEMA",
    "PROPERTIES",
    "UPSTREAM",
    "Measured",
    "assemble",
    "bright_mask",
    "compare",
    "compare_sets",
    "measure",
    "measure_properties",
    "plot",
    "powered_c2st_block",
    "read_benchmarks",
    "run_metrics",
    "validate_metrics",
    "write_metrics",
]

import dataclasses
import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import jsonschema
import numpy as np
from scipy.stats import spearmanr

from ..atomic import atomic_path
from ..autoencoder.latents import read_latents
from ..config import SCHEMA_DIR
from ..contract import ContractError, GalaxySet, read_galaxies
from .c2st import c2st_auc
from .distances import frechet_distance, split_halves, wasserstein_1d, with_floor
from .moments import measure_moments
from .morphology import MORPHOLOGY_PROPERTIES, measure_morphology
from .power_spectrum import power_spectrum_distance
from .shapes import shape_biases
from .summary import write_summary

log = logging.getLogger("morphoflow.metrics")

#: Per-galaxy properties compared between real and generated sets (flux: counts; r50, sigma: pixels).
PROPERTIES: tuple[str, ...] = (
    "flux",
    "r50",
    "sigma",
    "e1",
    "e2",
    "gini",
    "m20",
    "concentration",
    "asymmetry",
    "smoothness",
)
#: Properties entered in the Fréchet feature vector as log10 (positive, heavy-tailed).
LOG_FEATURES = ("flux", "r50", "sigma")

#: The layout of ``metrics.json`` (package data).
METRICS_SCHEMA = SCHEMA_DIR / "metrics-output.schema.json"


def measure_properties(
    images: np.ndarray,
    noise_sigma: np.ndarray,
    *,
    engine: str = "batched",
    batch_size: int = 256,
    progress: bool = False,
) -> dict[str, np.ndarray]:
    r"""All :data:`PROPERTIES` of (N, H, W) stamps in counts (NaN where a measurement failed)."""
    morph = measure_morphology(images, noise_sigma, engine=engine, batch_size=batch_size, progress=progress)
    mom = measure_moments(images, progress=progress)
    out = {k: morph[k] if k in MORPHOLOGY_PROPERTIES else mom[k] for k in PROPERTIES}
    out["hsm_failed"] = mom["failed"]
    return out


def _features(props: dict[str, np.ndarray], index: np.ndarray) -> np.ndarray:
    cols = []
    for k in PROPERTIES:
        v = np.asarray(props[k], np.float64)[index]
        if k in LOG_FEATURES:
            with np.errstate(divide="ignore", invalid="ignore"):
                v = np.where(v > 0, np.log10(np.where(v > 0, v, 1.0)), np.nan)
        cols.append(v)
    return np.stack(cols, axis=1)


def _entry(d: float, floor: float, n_bad_real: int, n_bad_gen: int, key: str = "w1") -> dict[str, Any]:
    e = with_floor(d, floor, key)
    if all(math.isfinite(v) for v in e.values()):
        return e
    return {"failed": True, "n_failed_real": int(n_bad_real), "n_failed_generated": int(n_bad_gen)}


def _too_small(n_a: int, n_b: int, min_half: int) -> dict[str, Any]:
    return {"too_small": True, "n_a": int(n_a), "n_b": int(n_b), "min_half": int(min_half)}


def compare_sets(
    real: dict[str, np.ndarray],
    gen: dict[str, np.ndarray],
    half_a: np.ndarray,
    half_b: np.ndarray,
    properties: tuple[str, ...] = PROPERTIES,
    min_half: int = 2,
) -> dict[str, Any]:
    r"""Per-property W1 and the Fréchet distance of generated vs real, each beside its floor.

    ``real`` and ``gen`` hold per-galaxy properties of the same galaxies (generated galaxy i at
    the conditions of real galaxy i); ``half_a`` / ``half_b`` are boolean masks of the halves. With
    fewer than ``min_half`` galaxies in a half, every entry is ``{"too_small": true, ...}`` (no stable floor).
    """
    n_a, n_b = int(np.sum(half_a)), int(np.sum(half_b))
    if min(n_a, n_b) < min_half:
        small = _too_small(n_a, n_b, min_half)
        return {"morphology": {k: dict(small) for k in properties}, "frechet_morphology": dict(small)}
    out: dict[str, Any] = {"morphology": {}}
    ratios = []
    for k in properties:
        ra, rb, gb = real[k][half_a], real[k][half_b], gen[k][half_b]
        e = _entry(
            wasserstein_1d(ra, gb),
            wasserstein_1d(ra, rb),
            int((~np.isfinite(real[k])).sum()),
            int((~np.isfinite(gen[k])).sum()),
        )
        out["morphology"][k] = e
        if "ratio" in e:
            ratios.append(e["ratio"])
    out["morphology_mean_ratio"] = float(np.mean(ratios)) if ratios else None
    fa, fb, fg = _features(real, half_a), _features(real, half_b), _features(gen, half_b)
    out["frechet_morphology"] = _entry(
        frechet_distance(fa, fg),
        frechet_distance(fa, fb),
        int((~np.isfinite(_features(real, slice(None)))).any(axis=1).sum()),
        int((~np.isfinite(_features(gen, slice(None)))).any(axis=1).sum()),
        key="distance",
    )
    return out


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or np.ptp(a[ok]) == 0 or np.ptp(b[ok]) == 0:
        return float("nan")
    return float(spearmanr(a[ok], b[ok])[0])


def _measured_conditions(props: dict[str, np.ndarray], pixel_scale: float, zeropoint: float) -> dict[str, np.ndarray]:
    r"""Conditions measurable on the image: ``mag`` (AB, from flux) and ``hlr_arcsec`` (from r50)."""
    flux = np.asarray(props["flux"], np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        mag = np.where(flux > 0, zeropoint - 2.5 * np.log10(np.where(flux > 0, flux, 1.0)), np.nan)
    return {"mag": mag, "hlr_arcsec": np.asarray(props["r50"], np.float64) * pixel_scale}


def validate_metrics(metrics: dict[str, Any], schema: str | os.PathLike = METRICS_SCHEMA) -> None:
    r"""Raise ``ValueError`` naming the key path if ``metrics`` breaks the schema or holds a non-finite number."""

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{where}.{k}" if where else str(k))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{where}[{i}]")
        elif isinstance(node, float) and not math.isfinite(node):
            raise ValueError(f"metrics.json: key '{where}' is not finite ({node})")

    walk(metrics, "")
    sch = json.loads(Path(schema).read_text())
    errors = sorted(jsonschema.Draft202012Validator(sch).iter_errors(metrics), key=lambda e: list(e.absolute_path))
    if errors:
        err = errors[0]
        where = ".".join(str(p) for p in err.absolute_path) or "<top level>"
        raise ValueError(f"metrics.json: key '{where}': {err.message}")


def _clean(node: Any) -> Any:
    r"""Plain JSON types: numpy scalars to Python, non-finite floats to None (then dropped)."""
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            v = _clean(v)
            if v is not None:
                out[str(k)] = v
        return out
    if isinstance(node, (list, tuple)):
        return [_clean(v) for v in node]
    if isinstance(node, (bool, np.bool_)):
        return bool(node)
    if isinstance(node, (int, np.integer)):
        return int(node)
    if isinstance(node, (float, np.floating)):
        return float(node) if math.isfinite(float(node)) else None
    return node


def write_metrics(
    path: str | os.PathLike, metrics: dict[str, Any], schema: str | os.PathLike = METRICS_SCHEMA
) -> dict[str, Any]:
    r"""Validate ``metrics`` against :data:`METRICS_SCHEMA` and write it atomically as JSON.

    Another mode may add its own block (e.g. ``"particles"``) and call this. Returns the
    cleaned dictionary that was written.
    """
    metrics = _clean(metrics)
    validate_metrics(metrics, schema)
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(metrics, indent=2, sort_keys=False) + "\n")
    return metrics


def read_benchmarks(paths: Sequence[str | os.PathLike], skip: tuple[str, ...] = ()) -> dict[str, float]:
    r"""Wall time (s) per rule from Snakemake benchmark files ``benchmarks/<rule>.tsv`` (column ``s``;
    the mean over repeats). Unreadable files are logged and skipped."""
    import pandas as pd

    out: dict[str, float] = {}
    for p in sorted(map(Path, paths)):
        name = p.stem
        if name in skip:
            continue
        try:
            s = float(pd.read_csv(p, sep="\t")["s"].mean())
        except (OSError, KeyError, ValueError, pd.errors.ParserError) as err:
            log.warning("benchmark %s unreadable (%s); left out of timing_s", p, err)
            continue
        if math.isfinite(s):
            out[name] = s
    return out


#: ``format_version`` of metrics.json (both modes; the schema holds it as a constant).
FORMAT_VERSION = 2

#: Optional inputs of rule ``metrics`` from the other stages (keys of ``upstream`` of :func:`run_metrics`).
UPSTREAM: tuple[str, ...] = (
    "train", "val", "autoencoder", "cleaning", "latents", "ae_metrics", "ae_history", "flow_metrics", "flow_history",
    "draws",
)  # fmt: skip
#: Keys copied from the stage summaries: required, then optional ones.
AE_KEYS = ("test_chi2_per_pixel", "test_chi2_per_pixel_stamp", "test_mse", "test_ssim")
AE_OPTIONAL = ("floor_exact_chi2_per_pixel", "floor_smooth_chi2_per_pixel")
FLOW_KEYS = ("test_nll_per_dim",)


def _n_ids(path: str | os.PathLike) -> int:
    try:
        with h5py.File(path, "r") as f:
            return int(f["catalog/id"].shape[0])
    except (OSError, KeyError) as err:
        raise ContractError(f"{path}: cannot read dataset 'catalog/id' ({err})") from err


def _read_json(path: str | os.PathLike, keys: tuple[str, ...] = (), optional: tuple[str, ...] = ()) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err
    for k in keys:
        if k not in data:
            raise ValueError(f"{path}: key '{k}' is missing")
    return {k: data[k] for k in keys + optional if k in data} if keys else data


def _check_same_galaxies(test: GalaxySet, gen: GalaxySet, name: str) -> None:
    if gen.images.shape[1:] != test.images.shape[1:]:
        raise ContractError(
            f"{name}: dataset 'images' has stamps {gen.images.shape[1:]}, test set has {test.images.shape[1:]}"
        )
    if len(gen) != len(test) or not np.array_equal(gen.ids, test.ids):
        raise ContractError(f"{name}: dataset 'catalog/id' must list the test galaxies' ids in the same order")


@dataclasses.dataclass
class Measured:
    r"""The galaxies of one metrics run and their :data:`PROPERTIES` (step :func:`measure`).

    Attributes:
        real: The test split; ``gens``: the generated sets by model name (same ids and order).
        channel: The image channel measured.
        half_a, half_b: Boolean masks of the test split's halves (:func:`~.distances.split_halves`).
        real_props, gen_props: Properties of the observed images (real; per model).
        real_truth_props, gen_truth_props: Properties of the noiseless PSF-free images where the files
            hold them (``truth``), else None / left out.
        bright: Boolean mask of the bright bin of the test split (:func:`bright_mask`; None without ``mag``).
    """

    real: GalaxySet
    gens: dict[str, GalaxySet]
    channel: int
    half_a: np.ndarray
    half_b: np.ndarray
    real_props: dict[str, np.ndarray]
    gen_props: dict[str, dict[str, np.ndarray]]
    real_truth_props: dict[str, np.ndarray] | None
    gen_truth_props: dict[str, dict[str, np.ndarray]]
    bright: np.ndarray | None = None


def _read_sets(
    test: str | os.PathLike, samples: Mapping[str, str | os.PathLike], channel: int
) -> tuple[GalaxySet, dict[str, GalaxySet], np.ndarray, np.ndarray]:
    r"""The test split, the generated sets (checked against it) and the test split's halves A, B."""
    real = read_galaxies(test)
    if not 0 <= channel < real.images.shape[1]:
        raise ValueError(f"config key 'metrics.channel': {channel} is not a channel of {test} ({real.images.shape[1]})")
    half_a, half_b = split_halves(real.ids)
    if half_a.sum() < 2 or half_b.sum() < 2:
        raise ValueError(f"{test}: too few test galaxies ({len(real)}) to split into two halves")
    log.info("test set %s: %d galaxies (A %d, B %d)", test, len(real), half_a.sum(), half_b.sum())
    gens = {}
    for name, path in samples.items():
        gens[name] = read_galaxies(path)
        _check_same_galaxies(real, gens[name], str(path))
    return real, gens, half_a, half_b


def measure(
    test: str | os.PathLike, samples: Mapping[str, str | os.PathLike], cfg: Mapping[str, Any], *, progress: bool = True
) -> Measured:
    r"""Step 1: read the test split and the generated sets and measure every property of each.

    Arguments:
        test, samples: As :func:`run_metrics`.
        cfg: The ``metrics`` config section (``channel``, ``morphology``, ``bright``).
    """
    channel = int(cfg["channel"])
    engine, batch_size = cfg["morphology"]["engine"], int(cfg["morphology"]["batch_size"])
    real, gens, half_a, half_b = _read_sets(test, samples, channel)

    def props(images: np.ndarray, sigma: np.ndarray) -> dict[str, np.ndarray]:
        return measure_properties(images[:, channel], sigma, engine=engine, batch_size=batch_size, progress=progress)

    real_truth = props(real.truth, np.zeros(len(real))) if real.truth is not None else None
    return Measured(
        bright=bright_mask(real, float(cfg["bright"]["fraction"])),
        real=real,
        gens=gens,
        channel=channel,
        half_a=half_a,
        half_b=half_b,
        real_props=props(real.images, real.noise_sigma),
        gen_props={name: props(gen.images, gen.noise_sigma) for name, gen in gens.items()},
        real_truth_props=real_truth,
        gen_truth_props={
            name: props(gen.truth, np.zeros(len(gen)))
            for name, gen in gens.items()
            if real_truth is not None and gen.truth is not None
        },
    )


def _conditional(m: Measured, name: str) -> dict[str, dict[str, float]]:
    r"""Spearman correlation of requested (catalog) vs measured ``mag`` and ``hlr_arcsec``, generated and real."""
    real, gen = m.real, m.gens[name]
    ps, zp = real.pixel_scale, float(real.attrs["zeropoint_ab"])
    cond_real = _measured_conditions(m.real_props, ps, zp)
    cond_gen = _measured_conditions(m.gen_props[name], ps, zp)
    out = {}
    for cname in ("mag", "hlr_arcsec"):
        if cname in gen.catalog and cname in real.catalog:
            out[cname] = {
                "corr_generated": _spearman(np.asarray(gen.catalog[cname], np.float64), cond_gen[cname]),
                "corr_real": _spearman(np.asarray(real.catalog[cname], np.float64), cond_real[cname]),
            }
    return out


def bright_mask(real: GalaxySet, fraction: float) -> np.ndarray | None:
    r"""Boolean mask of the brightest ``fraction`` of ``real`` by catalog ``mag`` (None without a ``mag`` column)."""
    if "mag" not in real.catalog:
        return None
    mag = np.asarray(real.catalog["mag"], np.float64)
    return mag <= np.nanquantile(mag, fraction)


def _auc_entry(res: dict[str, Any]) -> dict[str, Any]:
    if "auc" not in res:  # a class too small to score
        return {"too_small": True, "n_train": int(res["n_train"]), "n_test": int(res["n_test"])}
    out = {"auc": res["auc"], "n_train": int(res["n_train"]), "n_test": int(res["n_test"])}
    if all(math.isfinite(v) for v in res["interval"]):
        out["interval"] = [float(v) for v in res["interval"]]
    return out


def powered_c2st_block(
    m: Measured, train: tuple[GalaxySet, dict[str, GalaxySet]], cfg: Mapping[str, Any], seed: int
) -> dict[str, dict[str, Any]]:
    r"""The powered C2ST (:mod:`.classify`) of every model with train counterparts, and its real-vs-real control.

    Returns ``{model: {"all": entry, "bright": entry}, "control": {...}}``; entries hold ``auc``,
    ``interval`` (95 % bootstrap), ``n_train`` (stamps per class) and ``n_test`` (stamps scored).
    """
    from .classify import powered_c2st, prepare

    pc = cfg["c2st"]["powered"]
    kw = {"seed": seed, "epochs": int(pc["epochs"]), "batch_size": int(pc["batch_size"]), "lr": float(pc["lr"]),
          "n_boot": int(pc["n_boot"])}  # fmt: skip
    crop, ch = int(pc["crop"]), m.channel
    train_real, train_gens = train

    def prep(gs: GalaxySet, sel: Any = slice(None)) -> np.ndarray:
        return prepare(gs.images[sel, ch], gs.noise_sigma[sel], crop)

    x_real, x_train = prep(m.real), prep(train_real)
    h1, h2 = split_halves(train_real.ids, salt="metrics-train-half")
    a, b = m.half_a, m.half_b
    sub = {"bright": (m.bright[a], m.bright[b])} if m.bright is not None else {}
    res = powered_c2st(x_train[h1], x_train[h2], x_real[a], x_real[b], subsets=sub, **kw)
    out = {"control": {k: _auc_entry(v) for k, v in res.items()}}
    for name, gen_train in train_gens.items():
        if name not in m.gens:
            continue
        sub = {"bright": (m.bright, m.bright)} if m.bright is not None else {}
        res = powered_c2st(x_train, prep(gen_train), x_real, prep(m.gens[name]), subsets=sub, **kw)
        out[name] = {k: _auc_entry(v) for k, v in res.items()}
        log.info(
            "%s: powered C2ST AUC %.3f (control %.3f)", name, out[name]["all"]["auc"], out["control"]["all"]["auc"]
        )
    return out


def _bright_block(m: Measured, name: str, cfg: Mapping[str, Any], seed: int) -> dict[str, Any]:
    r"""The generated-vs-real entries inside the bright bin (floors from the bin's halves)."""
    br, min_half = m.bright, int(cfg["bright"]["min_half"])
    a, b = m.half_a & br, m.half_b & br
    gp = m.gen_props[name]
    mag = np.asarray(m.real.catalog["mag"], np.float64)
    block = {
        "n": int(br.sum()),
        "mag_max": float(mag[br].max()),
        **compare_sets(m.real_props, gp, a, b, min_half=min_half),
    }
    if min(a.sum(), b.sum()) < min_half:
        block["power_spectrum"] = _too_small(a.sum(), b.sum(), min_half)
    else:
        ra, rb = m.real.images[a, m.channel], m.real.images[b, m.channel]
        gb = m.gens[name].images[b, m.channel]
        block["power_spectrum"] = _entry(
            power_spectrum_distance(ra, gb), power_spectrum_distance(ra, rb), 0, 0, key="distance"
        )
    block["shape_bias"] = shape_biases(m.real_props, gp, br, n_boot=int(cfg["shapes"]["n_boot"]), seed=seed)
    return block


def compare(
    m: Measured, cfg: Mapping[str, Any], seed: int, train: tuple[GalaxySet, dict[str, GalaxySet]] | None = None
) -> dict[str, Any]:
    r"""Step 2: the ``generation`` block of ``metrics.json``, one entry per model (each distance beside its floor).

    Arguments:
        m: The measured sets (:func:`measure`).
        cfg: The ``metrics`` config section (``c2st``, ``bright``, ``shapes``).
        seed: Global seed (C2ST, bootstraps).
        train: The train split and its generated counterparts by model (the powered C2ST; None: left out).
    """
    c2st = {"seed": seed, "epochs": int(cfg["c2st"]["epochs"]), "batch_size": int(cfg["c2st"]["batch_size"]),
            "lr": float(cfg["c2st"]["lr"])}  # fmt: skip
    real, a, b = m.real, m.half_a, m.half_b
    ra_img, rb_img = real.images[a, m.channel], real.images[b, m.channel]
    # floors: real A vs real B (independent of the model)
    ps_floor = power_spectrum_distance(ra_img, rb_img)
    auc_floor = c2st_auc(ra_img, rb_img, real.noise_sigma[a], real.noise_sigma[b], **c2st)
    powered = powered_c2st_block(m, train, cfg, seed) if train is not None else {}
    generation: dict[str, Any] = {}
    for name, gen in m.gens.items():
        gp = m.gen_props[name]
        block = compare_sets(m.real_props, gp, a, b)
        gb_img = gen.images[b, m.channel]
        block["power_spectrum"] = _entry(power_spectrum_distance(ra_img, gb_img), ps_floor, 0, 0, key="distance")
        block["c2st_auc"] = c2st_auc(ra_img, gb_img, real.noise_sigma[a], gen.noise_sigma[b], **c2st)
        block["c2st_auc_floor"] = auc_floor
        if name in powered:
            block["c2st_powered"] = {**powered[name]["all"], "control": powered["control"]["all"]}
        block["shape_bias"] = shape_biases(m.real_props, gp, n_boot=int(cfg["shapes"]["n_boot"]), seed=seed)
        block["hsm_failure_rate"] = {
            "real": float(m.real_props["hsm_failed"].mean()),
            "generated": float(gp["hsm_failed"].mean()),
        }
        block["conditional"] = _conditional(m, name)
        if name in m.gen_truth_props:
            block["psf_free"] = compare_sets(m.real_truth_props, m.gen_truth_props[name], a, b)["morphology"]
        if m.bright is not None:
            block["bright"] = _bright_block(m, name, cfg, seed)
            if name in powered and "bright" in powered[name]:
                block["bright"]["c2st_powered"] = {**powered[name]["bright"], "control": powered["control"]["bright"]}
        generation[name] = block
        log.info("%s: morphology mean ratio %s, C2ST AUC %.3f (floor %.3f)", name,
                 block["morphology_mean_ratio"], block["c2st_auc"], auc_floor)  # fmt: skip
    return generation


def assemble(
    n_test: int,
    generation: dict[str, Any],
    upstream: Mapping[str, str | os.PathLike],
    benchmarks: str | os.PathLike | None,
) -> dict[str, Any]:
    r"""Step 3: the ``metrics.json`` dictionary: data counts, the stage summaries, ``generation``, wall times.

    Arguments:
        n_test: Galaxies in the test split.
        generation: The block of :func:`compare`.
        upstream: Stage files by :data:`UPSTREAM` key (``train``, ``val``: data files (counted);
            ``cleaning``, ``ae_metrics``, ``flow_metrics``: JSON summaries); keys left out are skipped.
        benchmarks: Folder of the Snakemake benchmark files ``<rule>.tsv`` (``timing_s``; this rule's own
            is skipped; None: no wall times).
    """
    data: dict[str, Any] = {"n_test": n_test}
    for key, split in (("n_train", "train"), ("n_val", "val")):
        if split in upstream:
            data[key] = _n_ids(upstream[split])
    if "cleaning" in upstream:
        data["cleaning"] = _read_json(upstream["cleaning"])
    metrics: dict[str, Any] = {"format_version": FORMAT_VERSION, "data": data}
    if "ae_metrics" in upstream:
        metrics["autoencoder"] = _read_json(upstream["ae_metrics"], AE_KEYS, optional=AE_OPTIONAL)
    if "flow_metrics" in upstream:
        metrics["flow"] = _read_json(upstream["flow_metrics"], FLOW_KEYS)
    metrics["generation"] = generation
    if "draws" in upstream:
        metrics["draws"] = _read_json(upstream["draws"], ("spread",))["spread"]
    files = sorted(Path(benchmarks).glob("*.tsv")) if benchmarks is not None else []
    metrics["timing_s"] = read_benchmarks(files, skip=("metrics",))
    return metrics


def _reconstructions(autoencoder: str | os.PathLike, gs: GalaxySet) -> np.ndarray:
    r"""Posterior-mean observed-image reconstructions (N, C, H, W) of ``gs`` in counts."""
    from ..autoencoder.evaluate import reconstruct_set
    from ..autoencoder.io import check_stamps, load_autoencoder

    net, meta = load_autoencoder(autoencoder, device="cpu")
    check_stamps(meta, gs, "test split", autoencoder)
    return reconstruct_set(net, meta, gs)["model"] * float(meta["norm_scale"])


def plot(
    plots: Mapping[str, str | os.PathLike],
    m: Measured,
    samples: Mapping[str, str | os.PathLike],
    upstream: Mapping[str, str | os.PathLike],
    cfg: Mapping[str, Any],
) -> None:
    r"""Step 4: the figures (:func:`morphoflow.metrics.plots.make_plots`).

    The latent corner plot shows the ``z_mean`` of ``upstream["latents"]`` (:func:`read_latents`) and the
    flow samples' latents (dataset ``z`` of ``samples["flow"]``, if any); the loss curves the histories.
    """
    from .plots import grid_index, make_plots

    z_real = z_gen = None
    if "latents" in upstream:
        z_real = read_latents(upstream["latents"]).z_mean
        if "flow" in samples:
            with h5py.File(samples["flow"], "r") as f:
                z_gen = f["z"][()] if "z" in f else None
    stages = (("autoencoder", "ae_history"), ("flow", "flow_history"))
    histories = {name: upstream[key] for name, key in stages if key in upstream}
    recon = None
    if "autoencoder" in upstream:
        recon = _reconstructions(
            upstream["autoencoder"], m.real.subset(grid_index(m.real, int(cfg["plots"]["n_grid"])))
        )
        recon = recon[:, m.channel]
    make_plots(
        plots,
        real=m.real,
        gens=m.gens,
        real_props=m.real_props,
        gen_props=m.gen_props,
        channel=m.channel,
        z_real=z_real,
        z_gen=z_gen,
        histories=histories,
        config=cfg["plots"],
        recon=recon,
        bright=m.bright,
    )


def _unavailable(name: str, config: Mapping[str, Any]) -> str:
    if name == "parametric" and "data" in config:
        from ..parametric import parametric_unavailable

        why = parametric_unavailable(config)
        if why is not None:
            return why
    return f"no samples of '{name}' were given"


def _read_train(
    train: str | os.PathLike | None, train_samples: Mapping[str, str | os.PathLike], m: Measured
) -> tuple[GalaxySet, dict[str, GalaxySet]] | None:
    r"""The train split and its generated counterparts (checked against it); None when either is missing."""
    if train is None or not train_samples:
        return None
    real = read_galaxies(train)
    if real.images.shape[1:] != m.real.images.shape[1:]:
        raise ContractError(f"{train}: stamps {real.images.shape[1:]} differ from the test split's")
    gens = {}
    for name, path in train_samples.items():
        gens[name] = read_galaxies(path)
        _check_same_galaxies(real, gens[name], str(path))
    return real, gens


def run_metrics(
    *,
    test: str | os.PathLike,
    samples: Mapping[str, str | os.PathLike],
    metrics: str | os.PathLike,
    train_samples: Mapping[str, str | os.PathLike] | None = None,
    summary: str | os.PathLike | None = None,
    plots: Mapping[str, str | os.PathLike] | None = None,
    config: Mapping[str, Any],
    upstream: Mapping[str, str | os.PathLike] | None = None,
    benchmarks: str | os.PathLike | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    r"""Rule ``metrics``: measure real and generated galaxies, write ``metrics.json``, ``summary.md`` and the plots.

    Steps: :func:`measure`, :func:`compare`, :func:`assemble` (then :func:`write_metrics` and
    :func:`~morphoflow.metrics.summary.write_summary`), :func:`plot`.

    Arguments:
        test: Real test galaxies (contract file).
        samples: Generated galaxies per model name (``flow``, ``gaussian``), one per test galaxy,
            same ids and order.
        metrics: Output ``metrics.json`` (layout :data:`METRICS_SCHEMA`).
        train_samples: Generated counterparts of the train split (``upstream["train"]``) per model name:
            the powered C2ST (:func:`powered_c2st_block`) is run where given.
        summary: Output ``summary.md`` (None: not written).
        plots: Plot outputs by kind (see :func:`morphoflow.metrics.plots.make_plots`; None: none).
        config: ``{"metrics": ..., "seed": ..., "data": {"source"}}`` from the validated config; a model of
            ``metrics.models`` without samples is written as ``{"unavailable": reason}``.
        upstream: Files of the other stages by :data:`UPSTREAM` key (all optional; ``autoencoder``: the
            reconstruction row of the grid).
        benchmarks: Folder of the other rules' Snakemake benchmark files (``timing_s``).

    Returns:
        The dictionary written to ``metrics``.
    """
    cfg, seed = config["metrics"], int(config["seed"])
    upstream = dict(upstream or {})
    unknown = set(upstream) - set(UPSTREAM)
    if unknown:
        raise ValueError(f"unknown upstream inputs {sorted(unknown)} (known: {list(UPSTREAM)})")
    m = measure(test, samples, cfg, progress=progress)
    train = _read_train(upstream.get("train"), train_samples or {}, m)
    generation = compare(m, cfg, seed, train)
    for name in cfg["models"]:
        if name not in generation:
            generation[name] = {"unavailable": _unavailable(name, config)}
    written = write_metrics(metrics, assemble(len(m.real), generation, upstream, benchmarks))
    if summary is not None:
        write_summary(summary, written, cfg["targets"])
    if plots:
        plot(plots, m, samples, upstream, cfg)
    return written
