r"""Benchmark: training throughput (images/s) of the default stage-1 model on CPU, and peak memory.

Runs :func:`morphoflow.training.fit` for one epoch (the global level, then the detail level when enabled) on synthetic 64 x 64 stamps (Gaussian blobs + unit
white noise, a Gaussian PSF) with the default ``autoencoder`` config (its ``train`` block, 1 epoch, CPU,
10 warm-up steps), 2 torch threads, and the same
measurement for a plain 0.5 M-parameter conv VAE (4 stride-2 convs, dense bottleneck, 4 transposed convs)
as a reference, since the absolute figure depends on the machine's load. Prints one JSON object.

Usage: .venv/bin/python bench/train_autoencoder.py [--n 1024] [--size 64] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time

import numpy as np
import torch
from torch import nn

from morphoflow.autoencoder import build_autoencoder
from morphoflow.autoencoder.io import add_detail_level
from morphoflow.autoencoder.objective import AutoencoderLoss, DetailLoss
from morphoflow.autoencoder.train import smooth_logits
from morphoflow.config import load_config
from morphoflow.training import TrainSettings, fit


class PlainVAE(nn.Module):
    def __init__(self, size: int, latent_dim: int = 16):
        super().__init__()
        g = size // 16
        self.g = g
        self.enc = nn.Sequential(
            nn.Conv2d(1, 32, 4, 2, 1),
            nn.ReLU(),
            nn.Conv2d(32, 64, 4, 2, 1),
            nn.ReLU(),
            nn.Conv2d(64, 64, 4, 2, 1),
            nn.ReLU(),
            nn.Conv2d(64, 64, 4, 2, 1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(64 * g * g, 2 * latent_dim),
        )
        self.lin = nn.Linear(latent_dim, 64 * g * g)
        self.dec = nn.Sequential(
            nn.ReLU(),
            nn.ConvTranspose2d(64, 64, 4, 2, 1),
            nn.ReLU(),
            nn.ConvTranspose2d(64, 64, 4, 2, 1),
            nn.ReLU(),
            nn.ConvTranspose2d(64, 32, 4, 2, 1),
            nn.ReLU(),
            nn.ConvTranspose2d(32, 1, 4, 2, 1),
        )
        self.latent_dim = latent_dim

    def encode(self, x):
        mu, logvar = self.enc(x).chunk(2, 1)
        return mu, logvar

    def decode(self, z):
        return self.dec(self.lin(z).view(-1, 64, self.g, self.g))


def synthetic(n: int, size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] - size // 2
    s = rng.uniform(2, 6, (n, 1, 1))
    amp = rng.uniform(5, 50, (n, 1, 1))
    img = amp * np.exp(-(xx**2 + yy**2) / (2 * s**2)) + rng.normal(0, 1, (n, size, size))
    psf = np.exp(-(xx**2 + yy**2) / (2 * 1.5**2))
    return torch.tensor(img[:, None], dtype=torch.float32), torch.tensor(
        (psf / psf.sum())[None, None], dtype=torch.float32
    )


def throughput(model: nn.Module, psf_aware: bool, x: torch.Tensor, psf: torch.Tensor, train_cfg: dict) -> float:
    batch_size = int(train_cfg["batch_size"])
    data = torch.utils.data.TensorDataset(x, torch.ones(len(x)), torch.arange(len(x)))
    val = torch.utils.data.TensorDataset(x[:batch_size], torch.ones(batch_size), torch.arange(batch_size))
    loss = AutoencoderLoss(psf, None, psf_aware, "pixel", 0.1)
    settings = TrainSettings.from_config(dict(train_cfg, max_epochs=1, device="cpu", warmup_steps=10), seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        fit(model, loss, val, val, settings, tmp + "/warm", run_key={}, progress=False)  # warm-up (allocator, kernels)
        t0 = time.perf_counter()
        fit(model, loss, data, val, settings, tmp + "/run", run_key={}, progress=False)
        return len(x) / (time.perf_counter() - t0)


def detail_throughput(model: nn.Module, x: torch.Tensor, psf: torch.Tensor, cfg: dict) -> float:
    r"""Images/s of stage B (the detail level on the frozen global level), as in ``_train_detail``."""

    for p in model.parameters():
        p.requires_grad_(False)
    torch.manual_seed(0)
    add_detail_level(model, cfg["detail"])
    bs = int(cfg["detail"]["train"]["batch_size"])
    with torch.no_grad():
        logits = smooth_logits(model, x)
    data = torch.utils.data.TensorDataset(x, torch.ones(len(x)), torch.arange(len(x)), logits)
    val = torch.utils.data.TensorDataset(*(t[:bs] for t in data.tensors))
    loss = DetailLoss(AutoencoderLoss(psf, None, bool(cfg["psf_aware"]), "pixel", 0.1), 1.0, 0.1, 0.4, 0.3)
    settings = TrainSettings.from_config(dict(cfg["detail"]["train"], max_epochs=1, device="cpu", warmup_steps=10), 0)
    with tempfile.TemporaryDirectory() as tmp:
        fit(model, loss, val, val, settings, tmp + "/warm", run_key={}, progress=False)
        t0 = time.perf_counter()
        fit(model, loss, data, val, settings, tmp + "/run", run_key={}, progress=False)
        return len(x) / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1024)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    cfg = load_config("config/config.yaml")["autoencoder"]
    x, psf = synthetic(args.n, args.size)
    torch.manual_seed(0)
    model = build_autoencoder(cfg, (1, args.size, args.size), detail=False)  # stage A: the global level
    ours = throughput(model, bool(cfg["psf_aware"]), x, psf, cfg["train"])
    detail = detail_throughput(model, x, psf, cfg) if cfg["detail"]["enabled"] else None
    torch.manual_seed(0)
    plain = PlainVAE(args.size)
    ref = throughput(plain, False, x, psf, cfg["train"])
    print(
        json.dumps(
            {
                "stamp": [1, args.size, args.size],
                "threads": args.threads,
                "batch_size": cfg["train"]["batch_size"],
                "model": cfg["model"],
                "widths": cfg["widths"],
                "patch": cfg["patch"],
                "parameters": sum(p.numel() for p in model.parameters()),
                "train_images_per_s": round(ours, 1),
                "detail_parameters": sum(p.numel() for p in model.detail.parameters()) if detail else 0,
                "detail_train_images_per_s": round(detail, 1) if detail else None,
                "plain_vae_parameters": sum(p.numel() for p in plain.parameters()),
                "plain_vae_images_per_s": round(ref, 1),
                "speedup_vs_plain": round(ours / ref, 2),
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
