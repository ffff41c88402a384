"""Shared by the end-to-end tests: a copy of the workflow to run Snakemake in, away from the repo's results/."""

from __future__ import annotations

import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# What a run needs from the repository; the package itself is imported from the venv (editable install).
WORKFLOW_FILES = ["Snakefile", "rules", "workflow", "config", "report", "profiles", "resources", "envs", "docs"]


def copy_workflow(dest: Path) -> Path:
    r"""Copy the workflow (not results, logs or .snakemake) into ``dest``; return ``dest``."""

    dest.mkdir(parents=True, exist_ok=True)
    for name in WORKFLOW_FILES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__", "cosmos", "hdf"))
        elif src.exists():
            shutil.copy2(src, dest / name)
    return dest
