r"""One entry point per Snakemake rule of star-particle mode (``rules/particles.smk``).

DAG: ``particles_simulate`` (or ``particles_import`` of GalacticFlow ``.npy`` files) →
``results/particles/raw_stars.h5`` → ``particles_clean`` → ``results/particles/stars.h5`` + ``cleaning.json``
→ ``particles_render`` → ``results/data/raw.h5`` → (image pipeline: preprocess, autoencoder, latents) →
``particles_train_{variant}`` → ``particles_sample_{variant}`` → ``particles_plots`` → ``particles_metrics``
→ ``results/metrics.json``. File layouts in ``docs/particles.md``.
"""

from __future__ import annotations

__all__ = [
    "simulate_particles",
    "import_particles",
    "clean_particles",
    "render_particles",
    "load_split",
    "train_particle_flow",
    "sample_particle_flow",
    "sample_galaxies",
    "plot_particles",
    "particle_metrics",
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
from ..contract import write_galaxies
from ..flow import ConditionalFlow, load_flow, nll_per_dim, save_flow, train_conditional_flow
from ..seeding import item_rng
from . import metrics as pm
from . import plots
from .clean import clean_stars
from .dataset import TARGET_COLUMNS, build_table, galaxy_contexts, read_latents, stars_to_target, target_to_stars
from .io import STAR_COLUMNS, StarSet, read_npy_folder, read_stars, write_stars
from .render import render_stars
from .simulate import simulate_stars

log = logging.getLogger("morphoflow.particles")

DEFAULT_CONTEXT = ["log_mstar", "age_median_gyr", "age_p10_gyr", "log_mean_z"]


def _write_json(path: str | os.PathLike, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, default=float) + "\n")


def simulate_particles(out_stars: str | os.PathLike, seed: int, cfg: Mapping[str, Any]) -> StarSet:
    r"""Rule ``particles_simulate``: draw the analytic galaxies (``particles.simulate``) into a raw star file."""

    ss = simulate_stars(seed, dict(cfg))
    write_stars(out_stars, ss)
    log.info("simulated %d galaxies, %d stars -> %s", len(ss), len(ss.stars), out_stars)
    return ss


def import_particles(folder: str | os.PathLike, out_stars: str | os.PathLike) -> StarSet:
    r"""Rule ``particles_import``: read a folder of GalacticFlow ``.npy`` galaxies into a raw star file."""

    ss = read_npy_folder(folder)
    write_stars(out_stars, ss)
    log.info("imported %d galaxies, %d stars from %s", len(ss), len(ss.stars), folder)
    return ss


def clean_particles(
    in_stars: str | os.PathLike, out_stars: str | os.PathLike, out_report: str | os.PathLike, cfg: Mapping[str, Any]
) -> dict[str, Any]:
    r"""Rule ``particles_clean``: GalacticFlow cleaning + alignment, global parameters, JSON report of counts."""

    cleaned, report = clean_stars(read_stars(in_stars), dict(cfg))
    if len(cleaned) == 0:
        raise ValueError(f"{in_stars}: no galaxy survives cleaning (config keys particles.clean.*): {report}")
    write_stars(out_stars, cleaned)
    _write_json(out_report, report)
    log.info("cleaning kept %d of %d galaxies, %d of %d stars", report["galaxies_out"], report["galaxies_in"], report["stars_out"], report["stars_in"])
    return report


def render_particles(in_stars: str | os.PathLike, out_raw: str | os.PathLike, seed: int, cfg: Mapping[str, Any]) -> None:
    r"""Rule ``particles_render``: images of the cleaned galaxies in the data contract (``results/data/raw.h5``)."""

    gs = render_stars(read_stars(in_stars), seed, dict(cfg))
    write_galaxies(out_raw, gs)
    log.info("rendered %d galaxies (%dx%d) -> %s", len(gs), gs.images.shape[2], gs.images.shape[3], out_raw)


