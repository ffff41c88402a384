r"""One entry point per Snakemake rule of star-particle mode (``rules/particles.smk``).

DAG: ``particles_simulate`` (or ``particles_import`` of GalacticFlow ``.npy`` files) →
``results/particles/raw_stars.h5`` → ``particles_clean`` → ``results/particles/stars.h5`` + ``cleaning.json``
→ ``particles_render`` → ``results/data/raw.h5`` → (image pipeline: preprocess, autoencoder, latents) →
``particles_train_{variant}`` → ``particles_sample_{variant}`` → ``particles_plots`` → ``particles_metrics``
→ ``results/metrics.json``. File layouts in ``docs/particles.md``.

Every ``run_<rule>`` takes keyword arguments named like the rule's inputs and outputs and, where the rule
has settings, ``config``: a nested dict shaped like the top-level config holding only what the rule needs
(``params: config=pick(...)``), read without defaults (the schema fills them).
"""

from __future__ import annotations

__all__ = [
    "load_split",
    "run_particles_clean",
    "run_particles_import",
    "run_particles_metrics",
    "run_particles_plots",
    "run_particles_render",
    "run_particles_sample",
    "run_particles_simulate",
    "run_particles_train",
    "sample_stars",
]

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from ..atomic import atomic_path
from ..autoencoder.latents import read_latents
from ..contract import write_galaxies
from ..flow import ConditionalFlow, load_flow, nll_per_dim, save_flow, train_conditional_flow
from ..metrics.collect import FORMAT_VERSION, read_benchmarks, write_metrics
from ..seeding import item_rng
from . import metrics as pm
from . import plots
from .clean import clean_stars
from .dataset import TARGET_COLUMNS, build_table, galaxy_contexts, stars_to_target, target_to_stars
from .io import STAR_COLUMNS, StarSet, read_npy_folder, read_stars, write_stars
from .render import render_stars
from .simulate import simulate_stars

log = logging.getLogger("morphoflow.particles")


def _write_json(path: str | os.PathLike, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, default=float) + "\n")


def run_particles_simulate(*, raw_stars: str | os.PathLike, config: Mapping[str, Any]) -> StarSet:
    r"""Rule ``particles_simulate``: draw the analytic galaxies into a raw star file.

    Arguments:
        raw_stars: Output star file.
        config: ``{"particles": {"simulate": ...}, "seed": ...}`` from the validated config.
    """

    ss = simulate_stars(int(config["seed"]), config["particles"]["simulate"])
    write_stars(raw_stars, ss)
    log.info("simulated %d galaxies, %d stars -> %s", len(ss), len(ss.stars), raw_stars)
    return ss


def run_particles_import(*, folder: str | os.PathLike, raw_stars: str | os.PathLike) -> StarSet:
    r"""Rule ``particles_import``: read a folder of GalacticFlow ``.npy`` galaxies into a raw star file."""

    ss = read_npy_folder(folder)
    write_stars(raw_stars, ss)
    log.info("imported %d galaxies, %d stars from %s", len(ss), len(ss.stars), folder)
    return ss


def run_particles_clean(
    *, raw_stars: str | os.PathLike, stars: str | os.PathLike, cleaning: str | os.PathLike, config: Mapping[str, Any]
) -> dict[str, Any]:
    r"""Rule ``particles_clean``: GalacticFlow cleaning + alignment, global parameters, JSON report of counts.

    Arguments:
        raw_stars: Input star file; ``stars``: the cleaned star file; ``cleaning``: the report (JSON).
        config: ``{"particles": {"clean": ...}}`` from the validated config.
    """

    cleaned, report = clean_stars(read_stars(raw_stars), config["particles"]["clean"])
    if len(cleaned) == 0:
        raise ValueError(f"{raw_stars}: no galaxy survives cleaning (config keys particles.clean.*): {report}")
    write_stars(stars, cleaned)
    _write_json(cleaning, report)
    log.info("cleaning kept %d of %d galaxies, %d of %d stars",
             report["galaxies_out"], report["galaxies_in"], report["stars_out"], report["stars_in"])  # fmt: skip
    return report


def run_particles_render(*, stars: str | os.PathLike, raw: str | os.PathLike, config: Mapping[str, Any]) -> None:
    r"""Rule ``particles_render``: images of the cleaned galaxies in the data contract (``results/data/raw.h5``).

    Arguments:
        config: ``{"particles": {"render": ...}, "seed": ...}`` from the validated config.
    """

    gs = render_stars(read_stars(stars), int(config["seed"]), config["particles"]["render"])
    write_galaxies(raw, gs)
    log.info("rendered %d galaxies (%dx%d) -> %s", len(gs), gs.images.shape[2], gs.images.shape[3], raw)


