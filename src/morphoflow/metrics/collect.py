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
    "PROPERTIES",
    "METRICS_SCHEMA",
    "measure_properties",
    "compare_sets",
    "validate_metrics",
    "write_metrics",
    "read_benchmarks",
    "run_metrics",
]

import json
import logging
import math
import os
from pathlib import Path
from typing import Any

import h5py
import jsonschema
import numpy as np
from scipy.stats import spearmanr

from ..atomic import atomic_path
from ..config import SCHEMA_DIR
from ..contract import ContractError, GalaxySet, read_galaxies
from .c2st import c2st_auc
from .distances import frechet_distance, split_halves, wasserstein_1d, with_floor
from .moments import measure_moments
from .morphology import MORPHOLOGY_PROPERTIES, measure_morphology
from .power_spectrum import power_spectrum_1d, power_spectrum_distance

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


def compare_sets(
    real: dict[str, np.ndarray],
    gen: dict[str, np.ndarray],
    half_a: np.ndarray,
    half_b: np.ndarray,
    properties: tuple[str, ...] = PROPERTIES,
) -> dict[str, Any]:
    r"""Per-property W1 and the Fréchet distance of generated vs real, each beside its floor.

    ``real`` and ``gen`` hold per-galaxy properties of the same galaxies (generated galaxy i at
    the conditions of real galaxy i); ``half_a`` / ``half_b`` are boolean masks of the halves.
    """
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


def write_metrics(path: str | os.PathLike, metrics: dict[str, Any], schema: str | os.PathLike = METRICS_SCHEMA) -> dict[str, Any]:
    r"""Validate ``metrics`` against :data:`METRICS_SCHEMA` and write it atomically as JSON.

    Another mode may add its own block (e.g. ``"particles"``) and call this. Returns the
    cleaned dictionary that was written.
    """
    metrics = _clean(metrics)
    validate_metrics(metrics, schema)
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(metrics, indent=2, sort_keys=False) + "\n")
    return metrics


def read_benchmarks(paths: list[str | os.PathLike], skip: tuple[str, ...] = ()) -> dict[str, float]:
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


def _n_ids(path: str | os.PathLike | None) -> int | None:
    if path is None or not Path(path).exists():
        return None
    try:
        with h5py.File(path, "r") as f:
            return int(f["catalog/id"].shape[0])
    except (OSError, KeyError) as err:
        raise ContractError(f"{path}: cannot read dataset 'catalog/id' ({err})") from err


def _read_json(
    path: str | os.PathLike | None, keys: tuple[str, ...] = (), optional: tuple[str, ...] = ()
) -> dict[str, Any] | None:
    if path is None or not Path(path).exists():
        return None
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
        raise ContractError(f"{name}: dataset 'images' has stamps {gen.images.shape[1:]}, test set has {test.images.shape[1:]}")
    if len(gen) != len(test) or not np.array_equal(gen.ids, test.ids):
        raise ContractError(f"{name}: dataset 'catalog/id' must list the test galaxies' ids in the same order")


