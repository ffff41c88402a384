r"""``results/summary.md``: the metrics as readable Markdown tables, models side by side.

Each ratio (distance / real-vs-real floor) is marked ✓ when it is at most
``metrics.targets.ratio`` and ✗ otherwise; the C2ST AUC is marked against
``floor + metrics.targets.c2st_auc_excess``; conditional correlations against
``metrics.targets.corr_fraction`` times the real galaxies' correlation.
"""

from __future__ import annotations

__all__ = ["format_summary", "write_summary"]

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..atomic import atomic_path


def _fmt(x: Any) -> str:
    if isinstance(x, bool) or x is None:
        return "—"
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        return f"{x:.4g}"
    return str(x)


def _mark(ok: bool) -> str:
    return "✓" if ok else "✗"


def _ratio_cell(entry: dict[str, Any] | None, target: float, key: str = "w1") -> str:
    if not entry:
        return "—"
    if entry.get("failed"):
        return f"failed ({entry.get('n_failed_generated', '?')} generated, {entry.get('n_failed_real', '?')} real)"
    r = entry["ratio"]
    return f"{_fmt(entry[key])} / {_fmt(entry['floor'])} = **{r:.2f}** {_mark(r <= target)}"


def _row(label: str, cells: list[str]) -> str:
    return f"| {label} | " + " | ".join(cells) + " |"


def _stage_table(title: str, block: dict[str, Any]) -> list[str]:
    r"""A ``| metric | value |`` table of one stage summary (autoencoder, flow)."""
    rows = [f"| {k} | {_fmt(v)} |" for k, v in block.items()]
    return [f"## {title}", "", "| metric | value |", "| --- | --- |", *rows, ""]


def _mean_ratio_cell(block: dict[str, Any], target: float) -> str:
    if "morphology_mean_ratio" not in block:
        return "—"
    r = block["morphology_mean_ratio"]
    return f"**{r:.2f}** {_mark(r <= target)}"


def _c2st_cell(block: dict[str, Any], excess: float) -> str:
    auc, floor = block.get("c2st_auc"), block.get("c2st_auc_floor")
    if auc is None or floor is None:
        return "—"
    return f"{auc:.3f} (floor {floor:.3f}) {_mark(auc <= floor + excess)}"


def _conditional_cell(block: dict[str, Any], cond: str, fraction: float) -> str:
    e = block.get("conditional", {}).get(cond)
    if not e or "corr_generated" not in e or "corr_real" not in e:
        return "—"
    ok = e["corr_generated"] >= fraction * e["corr_real"]
    return f"{e['corr_generated']:.3f} (real {e['corr_real']:.3f}) {_mark(ok)}"


def _generation_tables(gen: dict[str, Any], t: Mapping[str, float]) -> list[str]:
    r"""The generated-vs-real table (one column per model) and, if measured, the PSF-free table."""
    models = list(gen)
    head = "| statistic | " + " | ".join(models) + " |"
    sep = "| --- |" + " --- |" * len(models)
    lines = [
        "## Generated vs real galaxies",
        "",
        f"Cells: distance / real-vs-real floor = **ratio**; ✓ when ratio ≤ {t['ratio']}.",
        "",
        head,
        sep,
    ]
    props = list(next(iter(gen.values())).get("morphology", {}))
    for p in props:
        lines.append(_row(f"W1 {p}", [_ratio_cell(gen[m]["morphology"].get(p), t["ratio"]) for m in models]))
    lines.append(_row("mean morphology ratio", [_mean_ratio_cell(gen[m], t["ratio"]) for m in models]))
    for key, label in (("frechet_morphology", "Fréchet morphology"), ("power_spectrum", "power spectrum (dex)")):
        lines.append(_row(label, [_ratio_cell(gen[m].get(key), t["ratio"], "distance") for m in models]))
    lines.append(_row("C2ST AUC", [_c2st_cell(gen[m], t["c2st_auc_excess"]) for m in models]))
    for c in sorted({c for m in models for c in gen[m].get("conditional", {})}):
        cells = [_conditional_cell(gen[m], c, t["corr_fraction"]) for m in models]
        lines.append(_row(f"Spearman requested vs measured {c}", cells))
    if any("psf_free" in gen[m] for m in models):
        lines += ["", "### PSF-free (noiseless) images", "", head, sep]
        for p in props:
            lines.append(_row(f"W1 {p}", [_ratio_cell(gen[m].get("psf_free", {}).get(p), t["ratio"]) for m in models]))
    return [*lines, ""]


def format_summary(metrics: dict[str, Any], targets: Mapping[str, float]) -> str:
    r"""Markdown text of ``metrics`` (the metrics.json dictionary) marked against ``targets``.

    Arguments:
        targets: The ``metrics.targets`` config section (``ratio``, ``c2st_auc_excess``, ``corr_fraction``).
    """
    data = metrics.get("data", {})
    counts = ", ".join(f"{k} = {data[k]}" for k in ("n_train", "n_val", "n_test") if k in data)
    lines = ["# morphoflow results", "", f"Data: {counts}.", ""]
    if "autoencoder" in metrics:
        lines += _stage_table("Autoencoder (test split)", metrics["autoencoder"])
    if "flow" in metrics:
        lines += _stage_table("Flow (test split)", metrics["flow"])
    if metrics.get("generation"):
        lines += _generation_tables(metrics["generation"], targets)
    if metrics.get("timing_s"):
        lines += ["## Wall time per rule", "", "| rule | seconds |", "| --- | --- |"]
        lines += [f"| {k} | {v:.1f} |" for k, v in sorted(metrics["timing_s"].items())]
        lines.append("")
    return "\n".join(lines)


def write_summary(path: str | os.PathLike, metrics: dict[str, Any], targets: Mapping[str, float]) -> None:
    r"""Write :func:`format_summary` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        Path(tmp).write_text(format_summary(metrics, targets))