def load_split(
    ss: StarSet, latent_path: str | os.PathLike, variant: str, context: Sequence[str]
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    r"""Galaxies of one split (the ids of a stage-1 latent file): ``rows`` into ``ss``, contexts (G, K) and
    the context column names."""

    lt = read_latents(latent_path)
    ids = lt.ids
    rows, ctx, cols = galaxy_contexts(ss, ids, lt.z_mean, variant, context, name=str(latent_path))
    missing = len(ids) - len(rows)
    if missing:
        log.warning("%s: %d galaxies have no stars in the star file and are skipped", latent_path, missing)
    if len(rows) == 0:
        raise ValueError(f"{latent_path}: none of its galaxy ids is in the star file")
    return rows, ctx, cols


def run_particles_train(
    *,
    stars: str | os.PathLike,
    train: str | os.PathLike,
    val: str | os.PathLike,
    model: str | os.PathLike,
    history: str | os.PathLike,
    variant: str,
    checkpoints: str | os.PathLike,
    config: Mapping[str, Any],
    progress: bool = True,
) -> ConditionalFlow:
    r"""Rule ``particles_train``: fit the star flow on the training galaxies, validate on the val galaxies.

    Arguments:
        stars: Cleaned star file; ``train``, ``val``: stage-1 latent files (their ids are the splits).
        model, history: Outputs: the flow (:func:`~morphoflow.flow.save_flow`) and its per-epoch history (CSV).
        variant: ``latent`` (global parameters + image latent) or ``global`` (the rule's wildcard).
        checkpoints: Folder of the training checkpoints (a rerun resumes).
        config: ``{"particles": {"context", "max_stars_per_galaxy", "flow"}, "seed": ...}``.
    """

    cfg, seed = config["particles"], int(config["seed"])
    ss = read_stars(stars)
    context = list(cfg["context"])
    max_stars = cfg["max_stars_per_galaxy"]
    rows, ctx, cols = load_split(ss, train, variant, context)
    vrows, vctx, _ = load_split(ss, val, variant, context)
    t, c, gal = build_table(ss, rows, ctx, max_stars, seed)
    vt, vc, vgal = build_table(ss, vrows, vctx, max_stars, seed)
    log.info("particle flow '%s': %d training stars of %d galaxies, %d validation stars of %d galaxies, context %s",
             variant, len(t), len(rows), len(vt), len(vrows), cols)  # fmt: skip
    cflow = train_conditional_flow(
        t, c, vt, vc, cfg["flow"], seed, checkpoints, history, context_columns=cols, progress=progress
    )
    meta = {
        "variant": variant,
        "global_context": context,
        "target_columns": list(TARGET_COLUMNS),
        "train_ids": [int(i) for i in np.unique(gal)],
        "val_ids": [int(i) for i in np.unique(vgal)],
        "n_train_stars": len(t),
        "val_nll_per_dim": nll_per_dim(cflow, vt, vc),
    }
    save_flow(model, cflow, meta)
    return cflow


def sample_stars(
    cflow: ConditionalFlow, ids: np.ndarray, contexts: np.ndarray, counts: np.ndarray, seed: int, batch_size: int
) -> list[np.ndarray]:
    r"""Sample ``counts[g]`` stars of each galaxy ``g`` with ITS OWN context row ``contexts[g]``.

    Base noise of galaxy ``g`` comes from ``item_rng(seed, ids[g], "particles.sample")``, so its stars do
    not depend on the other galaxies or the batch size (stars per inverse-flow call). Returns one
    (counts[g], 10) flow-target array per galaxy.
    """

    eps = [item_rng(seed, int(i), "particles.sample").standard_normal((int(n), cflow.features)).astype(np.float32)
           for i, n in zip(ids, counts, strict=True)]  # fmt: skip
    rows = [np.repeat(np.asarray(c, np.float32)[None], int(n), 0) for c, n in zip(contexts, counts, strict=True)]
    ctx = np.concatenate(rows)
    out = cflow.sample_from_noise(ctx, np.concatenate(eps), batch_size=batch_size)
    return np.split(out, np.cumsum(np.asarray(counts, np.int64))[:-1])


def run_particles_sample(
    *,
    model: str | os.PathLike,
    stars: str | os.PathLike,
    test: str | os.PathLike,
    samples: str | os.PathLike,
    config: Mapping[str, Any],
) -> StarSet:
    r"""Rule ``particles_sample``: as many stars as each held-out (test) galaxy has, from its own context.

    Writes ``samples``, a star file with columns :data:`~morphoflow.particles.io.STAR_COLUMNS` (physical units).

    Arguments:
        model: The flow of one variant; ``stars``: the cleaned star file; ``test``: the test latent file.
        config: ``{"particles": {"sample": {"batch_size"}}, "seed": ...}`` from the validated config.
    """

    cflow = load_flow(model)
    variant = cflow.meta["variant"]
    ss = read_stars(stars)
    context = list(cflow.meta["global_context"])
    rows, ctx, cols = load_split(ss, test, variant, context)
    if cols != cflow.context_columns:
        raise ValueError(f"{test}: context columns {cols} differ from the flow's {cflow.context_columns}")
    leaked = set(int(i) for i in ss.ids[rows]) & set(cflow.meta["train_ids"])
    if leaked:
        raise ValueError(f"{test}: galaxies {sorted(leaked)[:5]} were seen in flow training")
    # Warns (OutOfRangeWarning, in the log) for held-out contexts outside the training range.
    ctx = cflow.context_matrix(dict(zip(cols, ctx.T, strict=True)), on_out_of_range="warn", name=str(test))
    ids, counts = ss.ids[rows], ss.counts[rows]
    out = sample_stars(cflow, ids, ctx, counts, int(config["seed"]), int(config["particles"]["sample"]["batch_size"]))
    galaxies = [target_to_stars(t) for t in out]
    catalog = {"id": ids, "n_stars": counts.astype(np.float64)}
    result = StarSet.from_list(galaxies, catalog, {"id": "", "n_stars": ""}, STAR_COLUMNS,
                               {"source": "particle-flow", "variant": variant})  # fmt: skip
    write_stars(samples, result)
    log.info("sampled %d stars for %d held-out galaxies (%s)", len(result.stars), len(result), variant)
    return result


def _matched(samples: StarSet, ss: StarSet) -> list[tuple[int, np.ndarray, np.ndarray]]:
    r"""``(id, sampled stars, true stars)`` per sampled galaxy, both as flow targets."""
    row_of = {int(i): r for r, i in enumerate(ss.ids)}
    out = []
    for g, gid in enumerate(samples.ids):
        if int(gid) not in row_of:
            raise ValueError(f"sampled galaxy id {gid} is not in the star file")
        truth = stars_to_target(ss.galaxy(row_of[int(gid)]), ss.columns)
        out.append((int(gid), stars_to_target(samples.galaxy(g), samples.columns), truth))
    return out


def run_particles_plots(
    *,
    stars: str | os.PathLike,
    samples: Mapping[str, str | os.PathLike],
    corner: str | os.PathLike,
    maps: str | os.PathLike,
    hist: str | os.PathLike,
) -> None:
    r"""Rule ``particles_plots``: sampled vs true stars.

    Arguments:
        stars: The cleaned star file; ``samples``: the sampled star file of each variant.
        corner, maps: Corner plot and face-on maps of the galaxy with most stars (first variant).
        hist: Per-dimension histograms pooled over the held-out galaxies, every variant.
    """

    ss = read_stars(stars)
    matched = {v: _matched(read_stars(p), ss) for v, p in samples.items()}
    first = next(iter(matched))
    gid, s, t = max(matched[first], key=lambda m: len(m[2]))
    cols = list(TARGET_COLUMNS)
    plots.corner_plot(s, t, cols, corner, title=f"galaxy {gid} ({first})")
    plots.faceon_maps(s, t, cols, maps, title=f"galaxy {gid} ({first})")
    pooled = {v: np.concatenate([m[1] for m in ms]) for v, ms in matched.items()}
    truth = np.concatenate([m[2] for m in matched[first]])
    plots.histograms(pooled, truth, cols, hist, title="held-out galaxies, pooled")


def _variant_metrics(
    ss: StarSet, samples: str | os.PathLike, model: str | os.PathLike, variant: str, seed: int, cfg: Mapping[str, Any]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    r"""Summary (means over galaxies, the flow's validation NLL, context, kind) and per-galaxy values of a variant."""
    cflow = load_flow(model)
    scale = cflow.target_std.std
    per = []
    for gid, s, t in tqdm(_matched(read_stars(samples), ss), desc=f"metrics {variant}", unit="galaxy", leave=False):
        per.append(pm.galaxy_metrics(s, t, scale, seed, gid, cfg))
    summary = pm.summarise(per, list(TARGET_COLUMNS))
    summary["val_nll_per_dim"] = float(cflow.meta["val_nll_per_dim"])
    summary["context"] = list(cflow.context_columns)
    summary["kind"] = cflow.kind
    per_galaxy = [{"id": g["id"], "n_true": g["n_true"], **{m: g["model"][m] for m in pm.METRICS}} for g in per]
    return summary, per_galaxy


def _latent_vs_global(lat: list[dict[str, Any]], glo: list[dict[str, Any]]) -> dict[str, Any]:
    r"""Per metric: the mean of each variant over the same galaxies and the fraction of galaxies where
    ``latent`` is better (lower; C2ST AUC: nearer 0.5)."""
    cmp = {}
    for m in pm.METRICS:
        a = np.array([g[m] for g in lat])
        b = np.array([g[m] for g in glo])
        if m == "c2st_auc":
            a, b = np.abs(a - 0.5), np.abs(b - 0.5)
        cmp[m] = {
            "latent": float(a.mean()),
            "global": float(b.mean()),
            "latent_better_fraction": float((a < b).mean()),
            "latent_improves": bool(a.mean() < b.mean()),
        }
    return cmp


def run_particles_metrics(
    *,
    stars: str | os.PathLike,
    samples: Mapping[str, str | os.PathLike],
    models: Mapping[str, str | os.PathLike],
    train: str | os.PathLike,
    val: str | os.PathLike,
    test: str | os.PathLike,
    cleaning: str | os.PathLike,
    plots: Sequence[str | os.PathLike],
    autoencoder: str | os.PathLike | None = None,
    metrics: str | os.PathLike,
    config: Mapping[str, Any],
    benchmarks: str | os.PathLike | None = None,
) -> dict[str, Any]:
    r"""Rule ``particles_metrics``: per-galaxy distances with floors for each variant, latent-vs-global, data counts.

    Writes ``{"format_version": 2, "data": {...}, "particles": {...}, "autoencoder": {...}, "timing_s": {...}}``
    to ``metrics`` through :func:`morphoflow.metrics.collect.write_metrics` (validated against the package
    schema ``metrics-output.schema.json``).

    Arguments:
        stars: The cleaned star file; ``samples``, ``models``: the sampled star file and the flow of each variant.
        train, val, test: The stage-1 latent files (galaxies counted per split).
        cleaning: The cleaning report; ``plots``: the figures (listed in the output).
        autoencoder: The autoencoder's test metrics (JSON), copied if given.
        config: ``{"particles": {"metrics": ...}, "seed": ...}`` (``n_proj``, ``max_n``, ``c2st_steps``).
        benchmarks: Folder of the Snakemake benchmark files (``timing_s``; None: left out).
    """

    cfg, seed = config["particles"]["metrics"], int(config["seed"])
    ss = read_stars(stars)
    result: dict[str, Any] = {"variants": {}, "per_galaxy": {}}
    for variant, path in samples.items():
        result["variants"][variant], result["per_galaxy"][variant] = _variant_metrics(
            ss, path, models[variant], variant, seed, cfg
        )
    if {"latent", "global"} <= set(result["variants"]):
        result["latent_vs_global"] = _latent_vs_global(result["per_galaxy"]["latent"], result["per_galaxy"]["global"])
    report = {k: v for k, v in json.loads(Path(cleaning).read_text()).items() if k != "config"}
    result["cleaning"] = report
    data: dict[str, Any] = {"n_galaxies": len(ss), "n_stars": len(ss.stars)}
    for split, path in (("train", train), ("val", val), ("test", test)):
        data[f"n_{split}"] = len(read_latents(path).ids)
    data["cleaning"] = report
    result["plots"] = [str(p) for p in plots]
    out: dict[str, Any] = {"format_version": FORMAT_VERSION, "data": data, "particles": result}
    if autoencoder is not None:
        out["autoencoder"] = json.loads(Path(autoencoder).read_text())
    if benchmarks is not None and Path(benchmarks).is_dir():
        out["timing_s"] = read_benchmarks(sorted(Path(benchmarks).glob("*.tsv")), skip=("particles_metrics",))
    return write_metrics(metrics, out)