def load_split(
    ss: StarSet, latent_path: str | os.PathLike, variant: str, context: Sequence[str]
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    r"""Galaxies of one split (the ids of a stage-1 latent file): ``rows`` into ``ss``, contexts (G, K), column names."""

    ids, z = read_latents(latent_path)
    rows, ctx, cols = galaxy_contexts(ss, ids, z, variant, context, name=str(latent_path))
    missing = len(ids) - len(rows)
    if missing:
        log.warning("%s: %d galaxies have no stars in the star file and are skipped", latent_path, missing)
    if len(rows) == 0:
        raise ValueError(f"{latent_path}: none of its galaxy ids is in the star file")
    return rows, ctx, cols


def train_particle_flow(
    stars_path: str | os.PathLike,
    latent_train: str | os.PathLike,
    latent_val: str | os.PathLike,
    model_path: str | os.PathLike,
    history_path: str | os.PathLike,
    variant: str,
    cfg: Mapping[str, Any],
    seed: int,
    workdir: str | os.PathLike,
    *,
    progress: bool = True,
) -> ConditionalFlow:
    r"""Rule ``particles_train_{variant}``: fit the star flow on the training galaxies, validate on the val galaxies.

    Arguments:
        cfg: The ``particles`` config section (``context``, ``max_stars_per_galaxy``, ``flow`` with ``train``).
    """

    ss = read_stars(stars_path)
    context = list(cfg.get("context", DEFAULT_CONTEXT))
    max_stars = cfg.get("max_stars_per_galaxy")
    rows, ctx, cols = load_split(ss, latent_train, variant, context)
    vrows, vctx, _ = load_split(ss, latent_val, variant, context)
    t, c, gal = build_table(ss, rows, ctx, max_stars, seed)
    vt, vc, vgal = build_table(ss, vrows, vctx, max_stars, seed)
    flow_cfg = dict(cfg.get("flow", {}))
    log.info("particle flow '%s': %d training stars of %d galaxies, %d validation stars of %d galaxies, context %s",
             variant, len(t), len(rows), len(vt), len(vrows), cols)  # fmt: skip
    cflow = train_conditional_flow(
        t, c, vt, vc, flow_cfg, flow_cfg.get("train", {}), seed, workdir, history_path,
        context_columns=cols, progress=progress,
    )  # fmt: skip
    meta = {
        "variant": variant,
        "global_context": context,
        "target_columns": list(TARGET_COLUMNS),
        "train_ids": [int(i) for i in np.unique(gal)],
        "val_ids": [int(i) for i in np.unique(vgal)],
        "n_train_stars": int(len(t)),
        "val_nll_per_dim": nll_per_dim(cflow, vt, vc),
    }
    save_flow(model_path, cflow, meta)
    return cflow


def sample_galaxies(
    cflow: ConditionalFlow, ids: np.ndarray, contexts: np.ndarray, counts: np.ndarray, seed: int, batch_size: int = 65536
) -> list[np.ndarray]:
    r"""Sample ``counts[g]`` stars of each galaxy ``g`` with ITS OWN context row ``contexts[g]``.

    Base noise of galaxy ``g`` comes from ``item_rng(seed, ids[g], "particles.sample")``, so its stars do
    not depend on the other galaxies or the batch size. Returns one (counts[g], 10) target array per galaxy.
    """

    eps = [item_rng(seed, int(i), "particles.sample").standard_normal((int(n), cflow.features)).astype(np.float32) for i, n in zip(ids, counts)]
    ctx = np.concatenate([np.repeat(np.asarray(c, np.float32)[None], int(n), 0) for c, n in zip(contexts, counts)])
    out = cflow.sample_from_noise(ctx, np.concatenate(eps), batch_size=batch_size)
    return np.split(out, np.cumsum(np.asarray(counts, np.int64))[:-1])


def sample_particle_flow(
    model_path: str | os.PathLike,
    stars_path: str | os.PathLike,
    latent_test: str | os.PathLike,
    out_samples: str | os.PathLike,
    seed: int,
    batch_size: int = 65536,
) -> StarSet:
    r"""Rule ``particles_sample_{variant}``: as many stars as each held-out (test) galaxy has, from its own context.

    Writes a star file with columns :data:`~morphoflow.particles.io.STAR_COLUMNS` (physical units).
    """

    cflow = load_flow(model_path)
    variant = cflow.meta["variant"]
    ss = read_stars(stars_path)
    context = list(cflow.meta["global_context"])
    rows, ctx, cols = load_split(ss, latent_test, variant, context)
    if cols != cflow.context_columns:
        raise ValueError(f"{latent_test}: context columns {cols} differ from the flow's {cflow.context_columns}")
    leaked = set(int(i) for i in ss.ids[rows]) & set(cflow.meta["train_ids"])
    if leaked:
        raise ValueError(f"{latent_test}: galaxies {sorted(leaked)[:5]} were seen in flow training")
    # Warns (OutOfRangeWarning, in the log) for held-out contexts outside the training range.
    ctx = cflow.context_matrix(dict(zip(cols, ctx.T)), on_out_of_range="warn", name=str(latent_test))
    ids, counts = ss.ids[rows], ss.counts[rows]
    out = sample_galaxies(cflow, ids, ctx, counts, seed, batch_size)
    galaxies = [target_to_stars(t) for t in out]
    catalog = {"id": ids, "n_stars": counts.astype(np.float64)}
    samples = StarSet.from_list(galaxies, catalog, {"id": "", "n_stars": ""}, STAR_COLUMNS,
                                {"source": "particle-flow", "variant": variant})  # fmt: skip
    write_stars(out_samples, samples)
    log.info("sampled %d stars for %d held-out galaxies (%s)", len(samples.stars), len(samples), variant)
    return samples


def _matched(samples: StarSet, ss: StarSet) -> list[tuple[int, np.ndarray, np.ndarray]]:
    row_of = {int(i): r for r, i in enumerate(ss.ids)}
    out = []
    for g, gid in enumerate(samples.ids):
        if int(gid) not in row_of:
            raise ValueError(f"sampled galaxy id {gid} is not in the star file")
        truth = stars_to_target(ss.galaxy(row_of[int(gid)]), ss.columns)
        out.append((int(gid), stars_to_target(samples.galaxy(g), samples.columns), truth))
    return out


def plot_particles(
    stars_path: str | os.PathLike, samples: Mapping[str, str | os.PathLike], out: Mapping[str, str | os.PathLike]
) -> None:
    r"""Rule ``particles_plots``: ``out`` keys ``corner``, ``maps`` (galaxy with most stars, first variant), ``hist``."""

    ss = read_stars(stars_path)
    matched = {v: _matched(read_stars(p), ss) for v, p in samples.items()}
    first = next(iter(matched))
    gid, s, t = max(matched[first], key=lambda m: len(m[2]))
    cols = list(TARGET_COLUMNS)
    plots.corner_plot(s, t, cols, out["corner"], title=f"galaxy {gid} ({first})")
    plots.faceon_maps(s, t, cols, out["maps"], title=f"galaxy {gid} ({first})")
    pooled = {v: np.concatenate([m[1] for m in ms]) for v, ms in matched.items()}
    truth = np.concatenate([m[2] for m in matched[first]])
    plots.histograms(pooled, truth, cols, out["hist"], title="held-out galaxies, pooled")


def particle_metrics(
    stars_path: str | os.PathLike,
    samples: Mapping[str, str | os.PathLike],
    models: Mapping[str, str | os.PathLike],
    latents: Mapping[str, str | os.PathLike],
    cleaning_path: str | os.PathLike,
    out_json: str | os.PathLike,
    seed: int,
    cfg: Mapping[str, Any] | None = None,
    autoencoder_metrics: str | os.PathLike | None = None,
    plot_paths: Sequence[str] = (),
    bench_dir: str | os.PathLike | None = None,
) -> dict[str, Any]:
    r"""Rule ``particles_metrics``: per-galaxy distances with floors for each variant, latent-vs-global, data counts.

    Writes ``{"format_version": 1, "data": {...}, "particles": {...}, "autoencoder": {...}, "timing_s": {...}}``
    to ``out_json`` through :func:`morphoflow.metrics.collect.write_metrics` (validated against
    ``docs/metrics.schema.json``); ``timing_s`` holds the wall times of the Snakemake benchmark files
    found in ``bench_dir``.

    Arguments:
        cfg: The ``particles.metrics`` config block (``n_proj``, ``max_n``, ``c2st_steps``).
    """

    cfg = dict(cfg or {})
    ss = read_stars(stars_path)
    result: dict[str, Any] = {"variants": {}, "per_galaxy": {}}
    cols = list(TARGET_COLUMNS)
    for variant, path in samples.items():
        cflow = load_flow(models[variant])
        scale = cflow.target_std.std
        per = []
        for gid, s, t in tqdm(_matched(read_stars(path), ss), desc=f"metrics {variant}", unit="galaxy", leave=False):
            per.append(pm.galaxy_metrics(s, t, scale, seed, gid, int(cfg.get("n_proj", 128)), int(cfg.get("max_n", 1000)),
                                         int(cfg.get("c2st_steps", 200))))  # fmt: skip
        summary = pm.summarise(per, cols)
        summary["val_nll_per_dim"] = float(cflow.meta["val_nll_per_dim"])
        summary["context"] = list(cflow.context_columns)
        summary["kind"] = cflow.kind
        result["variants"][variant] = summary
        result["per_galaxy"][variant] = [
            {"id": g["id"], "n_true": g["n_true"], **{f"{m}": g["model"][m] for m in pm.METRICS}} for g in per
        ]
    if {"latent", "global"} <= set(result["variants"]):
        lat, glo = result["per_galaxy"]["latent"], result["per_galaxy"]["global"]
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
        result["latent_vs_global"] = cmp
    cleaning = {k: v for k, v in json.loads(Path(cleaning_path).read_text()).items() if k != "config"}
    result["cleaning"] = cleaning
    data: dict[str, Any] = {"n_galaxies": len(ss), "n_stars": int(len(ss.stars))}
    for split, path in latents.items():
        ids, _ = read_latents(path)
        data[f"n_{split}"] = int(len(ids))
    data["cleaning"] = cleaning
    result["plots"] = [str(p) for p in plot_paths]
    out: dict[str, Any] = {"format_version": 1, "data": data, "particles": result}
    if autoencoder_metrics is not None and Path(autoencoder_metrics).exists():
        out["autoencoder"] = json.loads(Path(autoencoder_metrics).read_text())
    if bench_dir is not None and Path(bench_dir).is_dir():
        from ..metrics.collect import read_benchmarks

        out["timing_s"] = read_benchmarks(sorted(Path(bench_dir).glob("*.tsv")), skip=("particles_metrics",))
    from ..metrics.collect import write_metrics

    return write_metrics(out_json, out)
