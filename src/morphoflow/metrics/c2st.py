r"""Classifier two-sample test (Lopez-Paz & Oquab 2017) on galaxy stamps.

A small CNN learns to tell stamps of set ``a`` from those of set ``b`` on one half of each, and
its ROC-AUC on the other half is reported: 0.5 = indistinguishable, 1.0 = fully separable. Stamps
are fed as ``asinh(I / σ)`` (σ: the noise std of each stamp, counts), which keeps faint outskirts
and bright cores on one scale. Seeded (``seed``) and single-process, so CPU reruns are identical.
"""

from __future__ import annotations

__all__ = ["c2st_auc", "roc_auc"]

import numpy as np
import torch
from scipy.stats import rankdata
from torch import nn


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    r"""ROC-AUC of ``scores`` for binary ``labels`` (Mann-Whitney U with mid-ranks for ties)."""
    scores = np.asarray(scores, np.float64)
    labels = np.asarray(labels).astype(bool)
    npos, nneg = labels.sum(), (~labels).sum()
    if npos == 0 or nneg == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[labels].sum() - npos * (npos + 1) / 2) / (npos * nneg))


def _net(channels: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(channels, 8, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 16, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(4),
        nn.Flatten(),
        nn.Linear(256, 1),
    )


def c2st_auc(
    a: np.ndarray,
    b: np.ndarray,
    sigma_a: np.ndarray | float = 1.0,
    sigma_b: np.ndarray | float = 1.0,
    *,
    seed: int = 0,
    epochs: int = 20,
    batch_size: int = 64,
    lr: float = 2e-3,
) -> float:
    r"""Held-out ROC-AUC of a CNN separating stamps ``a`` (N, C, H, W) from ``b`` (M, C, H, W), counts.

    Each set is cut in two halves (every other stamp after a seeded shuffle); the classifier is
    trained on the first halves, with the sets balanced to the smaller size, and scored on the
    second halves.
    """
    a = np.asarray(a, np.float32)
    b = np.asarray(b, np.float32)
    if a.ndim == 3:
        a, b = a[:, None], b[:, None]
    sa = np.broadcast_to(np.asarray(sigma_a, np.float32), (len(a),)).reshape(-1, 1, 1, 1)
    sb = np.broadcast_to(np.asarray(sigma_b, np.float32), (len(b),)).reshape(-1, 1, 1, 1)
    xa = np.arcsinh(a / np.where(sa > 0, sa, 1.0))
    xb = np.arcsinh(b / np.where(sb > 0, sb, 1.0))
    rng = np.random.default_rng(seed)
    m = min(len(xa), len(xb))
    if m < 4:
        return float("nan")
    xa = xa[rng.permutation(len(xa))[:m]]
    xb = xb[rng.permutation(len(xb))[:m]]
    half = m // 2
    x_train = np.concatenate([xa[:half], xb[:half]])
    y_train = np.concatenate([np.zeros(half), np.ones(half)]).astype(np.float32)
    x_test = np.concatenate([xa[half:], xb[half:]])
    y_test = np.concatenate([np.zeros(m - half), np.ones(m - half)])

    torch.manual_seed(seed)
    net = _net(x_train.shape[1])
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    loss_fn = nn.BCEWithLogitsLoss()
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train)
    gen = torch.Generator().manual_seed(seed)
    net.train()
    for _ in range(epochs):
        perm = torch.randperm(len(xt), generator=gen)
        for start in range(0, len(xt), batch_size):
            sel = perm[start : start + batch_size]
            opt.zero_grad()
            loss = loss_fn(net(xt[sel]).squeeze(1), yt[sel])
            loss.backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        scores = torch.cat(
            [net(torch.from_numpy(x_test[s : s + 256])).squeeze(1) for s in range(0, len(x_test), 256)]
        ).numpy()
    return roc_auc(scores, y_test)
