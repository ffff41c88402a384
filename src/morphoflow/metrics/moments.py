r"""Adaptive second moments (HSM; Hirata & Seljak 2003, Mandelbaum et al. 2005) of galaxy stamps.

``galsim.hsm.FindAdaptiveMom`` with ``strict=False``: a failure gives NaN and is counted.
``sigma`` is the adaptive-moment size :math:`\det(M)^{1/4}` in **pixels**; ``e1``, ``e2`` are the
distortions :math:`(a^2 - b^2)/(a^2 + b^2)` of the observed shape (a round source has e1 = e2 = 0,
and for a round Gaussian of std σ, sigma = σ).
"""

from __future__ import annotations

__all__ = ["MOMENT_PROPERTIES", "measure_moments"]

import galsim
import numpy as np
from tqdm import tqdm

#: Properties measured here.
MOMENT_PROPERTIES: tuple[str, ...] = ("sigma", "e1", "e2")


def measure_moments(images: np.ndarray, *, progress: bool = False) -> dict[str, np.ndarray]:
    r"""HSM adaptive moments of (N, H, W) stamps in counts.

    Returns:
        ``sigma`` (pixels), ``e1``, ``e2`` (N,) float64 with NaN where HSM failed, and
        ``failed`` (N,) bool.
    """
    images = np.asarray(images, np.float64)
    if images.ndim != 3:
        raise ValueError(f"moments need (N, H, W) stamps, got shape {images.shape}")
    n = len(images)
    out = {k: np.full(n, np.nan) for k in MOMENT_PROPERTIES}
    failed = np.ones(n, bool)
    for i in tqdm(range(n), disable=not progress, desc="HSM moments", leave=False):
        if not np.isfinite(images[i]).all() or not (images[i] > 0).any():
            continue
        res = galsim.hsm.FindAdaptiveMom(galsim.Image(images[i], scale=1.0), strict=False)
        if res.moments_status != 0 or not np.isfinite(res.moments_sigma) or res.moments_sigma <= 0:
            continue
        out["sigma"][i] = res.moments_sigma
        out["e1"][i] = res.observed_shape.e1
        out["e2"][i] = res.observed_shape.e2
        failed[i] = False
    out["failed"] = failed
    return out