def run_metrics(
    *,
    test: str | os.PathLike,
    samples: dict[str, str | os.PathLike],
    metrics_json: str | os.PathLike,
    summary_md: str | os.PathLike | None = None,
    plots: dict[str, str | os.PathLike] | None = None,
    config: dict[str, Any] | None = None,
    seed: int = 0,
    latents: str | os.PathLike | None = None,
    train: str | os.PathLike | None = None,
    val: str | os.PathLike | None = None,
    cleaning: str | os.PathLike | None = None,
    ae_metrics: str | os.PathLike | None = None,
    flow_metrics: str | os.PathLike | None = None,
    ae_history: str | os.PathLike | None = None,
    flow_history: str | os.PathLike | None = None,
    benchmarks: list[str | os.PathLike] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    r"""Measure real and generated galaxies, write ``metrics.json``, ``summary.md`` and the plots.

    Arguments:
        test: Real test galaxies (contract file).
        samples: Generated galaxies per model name (``flow``, ``gaussian``), one per test galaxy,
            same ids and order.
        metrics_json, summary_md: Outputs.
        plots: Plot outputs by kind (see :func:`morphoflow.metrics.plots.make_plots`).
        config: The ``metrics`` config section.
        seed: Global seed (C2ST).
        latents, train, val, cleaning, ae_metrics, flow_metrics, ae_history, flow_history,
        benchmarks: Optional inputs of the other stages.
    """
    cfg = config or {}
    mcfg = cfg.get("morphology", {})
    ccfg = cfg.get("c2st", {})
    channel = int(cfg.get("channel", 0))
    engine = mcfg.get("engine", "batched")
    batch_size = int(mcfg.get("batch_size", 256))

    real = read_galaxies(test)
    if not 0 <= channel < real.images.shape[1]:
        raise ValueError(f"config key 'metrics.channel': {channel} is not a channel of {test} ({real.images.shape[1]})")
    half_a, half_b = split_halves(real.ids)
    if half_a.sum() < 2 or half_b.sum() < 2:
        raise ValueError(f"{test}: too few test galaxies ({len(real)}) to split into two halves")
    ps, zp = real.pixel_scale, float(real.attrs["zeropoint_ab"])
    log.info("test set %s: %d galaxies (A %d, B %d)", test, len(real), half_a.sum(), half_b.sum())

    def props(images: np.ndarray, sigma: np.ndarray) -> dict[str, np.ndarray]:
        return measure_properties(images[:, channel], sigma, engine=engine, batch_size=batch_size, progress=progress)

    real_props = props(real.images, real.noise_sigma)
    real_truth_props = None
    if real.truth is not None:
        real_truth_props = props(real.truth, np.zeros(len(real)))
    cond_real = _measured_conditions(real_props, ps, zp)

    # floors: real A vs real B (independent of the model)
    ra_img, rb_img = real.images[half_a, channel], real.images[half_b, channel]
    ps_floor = power_spectrum_distance(ra_img, rb_img)
    c2st_kw = dict(
        seed=seed,
        epochs=int(ccfg.get("epochs", 20)),
        batch_size=int(ccfg.get("batch_size", 64)),
        lr=float(ccfg.get("lr", 2e-3)),
    )
    auc_floor = c2st_auc(ra_img, rb_img, real.noise_sigma[half_a], real.noise_sigma[half_b], **c2st_kw)

    generation: dict[str, Any] = {}
    gen_sets: dict[str, GalaxySet] = {}
    gen_props_all: dict[str, dict[str, np.ndarray]] = {}
    for name, path in samples.items():
        gen = read_galaxies(path)
        _check_same_galaxies(real, gen, str(path))
        gen_sets[name] = gen
        gp = props(gen.images, gen.noise_sigma)
        gen_props_all[name] = gp
        block = compare_sets(real_props, gp, half_a, half_b)
        gb_img = gen.images[half_b, channel]
        block["power_spectrum"] = _entry(
            power_spectrum_distance(ra_img, gb_img), ps_floor, 0, 0, key="distance"
        )
        block["c2st_auc"] = c2st_auc(ra_img, gb_img, real.noise_sigma[half_a], gen.noise_sigma[half_b], **c2st_kw)
        block["c2st_auc_floor"] = auc_floor
        block["hsm_failure_rate"] = {
            "real": float(real_props["hsm_failed"].mean()),
            "generated": float(gp["hsm_failed"].mean()),
        }
        cond_gen = _measured_conditions(gp, ps, zp)
        conditional = {}
        for cname in ("mag", "hlr_arcsec"):
            if cname in gen.catalog and cname in real.catalog:
                conditional[cname] = {
                    "corr_generated": _spearman(np.asarray(gen.catalog[cname], np.float64), cond_gen[cname]),
                    "corr_real": _spearman(np.asarray(real.catalog[cname], np.float64), cond_real[cname]),
                }
        block["conditional"] = conditional
        if real_truth_props is not None and gen.truth is not None:
            gtp = props(gen.truth, np.zeros(len(gen)))
            block["psf_free"] = compare_sets(real_truth_props, gtp, half_a, half_b)["morphology"]
        generation[name] = block
        log.info("%s: morphology mean ratio %s, C2ST AUC %.3f (floor %.3f)", name,
                 block["morphology_mean_ratio"], block["c2st_auc"], auc_floor)

    data: dict[str, Any] = {"n_test": len(real)}
    for key, p in (("n_train", train), ("n_val", val)):
        n = _n_ids(p)
        if n is not None:
            data[key] = n
    clean = _read_json(cleaning)
    if clean is not None:
        data["cleaning"] = clean
    metrics: dict[str, Any] = {"format_version": 1, "data": data}
    ae = _read_json(ae_metrics, ("test_chi2_per_pixel", "test_chi2_per_pixel_stamp", "test_mse", "test_ssim"),
                    optional=("floor_exact_chi2_per_pixel", "floor_smooth_chi2_per_pixel"))
    if ae is not None:
        metrics["autoencoder"] = ae
    fl = _read_json(flow_metrics, ("test_nll_per_dim",))
    if fl is not None:
        metrics["flow"] = fl
    metrics["generation"] = generation
    metrics["timing_s"] = read_benchmarks(benchmarks or [], skip=("metrics",))
    written = write_metrics(metrics_json, metrics)

    if summary_md is not None:
        from .summary import write_summary

        write_summary(summary_md, written, cfg.get("targets", {}))
    if plots:
        from .plots import make_plots

        z_real = z_gen = None
        if latents is not None and Path(latents).exists():
            with h5py.File(latents, "r") as f:
                if "z_mean" not in f:
                    raise ContractError(f"{latents}: dataset 'z_mean' is missing")
                z_real = f["z_mean"][()]
            if "flow" in samples:
                with h5py.File(samples["flow"], "r") as f:
                    z_gen = f["z"][()] if "z" in f else None
        make_plots(
            plots,
            real=real,
            gens=gen_sets,
            real_props=real_props,
            gen_props=gen_props_all,
            channel=channel,
            z_real=z_real,
            z_gen=z_gen,
            histories={k: v for k, v in (("autoencoder", ae_history), ("flow", flow_history)) if v},
            pcfg=cfg.get("plots", {}),
            power=power_spectrum_1d,
        )
    return written
