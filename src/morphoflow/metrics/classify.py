r"""A powered classifier two-sample test: trained on the train split, scored on the test split.

The halves C2ST of :mod:`morphoflow.metrics.c2st` trains on ~100 stamps per class. Generated galaxies
cost nothing, so here a compact CNN (three convolution blocks with batch normalisation) learns to tell
the **train split** from the generated counterparts of the train galaxies (same conditions, PSF and
noise), and its ROC-AUC is measured on the **test split** vs the test galaxies' counterparts. The
interval is a percentile bootstrap over the scored test galaxies (each class resampled).

The control is the same procedure on real data only: the classifier learns train half 1 vs train
half 2 (:func:`~morphoflow.metrics.distances.split_halves` of the train ids) and is scored on test
half A vs test half B; it reads 0.5 up to noise.

Inputs are the central ``crop`` × ``crop`` pixels as ``asinh(I / σ)`` (σ: each stamp's noise std,
counts). Seeded and single-process: CPU reruns are identical.
"""

from __future__ import annotations

__all__ = ["auc_interval", "classifier_scores", "powered_c2st", "prepare", "train_classifier"]

from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from .c2st import roc_auc


def prepare(images: np.ndarray, sigma: np.ndarray | float, crop: int = 32) -> np.ndarray:
    r"""Classifier inputs (N, 1, c, c) float32: ``asinh(I / σ)`` of the central ``crop`` pixels of (N, H, W) counts."""
    x = np.asarray(images, np.float32)
    h, w = x.shape[-2:]
    c = min(int(crop), h, w)
    y0, x0 = (h - c) // 2, (w - c) // 2
    x = x[..., y0 : y0 + c, x0 : x0 + c]
    s = np.broadcast_to(np.asarray(sigma, np.float32), (len(x),)).reshape(-1, 1, 1)
    return np.arcsinh(x / np.where(s > 0, s, 1.0))[:, None].astype(np.float32)


def _net() -> nn.Module:
    def block(cin: int, cout: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

    return nn.Sequential(
        *block(1, 16), nn.MaxPool2d(2), *block(16, 32), nn.MaxPool2d(2), *block(32, 32),
        nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(512, 1),
    )  # fmt: skip


def train_classifier(
    xa: np.ndarray, xb: np.ndarray, *, seed: int, epochs: int = 10, batch_size: int = 64, lr: float = 2e-3
) -> nn.Module:
    r"""A CNN trained to score ``xb`` (label 1) above ``xa`` (label 0); inputs from :func:`prepare`.

    The larger class is subsampled (seeded) to the size of the smaller.
    """
    rng = np.random.default_rng(seed)
    m = min(len(xa), len(xb))
    xa, xb = xa[rng.permutation(len(xa))[:m]], xb[rng.permutation(len(xb))[:m]]
    xt = torch.from_numpy(np.concatenate([xa, xb]))
    yt = torch.cat([torch.zeros(m), torch.ones(m)])
    torch.manual_seed(seed)
    net = _net()
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    loss_fn = nn.BCEWithLogitsLoss()
    gen = torch.Generator().manual_seed(seed)
    net.train()
    for _ in range(epochs):
        perm = torch.randperm(len(xt), generator=gen)
        for start in range(0, len(xt) - 1, batch_size):
            sel = perm[start : start + batch_size]
            if len(sel) < 2:  # batch norm needs two stamps
                continue
            opt.zero_grad()
            loss_fn(net(xt[sel]).squeeze(1), yt[sel]).backward()
            opt.step()
    return net.eval()


@torch.no_grad()
def classifier_scores(net: nn.Module, x: np.ndarray, batch_size: int = 512) -> np.ndarray:
    r"""Logits (N,) of a trained classifier."""
    out = [net(torch.from_numpy(x[s : s + batch_size])).squeeze(1) for s in range(0, len(x), batch_size)]
    return torch.cat(out).numpy().astype(np.float64) if out else np.zeros(0)


def auc_interval(
    s0: np.ndarray, s1: np.ndarray, *, n_boot: int = 200, seed: int = 0, level: float = 0.95
) -> dict[str, float | list[float] | int]:
    r"""ROC-AUC of scores ``s1`` (label 1) over ``s0`` and its percentile bootstrap interval.

    Returns ``{"auc", "interval": [lo, hi], "n_test": len(s0) + len(s1)}``; ``{"too_small": True, "n_test"}``
    when a class has fewer than 2 scores (no AUC and no interval then).
    """
    s0, s1 = np.asarray(s0, np.float64), np.asarray(s1, np.float64)
    if len(s0) < 2 or len(s1) < 2:
        return {"too_small": True, "n_test": len(s0) + len(s1)}
    labels = np.r_[np.zeros(len(s0)), np.ones(len(s1))]
    auc = roc_auc(np.r_[s0, s1], labels)
    rng = np.random.default_rng(seed)
    boots = [
        roc_auc(np.r_[s0[rng.integers(0, len(s0), len(s0))], s1[rng.integers(0, len(s1), len(s1))]], labels)
        for _ in range(n_boot)
    ]
    a = (1 - level) / 2
    return {"auc": auc, "interval": [float(np.quantile(boots, a)), float(np.quantile(boots, 1 - a))],
            "n_test": len(s0) + len(s1)}  # fmt: skip


def powered_c2st(
    train_a: np.ndarray,
    train_b: np.ndarray,
    test_a: np.ndarray,
    test_b: np.ndarray,
    *,
    subsets: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
    seed: int = 0,
    epochs: int = 10,
    batch_size: int = 64,
    lr: float = 2e-3,
    n_boot: int = 200,
) -> dict[str, dict]:
    r"""Train on ``train_a`` (0) vs ``train_b`` (1), score ``test_a`` vs ``test_b``; inputs from :func:`prepare`.

    Arguments:
        subsets: Extra scorings by name: boolean masks ``(of test_a, of test_b)`` (e.g. the bright bin).

    Returns:
        ``{"all": auc_interval(...), <subset>: ...}``, each with ``n_train`` (stamps per class).
    """
    net = train_classifier(train_a, train_b, seed=seed, epochs=epochs, batch_size=batch_size, lr=lr)
    s0, s1 = classifier_scores(net, test_a), classifier_scores(net, test_b)
    n_train = min(len(train_a), len(train_b))
    out = {"all": {**auc_interval(s0, s1, n_boot=n_boot, seed=seed), "n_train": n_train}}
    for name, (ma, mb) in (subsets or {}).items():
        out[name] = {**auc_interval(s0[ma], s1[mb], n_boot=n_boot, seed=seed), "n_train": n_train}
    return out
