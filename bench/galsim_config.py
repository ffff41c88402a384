"""Benchmark: galaxies per second through the GalSim config layer (``MorphoflowGalaxy``), one forward pass
per image (batched) vs one model call per galaxy, on the same field.

Run from the repository root:  .venv/bin/python bench/galsim_config.py [--threads 1] [--n 200] [--repeat 2]

Uses results/autoencoder/model.pt and results/flow/model.pt when both exist (trained models), else the
default architectures of config/config.yaml with random weights (timing only), saved to a temporary
folder. The field: ``--size`` pixels square at 0.2 arcsec, ``--n`` galaxies at random positions and
conditions inside the training ranges, Moffat PSF, CCD noise. Prints one JSON object: wall and CPU
galaxies/s of each mode, the model calls per image, and the same field with GalSim Exponential galaxies
(GalSim's own drawing cost) for reference.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import galsim
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from generate import load_generator  # noqa: E402

import morphoflow.galsim_config  # noqa: E402 - registers MorphoflowGalaxy
from morphoflow.autoencoder import save_autoencoder  # noqa: E402
from morphoflow.config import load_config  # noqa: E402
from morphoflow.flow import save_flow  # noqa: E402


def model_folder(tmp: Path) -> tuple[Path, str]:
    r"""results/ if it holds trained models, else random-weight default models saved under ``tmp``."""

    if (ROOT / "results/autoencoder/model.pt").exists() and (ROOT / "results/flow/model.pt").exists():
        return ROOT / "results", "trained models in results/"
    config = load_config(ROOT / "config" / "config.yaml")
    gen, _, source = load_generator(config, 256, 1, np.random.default_rng(0))
    meta = dict(gen.meta, config=config["autoencoder"], zeropoint_ab=25.94)
    save_autoencoder(tmp / "autoencoder" / "model.pt", gen.decoder, meta)
    save_flow(tmp / "flow" / "model.pt", gen.flow)
    return tmp, source


def field(model: Path, ranges: dict, n: int, size: int, batch: bool) -> dict:
    gal = {"type": "MorphoflowGalaxy", "shear": {"type": "G1G2", "g1": 0.02, "g2": 0.0}}
    gal.update({c: {"type": "Random", "min": lo, "max": hi} for c, (lo, hi) in ranges.items()})
    return {
        "input": {"morphoflow": {"model": str(model), "batch": batch}},
        "gal": gal,
        "psf": {"type": "Moffat", "beta": 3.0, "fwhm": 0.7},
        "image": {
            "type": "Scattered",
            "size": size,
            "nobjects": n,
            "pixel_scale": 0.2,
            "random_seed": 1,
            "noise": {"type": "CCD", "sky_level_pixel": 100.0, "gain": 1.0, "read_noise": 5.0},
        },
    }


def timed_build(config: dict, repeat: int) -> tuple[float, float, int]:
    r"""Wall and CPU seconds per image (after a warm-up image), and model calls per image."""

    calls = 0
    galsim.config.BuildImage(galsim.config.CopyConfig(config))  # warm-up: loads the model
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(repeat):
        cfg = galsim.config.CopyConfig(config)
        galsim.config.BuildImage(cfg)
        calls = getattr(cfg.get("_input_objs", {}).get("morphoflow", [None])[0], "model_calls", 0)
    return (time.perf_counter() - t0) / repeat, (time.process_time() - c0) / repeat, calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--n", type=int, default=200, help="galaxies per image")
    parser.add_argument("--size", type=int, default=1024, help="image side [pixels]")
    parser.add_argument("--repeat", type=int, default=2, help="timed images per mode")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        model, source = model_folder(Path(tmp))
        gen = morphoflow.galsim_config._load_generator(str(model), None, None, "cpu", None, 256)
        lo_hi = {c: (lo + 0.05 * (hi - lo), hi - 0.05 * (hi - lo)) for c, (lo, hi) in gen.context_range.items()}
        out: dict = {
            "models": source,
            "image_shape": list(gen.image_shape),
            "threads": args.threads,
            "galaxies_per_image": args.n,
            "image_size": args.size,
        }
        for name, batch in (("batched", True), ("per_object", False)):
            wall, cpu, calls = timed_build(field(model, lo_hi, args.n, args.size, batch), args.repeat)
            out[name] = {"galaxies_per_s": args.n / wall, "galaxies_per_cpu_s": args.n / cpu, "model_calls": calls}
        exp = field(model, lo_hi, args.n, args.size, True)
        exp["gal"] = {"type": "Exponential", "half_light_radius": {"type": "Random", "min": 0.2, "max": 1.0}}
        del exp["input"]
        wall, cpu, _ = timed_build(exp, args.repeat)
        out["galsim_exponential"] = {"galaxies_per_s": args.n / wall, "galaxies_per_cpu_s": args.n / cpu}
        out["speedup_batched_vs_per_object"] = out["batched"]["galaxies_per_s"] / out["per_object"]["galaxies_per_s"]
        out["load_average_1min"] = os.getloadavg()[0]
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
