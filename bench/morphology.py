r"""Throughput of the morphology engines and of HSM moments on GalSim galaxies (64 x 64 stamps).

Run from the repository root: ``.venv/bin/python bench/morphology.py [--n 1024] [--statmorph 20]``.
Prints one JSON object: galaxies per second of each engine, wall times, peak memory.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time

import numpy as np

from morphoflow.metrics.moments import measure_moments
from morphoflow.metrics.morphology import measure_morphology
from morphoflow.metrics.testdata import render_galaxies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=1024, help="galaxies for the batched engine")
    parser.add_argument("--base", type=int, default=128, help="distinct rendered galaxies (tiled to n)")
    parser.add_argument("--size", type=int, default=64, help="stamp size (pixels)")
    parser.add_argument("--statmorph", type=int, default=10, help="galaxies for the statmorph engine (0: skip)")
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args()

    t0 = time.perf_counter()
    gs = render_galaxies(args.base, size=args.size, seed=1)
    t_render = time.perf_counter() - t0
    reps = int(np.ceil(args.n / args.base))
    images = np.tile(gs.images[:, 0], (reps, 1, 1))[: args.n]
    sigma = np.tile(gs.noise_sigma, reps)[: args.n]

    measure_morphology(images[:8], sigma[:8])  # warm-up
    t0 = time.perf_counter()
    measure_morphology(images, sigma, batch_size=args.batch_size)
    t_batched = time.perf_counter() - t0

    t0 = time.perf_counter()
    measure_moments(images[: args.base])
    t_hsm = time.perf_counter() - t0

    out = {
        "stamp_pixels": [args.size, args.size],
        "n_batched": args.n,
        "batched_galaxies_per_s": args.n / t_batched,
        "batched_wall_s": t_batched,
        "hsm_galaxies_per_s": args.base / t_hsm,
        "render_galaxies_per_s": args.base / t_render,
        "cpu_count": os.cpu_count(),
        "load_average_1min": os.getloadavg()[0],
    }
    if args.statmorph > 0:
        t0 = time.perf_counter()
        measure_morphology(images[: args.statmorph], sigma[: args.statmorph], engine="statmorph")
        t_sm = time.perf_counter() - t0
        out["statmorph_galaxies_per_s"] = args.statmorph / t_sm
        out["speedup_batched_vs_statmorph"] = out["batched_galaxies_per_s"] / out["statmorph_galaxies_per_s"]
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
