r"""Benchmark of star-particle mode: stars sampled per second on CPU, per flow configuration.

Run from the repository root: ``.venv/bin/python bench/particles.py [--stars N] [--threads T] [--model PATH]``.
Prints one JSON object: for each flow configuration (the schema's ``particles.flow`` default and a few
alternatives), the sampling throughput with a realistic context (4 global parameters + a
16-dimensional latent): stars per wall-clock second and per CPU-second (independent of other load
on the machine), the wall and CPU time, and the peak resident memory. With ``--model`` (a trained
``results/particles/flow_latent.pt``), that model is timed too. Flows are untrained: the sampling cost
does not depend on the weights.
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import numpy as np
import torch

from morphoflow.config import load_config
from morphoflow.flow import ConditionalFlow, Standardizer, flow_hyper, load_flow


def _flow(kind: str, hyper: dict, k: int) -> ConditionalFlow:
    torch.manual_seed(0)
    context = [f"c{i}" for i in range(k)]
    t_std, c_std = Standardizer([0.0] * 10, [1.0] * 10), Standardizer([0.0] * k, [1.0] * k)
    return ConditionalFlow(kind, 10, context, hyper, t_std, c_std, {})


def _time(cflow: ConditionalFlow, n: int, batch: int) -> dict:
    rng = np.random.default_rng(0)
    k = len(cflow.context_columns)
    ctx = np.repeat(rng.normal(size=(1, k)).astype(np.float32), n, 0)
    eps = rng.standard_normal((n, cflow.features)).astype(np.float32)
    cflow.sample_from_noise(ctx[:batch], eps[:batch], batch)  # warm-up
    t0, c0 = time.perf_counter(), time.process_time()
    out = cflow.sample_from_noise(ctx, eps, batch)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    assert np.isfinite(out).all()
    # stars per CPU-second does not depend on how loaded the machine is; x threads = dedicated-core estimate.
    return {"stars_per_s": n / wall, "stars_per_cpu_s": n / cpu, "wall_s": wall, "cpu_s": cpu, "stars": n,
            "batch_size": batch}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--stars", type=int, default=1_000_000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=65536)
    ap.add_argument("--model", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    default = load_config()["particles"]["flow"]  # the schema's particles.flow
    configs = {
        f"particles.flow default ({default['kind']})": (default["kind"], flow_hyper(default)),
        "nsf_t3_h32_b8_coupling": ("nsf", {"transforms": 3, "hidden_features": [32, 32], "bins": 8, "passes": 2}),
        "nsf_t3_h64_b8_coupling": ("nsf", {"transforms": 3, "hidden_features": [64, 64], "bins": 8, "passes": 2}),
        "maf_t6_h32_coupling": ("maf", {"transforms": 6, "hidden_features": [32, 32], "passes": 2}),
        "nice_t3_h32": ("nice", {"transforms": 3, "hidden_features": [32, 32]}),
        "nsf_t3_h64_b8_autoregressive": (
            "nsf",
            {"transforms": 3, "hidden_features": [64, 64], "bins": 8, "passes": None},
        ),
    }
    result: dict = {"threads": args.threads, "context_dim": 20, "features": 10, "flows": {}}
    for name, (kind, hyper) in configs.items():
        autoregressive = "passes" in hyper and hyper["passes"] is None
        n = max(args.stars // 10, 10000) if autoregressive else args.stars
        result["flows"][name] = _time(_flow(kind, hyper, 20), n, args.batch)
    if args.model:
        cflow = load_flow(args.model)
        timing = _time(cflow, args.stars, args.batch)
        result["trained_model"] = {"path": args.model, "kind": cflow.kind, "hyper": cflow.hyper, **timing}
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
