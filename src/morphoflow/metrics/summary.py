r"""``results/summary.md``: the metrics as readable Markdown tables, models side by side.

Each ratio (distance / real-vs-real floor) is marked ✓ when it is at most
``metrics.targets.ratio`` and ✗ otherwise; the C2ST AUC is marked against
``floor + metrics.targets.c2st_auc_excess``; conditional correlations against
``metrics.targets.corr_fraction`` times the real galaxies' correlation.
"""

from __future__ import annotations

__all__ = ["format_summary", "write_summary"]

import os
from pathlib import Path
from typing import Any

from ..atomic import atomic_path

DEFAULT_TARGETS = {"ratio": 1.5, "c2st_auc_excess": 0.1, "corr_fraction": 0.9}


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


def format_summary(metrics: dict[str, Any], targets: dict[str, float] | None = None) -> str:
    r"""Markdown text of ``metrics`` (the metrics.json dictionary) marked against ``targets``."""
    t = {**DEFAULT_TARGETS, **(targets or {})}
    gen = metrics.get("generation", {})
    models = list(gen)
    lines = ["# morphoflow results", ""]
    data = metrics.get("data", {})
    lines.append(
        "Data: " + ", ".join(f"{k} = {data[k]}" for k in ("n_train", "n_val", "n_test") if k in data) + "."
    )
    lines.append("")
    if "autoencoder" in metrics:
        lines += ["## Autoencoder (test split)", "", "| metric | value |", "| --- | --- |"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in metrics["autoencoder"].items()]
        lines.append("")
    if "flow" in metrics:
        lines += ["## Flow (test split)", "", "| metric | value |", "| --- | --- |"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in metrics["flow"].items()]
        lines.append("")
    if models:
        head = "| statistic | " + " | ".join(models) + " |"
        sep = "| --- |" + " --- |" * len(models)
        lines += [
            "## Generated vs real galaxies",
            "",
            f"Cells: distance / real-vs-real floor = **ratio**; ✓ when ratio ≤ {t['ratio']}.",
            "",
            head,
            sep,
        ]
        props = list(next(iter(gen.values())).get("morphology", {}))
        for p in props:
            lines.append(f"| W1 {p} | " + " | ".join(_ratio_cell(gen[m]["morphology"].get(p), t["ratio"]) for m in models) + " |")
        lines.append(
            "| mean morphology ratio | "
            + " | ".join(
                (f"**{gen[m]['morphology_mean_ratio']:.2f}** {_mark(gen[m]['morphology_mean_ratio'] <= t['ratio'])}"
                 if "morphology_mean_ratio" in gen[m] else "—")
                for m in models
            )
            + " |"
        )
        for key, label in (("frechet_morphology", "Fréchet morphology"), ("power_spectrum", "power spectrum (dex)")):
            lines.append(f"| {label} | " + " | ".join(_ratio_cell(gen[m].get(key), t["ratio"], "distance") for m in models) + " |")
        cells = []
        for m in models:
            auc, floor = gen[m].get("c2st_auc"), gen[m].get("c2st_auc_floor")
            if auc is None or floor is None:
                cells.append("—")
            else:
                cells.append(f"{auc:.3f} (floor {floor:.3f}) {_mark(auc <= floor + t['c2st_auc_excess'])}")
        lines.append("| C2ST AUC | " + " | ".join(cells) + " |")
        conds = sorted({c for m in models for c in gen[m].get("conditional", {})})
        for c in conds:
            cells = []
            for m in models:
                e = gen[m].get("conditional", {}).get(c)
                if not e or "corr_generated" not in e or "corr_real" not in e:
                    cells.append("—")
                    continue
                ok = e["corr_generated"] >= t["corr_fraction"] * e["corr_real"]
                cells.append(f"{e['corr_generated']:.3f} (real {e['corr_real']:.3f}) {_mark(ok)}")
            lines.append(f"| Spearman requested vs measured {c} | " + " | ".join(cells) + " |")
        if any("psf_free" in gen[m] for m in models):
            lines += ["", "### PSF-free (noiseless) images", "", head, sep]
            for p in props:
                lines.append(
                    f"| W1 {p} | " + " | ".join(_ratio_cell(gen[m].get("psf_free", {}).get(p), t["ratio"]) for m in models) + " |"
                )
        lines.append("")
    if metrics.get("timing_s"):
        lines += ["## Wall time per rule", "", "| rule | seconds |", "| --- | --- |"]
        lines += [f"| {k} | {v:.1f} |" for k, v in sorted(metrics["timing_s"].items())]
        lines.append("")
    return "\n".join(lines)


def write_summary(path: str | os.PathLike, metrics: dict[str, Any], targets: dict[str, float] | None = None) -> None:
    r"""Write :func:`format_summary` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        Path(tmp).write_text(format_summary(metrics, targets))
