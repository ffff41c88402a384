r"""Azimuthally averaged power spectra of stamps and the distance between two sets of them.

Estimator: for each stamp :math:`I` (counts, H x W), :math:`P(\mathbf{k}) = |\mathrm{rfft2}(I)|^2 / (HW)`
in counts² (the contract's ``noise_power`` normalisation: white noise of std σ gives σ² at every k),
averaged over the full (two-sided) k-plane in annuli of :math:`|\mathbf{k}|` (cycles per pixel).
Bins are linear, of width 1/min(H, W), from the first non-zero frequency to 0.5 (Nyquist); the
k = 0 (total flux) term is left out. Distance between two sets: the mean over bins of
:math:`|\langle\log_{10} P_a(k)\rangle - \langle\log_{10} P_b(k)\rangle|` (dex), the mean log
spectra of the two sets (a geometric mean, so a few bright galaxies do not dominate).
"""

from __future__ import annotations

__all__ = ["mean_log_spectrum", "power_spectrum_1d", "power_spectrum_distance"]

import numpy as np


def power_spectrum_1d(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r"""Per-stamp 1-D power spectra of (N, H, W) stamps.

    Returns:
        ``k`` (K,) bin centres in cycles per pixel and ``power`` (N, K) in counts².
    """
    images = np.asarray(images, np.float64)
    if images.ndim != 3:
        raise ValueError(f"power spectrum needs (N, H, W) stamps, got shape {images.shape}")
    n, h, w = images.shape
    p2 = np.abs(np.fft.rfft2(images)) ** 2 / (h * w)
    ky = np.fft.fftfreq(h)[:, None]
    kx = np.fft.rfftfreq(w)[None, :]
    kk = np.hypot(ky, kx)
    # each rfft column except k_x = 0 and (even W) Nyquist stands for two modes of the full plane
    mult = np.full(kx.shape, 2.0)
    mult[:, 0] = 1.0
    if w % 2 == 0:
        mult[:, -1] = 1.0
    mult = np.broadcast_to(mult, kk.shape)
    dk = 1.0 / min(h, w)
    edges = np.arange(0.5 * dk, 0.5 + 1e-9, dk)
    idx = np.digitize(kk, edges) - 1  # bin 0 = [dk/2, 3dk/2)
    nb = len(edges) - 1
    sel = (idx >= 0) & (idx < nb)
    weight = np.bincount(idx[sel], mult[sel], minlength=nb)
    power = np.stack([np.bincount(idx[sel], (p2[i] * mult)[sel], minlength=nb) for i in range(n)]) / np.maximum(
        weight, 1e-300
    )
    k = 0.5 * (edges[:-1] + edges[1:])
    return k, power


def power_spectrum_distance(a: np.ndarray, b: np.ndarray) -> float:
    r"""Mean over k of |Δ <log10 P>| (dex) between stamp sets ``a`` and ``b`` (N, H, W), counts."""
    la, lb = mean_log_spectrum(a), mean_log_spectrum(b)
    ok = np.isfinite(la) & np.isfinite(lb)
    if not ok.any():
        return float("nan")
    return float(np.mean(np.abs(la[ok] - lb[ok])))


def mean_log_spectrum(images: np.ndarray) -> np.ndarray:
    r"""Mean over stamps of log10 P(k) (K,), log10 counts²; bins where a stamp has P = 0 are NaN."""
    _, p = power_spectrum_1d(images)
    with np.errstate(divide="ignore"):
        lp = np.log10(p)
    lp = np.where(np.isfinite(lp), lp, np.nan)
    return lp.mean(axis=0)
