r"""Shape and size biases of generated galaxies (the figures of Lanusse et al. 2021, table 2).

For the HSM adaptive moments of each galaxy (:mod:`morphoflow.metrics.moments`): the distortion
modulus :math:`|e| = \sqrt{e_1^2 + e_2^2}` and the moment size σ (pixels). The bias of a generated set
is :math:`100\,(\langle x\rangle_\mathrm{gen} / \langle x\rangle_\mathrm{real} - 1)` in percent, the error
the standard deviation of that figure over a bootstrap of the galaxies (real and generated galaxies
resampled together: generated galaxy i sits at the conditions of real galaxy i). Galaxies whose HSM
measurement failed in either set are left out.
"""

from __future__ import annotations

__all__ = ["bias_pct", "shape_biases"]

import numpy as np


def bias_pct(real: np.ndarray, gen: np.ndarray, *, n_boot: int = 200, seed: int = 0) -> dict[str, float | int]:
    r"""``{"bias_pct", "error_pct", "real", "generated", "n"}`` of the paired values ``real``, ``gen`` (N,)."""
    real, gen = np.asarray(real, np.float64), np.asarray(gen, np.float64)
    ok = np.isfinite(real) & np.isfinite(gen)
    r, g = real[ok], gen[ok]
    if len(r) < 2 or r.mean() == 0:
        return {"bias_pct": float("nan"), "error_pct": float("nan"), "real": float("nan"),
                "generated": float("nan"), "n": len(r)}  # fmt: skip
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(r), (n_boot, len(r)))
    boots = 100 * (g[idx].mean(axis=1) / r[idx].mean(axis=1) - 1)
    return {
        "bias_pct": float(100 * (g.mean() / r.mean() - 1)),
        "error_pct": float(boots.std(ddof=1)),
        "real": float(r.mean()),
        "generated": float(g.mean()),
        "n": len(r),
    }


def shape_biases(
    real: dict[str, np.ndarray],
    gen: dict[str, np.ndarray],
    mask: np.ndarray | None = None,
    *,
    n_boot: int = 200,
    seed: int = 0,
) -> dict[str, dict[str, float | int]]:
    r"""``{"e_abs": bias_pct(...), "sigma": bias_pct(...)}`` of the galaxies in ``mask`` (None: all).

    Arguments:
        real, gen: Per-galaxy properties with ``e1``, ``e2`` (HSM distortion) and ``sigma`` (pixels).
    """
    sel = slice(None) if mask is None else np.asarray(mask, bool)

    def e_abs(p: dict[str, np.ndarray]) -> np.ndarray:
        return np.hypot(np.asarray(p["e1"], np.float64), np.asarray(p["e2"], np.float64))[sel]

    return {
        "e_abs": bias_pct(e_abs(real), e_abs(gen), n_boot=n_boot, seed=seed),
        "sigma": bias_pct(np.asarray(real["sigma"])[sel], np.asarray(gen["sigma"])[sel], n_boot=n_boot, seed=seed),
    }
