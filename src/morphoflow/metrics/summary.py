r"""``results/summary.md``: the metrics as readable Markdown tables, models side by side.

Each ratio (distance / real-vs-real floor) is marked ✓ when it is at most
``metrics.targets.ratio`` and ✗ otherwise; the C2ST AUC is marked against
``floor + metrics.targets.c2st_auc_excess`` (the powered C2ST against its real-vs-real control, at
least 0.5, plus the same excess); the HSM biases against ``metrics.targets.shape_bias_pct``;
conditional correlations against ``metrics.targets.corr_fraction`` times the real galaxies' correlation.
Columns ``<model> bright`` hold the bright bin (brightest third of the test split by catalog mag).
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
    if entry.get("too_small"):
        return f"bin too small for a floor ({entry.get('n_a', '?')} / {entry.get('n_b', '?')} galaxies per half)"
    r = entry["ratio"]
    return f"{_fmt(entry[key])} / {_fmt(entry['floor'])} = **{r:.2f}** {_mark(r <= target)}"


def _powered_cell(block: dict[str, Any], excess: float) -> str:
    e = block.get("c2st_powered")
    if not e:
        return "—"
    if "auc" not in e:
        return f"too few galaxies ({e['n_test']} scored)"
    ci = f" [{e['interval'][0]:.3f}, {e['interval'][1]:.3f}]" if "interval" in e else ""
    ctl = e.get("control", {}).get("auc")
    if ctl is None:
        return f"{e['auc']:.3f}{ci}"
    # the control reads 0.5 up to noise: a control below 0.5 does not make the target stricter
    return f"{e['auc']:.3f}{ci} (control {ctl:.3f}) {_mark(e['auc'] <= max(ctl, 0.5) + excess)}"


def _bias_cell(block: dict[str, Any], key: str, target_pct: float) -> str:
    e = block.get("shape_bias", {}).get(key)
    if not e or "bias_pct" not in e:
        return "—"
    return f"{e['bias_pct']:+.1f} ± {e.get('error_pct', float('nan')):.1f} % {_mark(abs(e['bias_pct']) <= target_pct)}"


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


def _columns(gen: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    r"""``(header, block)`` per model and bin: ``<model>`` (all test galaxies) and ``<model> bright``."""
    cols = []
    for m, block in gen.items():
        if "unavailable" in block:
            continue
        cols.append((m, block))
        if "bright" in block:
            cols.append((f"{m} bright", block["bright"]))
    return cols


def _beats_lines(gen: dict[str, Any]) -> list[str]:
    r"""One line per morphology statistic: does the flow generator beat the parametric one (smaller W1)?"""
    flow, par = gen.get("flow", {}), gen.get("parametric", {})
    if "unavailable" in par:
        return [f"Parametric baseline: unavailable ({par['unavailable']}).", ""]
    if "morphology" not in flow or "morphology" not in par:
        return []
    lines = ["### Flow vs parametric baseline (W1, smaller is closer to real)", ""]
    for p in flow["morphology"]:
        verdicts = []
        for label, f, q in (("all", flow, par), ("bright", flow.get("bright", {}), par.get("bright", {}))):
            fe, pe = f.get("morphology", {}).get(p, {}), q.get("morphology", {}).get(p, {})
            if "w1" in fe and "w1" in pe:
                word = "beats" if fe["w1"] < pe["w1"] else "does not beat"
                verdicts.append(f"{label}: flow {word} parametric ({_fmt(fe['w1'])} vs {_fmt(pe['w1'])})")
        if verdicts:
            lines.append(f"- {p}: " + "; ".join(verdicts))
    return [*lines, ""]


def _generation_tables(gen: dict[str, Any], t: Mapping[str, float]) -> list[str]:
    r"""The generated-vs-real table (one column per model and bin) and, if measured, the PSF-free table."""
    cols = _columns(gen)
    head = "| statistic | " + " | ".join(h for h, _ in cols) + " |"
    sep = "| --- |" + " --- |" * len(cols)
    lines = [
        "## Generated vs real galaxies",
        "",
        f"Cells: distance / real-vs-real floor = **ratio**; ✓ when ratio ≤ {t['ratio']}. "
        "Columns `bright`: the brightest third of the test split by catalog mag, floors inside the bin.",
        "",
    ]
    lines += [f"- {m}: unavailable ({b['unavailable']})" for m, b in gen.items() if "unavailable" in b]
    lines += ["", head, sep] if len(lines) > 4 else [head, sep]
    props = list(next(iter(b for _, b in cols)).get("morphology", {})) if cols else []
    for p in props:
        lines.append(_row(f"W1 {p}", [_ratio_cell(b.get("morphology", {}).get(p), t["ratio"]) for _, b in cols]))
    lines.append(_row("mean morphology ratio", [_mean_ratio_cell(b, t["ratio"]) for _, b in cols]))
    for key, label in (("frechet_morphology", "Fréchet morphology"), ("power_spectrum", "power spectrum (dex)")):
        lines.append(_row(label, [_ratio_cell(b.get(key), t["ratio"], "distance") for _, b in cols]))
    lines.append(_row("C2ST AUC (test halves)", [_c2st_cell(b, t["c2st_auc_excess"]) for _, b in cols]))
    lines.append(_row("powered C2ST AUC [95 %]", [_powered_cell(b, t["c2st_auc_excess"]) for _, b in cols]))
    lines.append(_row("HSM \\|e\\| bias", [_bias_cell(b, "e_abs", t["shape_bias_pct"]) for _, b in cols]))
    lines.append(_row("HSM σ bias", [_bias_cell(b, "sigma", t["shape_bias_pct"]) for _, b in cols]))
    for c in sorted({c for _, b in cols for c in b.get("conditional", {})}):
        cells = [_conditional_cell(b, c, t["corr_fraction"]) for _, b in cols]
        lines.append(_row(f"Spearman requested vs measured {c}", cells))
    lines.append("")
    lines += _beats_lines(gen)
    models = [(m, b) for m, b in gen.items() if "unavailable" not in b]
    if any("psf_free" in b for _, b in models):
        mhead = "| statistic | " + " | ".join(m for m, _ in models) + " |"
        lines += ["### PSF-free (noiseless) images", "", mhead, "| --- |" + " --- |" * len(models)]
        for p in props:
            lines.append(_row(f"W1 {p}", [_ratio_cell(b.get("psf_free", {}).get(p), t["ratio"]) for _, b in models]))
    return [*lines, ""]


def format_summary(metrics: dict[str, Any], targets: Mapping[str, float]) -> str:
    r"""Markdown text of ``metrics`` (the metrics.json dictionary) marked against ``targets``.

    Arguments:
        targets: The ``metrics.targets`` config section (``ratio``, ``c2st_auc_excess``, ``corr_fraction``,
            ``shape_bias_pct``).
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
