"""Render throughput of the simulate stage at 64 x 64 pixels, per core (one process).

Prints one JSON object: galaxies/s (wall clock, and per CPU second, which is robust to a shared
machine) of morphoflow's Renderer (observed + truth + noise), of the
observed FFT draw alone, and of a naive loop (new OpticalPSF per galaxy, continuous Sersic n, no
truncation) for reference, plus the peak resident memory.

    .venv/bin/python bench/render.py [--n 200] [--naive 8]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path

import galsim
import numpy as np

from morphoflow.config import load_config
from morphoflow.data.simulate import Renderer, draw_catalog_row
from morphoflow.seeding import item_rng

ROOT = Path(__file__).resolve().parents[1]


def naive(cfg: dict, n: int) -> float:
    p, scale, size = cfg["psf"], cfg["pixel_scale_arcsec"], cfg["stamp_size"]
    t0 = time.perf_counter()
    for i in range(n):
        rng = item_rng(0, i, "bench")
        hlr = rng.uniform(0.1, 0.5)
        psf = galsim.OpticalPSF(
            lam=p["lam_nm"],
            diam=p["diam_m"],
            obscuration=p["obscuration"],
            nstruts=p["nstruts"],
            defocus=p["defocus"],
            coma1=p["coma1"],
        )
        gal = galsim.Add(
            [
                galsim.Sersic(rng.uniform(1, 4), half_light_radius=hlr, flux=0.3),
                galsim.Exponential(half_light_radius=hlr, flux=0.7),
            ]
        ).shear(q=0.6, beta=0.3 * galsim.radians)
        galsim.Convolve(gal, psf).drawImage(nx=size, ny=size, scale=scale)
    return n / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=200, help="galaxies rendered by morphoflow's Renderer")
    parser.add_argument("--naive", type=int, default=8, help="galaxies rendered by the naive loop")
    args = parser.parse_args()

    cfg = load_config(ROOT / "config/config.yaml")["simulate"]
    cfg["stamp_size"] = 64
    t0 = time.perf_counter()
    renderer = Renderer(cfg)
    setup_s = time.perf_counter() - t0
    renderer.render_many(np.arange(10), 0)  # warm the per-index Sersic caches

    t0, c0 = time.perf_counter(), time.process_time()
    renderer.render_many(np.arange(args.n), 1)
    full = args.n / (time.perf_counter() - t0)
    full_cpu = args.n / (time.process_time() - c0)

    rows = []
    for i in range(args.n):
        rng = item_rng(1, i, "simulate")
        row = draw_catalog_row(cfg["catalog"], rng)
        row.update(flux=1.0, knot_fraction=0.2)
        rows.append(row)
    t0, c0 = time.perf_counter(), time.process_time()
    for i, row in enumerate(rows):
        galsim.Convolve([renderer.galaxy(row, i + 1), renderer.psf]).drawImage(
            nx=64, ny=64, scale=renderer.scale, use_true_center=False
        )
    observed_only = args.n / (time.perf_counter() - t0)
    observed_only_cpu = args.n / (time.process_time() - c0)
    c0 = time.process_time()
    naive_wall = naive(cfg, args.naive)
    naive_cpu = args.naive / (time.process_time() - c0)

    print(
        json.dumps(
            {
                "stamp_pixels": 64,
                "galaxies": args.n,
                "renderer_setup_s": round(setup_s, 3),
                "render_gal_per_s_per_core": round(full, 1),
                "render_gal_per_cpu_s": round(full_cpu, 1),
                "observed_draw_only_gal_per_s_per_core": round(observed_only, 1),
                "observed_draw_only_gal_per_cpu_s": round(observed_only_cpu, 1),
                "naive_gal_per_s_per_core": round(naive_wall, 1),
                "naive_gal_per_cpu_s": round(naive_cpu, 1),
                "load_average_1min": round(os.getloadavg()[0], 2),
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
