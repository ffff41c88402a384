"""Benchmark: galaxy generation throughput (flow sample + decode) and flow sampling speed per kind.

Run from the repository root:  .venv/bin/python bench/generate.py [--threads 2] [--n 2048] [--batch 256]

Uses results/autoencoder/model.pt and results/flow/model.pt when both exist (trained models), else the
default architectures of config/config.yaml with random weights (timing only). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from morphoflow.autoencoder import build_autoencoder  # noqa: E402
from morphoflow.config import load_config  # noqa: E402
from morphoflow.flow import KINDS, ConditionalFlow, Standardizer, flow_hyper  # noqa: E402
from morphoflow.generator import Generator  # noqa: E402

RANGES = {"mag": (18.0, 25.0), "hlr_arcsec": (0.05, 1.0), "redshift": (0.05, 2.5)}


def random_flow(kind: str, cfg: dict, latent_dim: int, columns: list[str]) -> ConditionalFlow:
    torch.manual_seed(0)
    hyper = flow_hyper(dict(cfg, kind=kind))
    ranges = {c: RANGES.get(c, (-1e9, 1e9)) for c in columns}
    ctx_std = Standardizer([float(np.mean(ranges[c])) for c in columns], [1.0] * len(columns))
    return ConditionalFlow(
        kind, latent_dim, columns, hyper, Standardizer([0.0] * latent_dim, [1.0] * latent_dim), ctx_std, ranges
    )


def conditions(n: int, columns: list[str], rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {c: rng.uniform(*RANGES.get(c, (0.0, 1.0)), n) for c in columns}


CPU_SECONDS: dict[str, float] = {}


def timed(fn, repeat: int = 1, key: str | None = None) -> float:
    r"""Wall seconds per call (after a warm-up); the process CPU seconds go to ``CPU_SECONDS[key]``.

    On a shared, overloaded machine the wall time measures the contention; the CPU time of the
    process is then the better estimate of the work (galaxies per CPU-second ~ one free core).
    """

    fn()  # warm-up
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(repeat):
        fn()
    if key:
        CPU_SECONDS[key] = (time.process_time() - c0) / repeat
    return (time.perf_counter() - t0) / repeat


def load_generator(config: dict, batch: int, n: int, rng: np.random.Generator) -> tuple[Generator, dict, str]:
    r"""The trained models of results/ if both exist, else the default architectures with random weights;
    with ``n`` conditions inside their ranges and a description of the source."""

    ae_path, flow_path = ROOT / "results/autoencoder/model.pt", ROOT / "results/flow/model.pt"
    if ae_path.exists() and flow_path.exists():
        gen = Generator.load(ROOT / "results", batch_size=batch)
        cond = {c: rng.uniform(*gen.context_range[c], n) for c in gen.context_columns}
        return gen, cond, "trained models in results/"
    fcfg = config["flow"]
    columns = list(fcfg["context"])
    size = int(config["simulate"]["stamp_size"])
    torch.manual_seed(0)
    ae = build_autoencoder(config["autoencoder"], (1, size, size))
    meta = {
        "latent_dim": int(ae.latent_dim),
        "image_shape": [1, size, size],
        "norm_scale": 1.0,
        "pixel_scale_arcsec": float(config["simulate"]["pixel_scale_arcsec"]),
    }
    gen = Generator(random_flow(fcfg["kind"], fcfg, meta["latent_dim"], columns), ae, meta, batch_size=batch)
    return gen, conditions(n, columns, rng), "default architectures, random weights"


def generation_speed(gen: Generator, cond: dict, n: int, batch: int) -> dict:
    r"""Galaxies per second (wall and CPU) of the whole generation, the flow sampling and the decoding."""

    t_total = timed(lambda: gen.sample(cond, n=1, seed=1), key="generate")
    ctx = gen.flow.context_matrix(cond)
    seeds = np.arange(n)
    t_flow = timed(lambda: gen.flow.sample(ctx, seeds), key="flow")
    z = gen.flow.sample(ctx, seeds)
    from morphoflow.sampling import decode_latents

    t_dec = timed(lambda: decode_latents(gen.decoder, z, 1.0, seeds=seeds, batch_size=batch), key="decode")
    return dict(
        generate_galaxies_per_s=n / t_total,
        generate_wall_s=t_total,
        flow_sample_latents_per_s=n / t_flow,
        decode_galaxies_per_s=n / t_dec,
        generate_galaxies_per_cpu_s=n / CPU_SECONDS["generate"],
        flow_latents_per_cpu_s=n / CPU_SECONDS["flow"],
        decode_galaxies_per_cpu_s=n / CPU_SECONDS["decode"],
        load_average_1min=os.getloadavg()[0],
        cpu_count=os.cpu_count(),
    )


def speed_by_kind(fcfg: dict, latent_dim: int, n_k: int, rng: np.random.Generator) -> dict:
    r"""Flow sampling speed of every kind (random weights), and of the fully autoregressive nsf."""

    columns = list(fcfg["context"])
    per_kind = {}
    cond_k = conditions(n_k, columns, rng)
    for kind in KINDS:
        flow = random_flow(kind, fcfg, latent_dim, columns)
        ck = flow.context_matrix(cond_k)
        n_used = n_k if kind in ("nsf", "maf", "nice", "cnf") else max(n_k // 8, 32)
        t = timed(lambda flow=flow, ck=ck, n_used=n_used: flow.sample(ck[:n_used], np.arange(n_used)), key=kind)
        per_kind[kind] = {
            "latents_per_s": n_used / t,
            "latents_per_cpu_s": n_used / CPU_SECONDS[kind],
            "n": n_used,
            "parameters": sum(p.numel() for p in flow.parameters()),
        }
    ar = random_flow("nsf", dict(fcfg, passes=None), latent_dim, columns)
    ck = ar.context_matrix(cond_k)
    t = timed(lambda: ar.sample(ck, np.arange(n_k)), key="ar")
    per_kind["nsf_autoregressive"] = {
        "latents_per_s": n_k / t,
        "latents_per_cpu_s": n_k / CPU_SECONDS["ar"],
        "n": n_k,
        "parameters": sum(p.numel() for p in ar.parameters()),
    }
    return per_kind


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--n", type=int, default=2048, help="galaxies per generation run")
    parser.add_argument("--batch", type=int, default=256, help="decoder batch size")
    parser.add_argument("--kinds-n", type=int, default=1024, help="latents per flow-kind timing")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)

    config = load_config(ROOT / "config" / "config.yaml")
    gen, cond, source = load_generator(config, args.batch, args.n, rng)
    out: dict = {
        "models": source,
        "threads": args.threads,
        "image_shape": list(gen.image_shape),
        "latent_dim": gen.flow.features,
        "flow_kind": gen.flow.kind,
        "decoder_batch": args.batch,
        "n_galaxies": args.n,
    }
    out.update(generation_speed(gen, cond, args.n, args.batch))
    out["flow_sampling_by_kind"] = speed_by_kind(config["flow"], gen.flow.features, args.kinds_n, rng)

    bench = ROOT / "benchmarks" / "train_flow.tsv"
    if bench.exists():
        import pandas as pd

        out["train_flow_wall_s"] = float(pd.read_csv(bench, sep="\t")["s"].iloc[-1])
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
