r"""The observation model of stage 1: PSF convolution, Gaussian likelihoods and noise draws.

All functions work on batches of normalised stamps ``(B, C, H, W)`` (counts / ``norm_scale``); the noise
model is the per-galaxy pixel standard deviation ``sigma`` (B,) or the noise power spectrum ``power``
``(B or 1, C, H, W // 2 + 1)`` defined as :math:`P = E|\mathrm{rfft2}(n)|^2 / (HW)` (white noise of std
:math:`\sigma` has :math:`P = \sigma^2`), both in the same normalised units.

References:
    | Lanusse et al. (2021). Deep generative models for galaxy image simulations (MNRAS 504, 5543):
    | PSF-aware decoder + Fourier-space Gaussian likelihood for correlated (COSMOS) noise.
"""

from __future__ import annotations

__all__ = [
    "chi2_fourier",
    "chi2_pixel",
    "fft_convolve",
    "informative_modes",
    "psf_rfft",
    "rfft_weights",
    "sample_noise",
]

import torch
from torch import Tensor

POWER_FLOOR = 1e-6
r"""Fourier modes whose noise power is below ``POWER_FLOOR`` times the stamp's largest are left out of
:func:`chi2_fourier` (:func:`informative_modes`). Band-limited noise (data re-convolved to a broader PSF,
``preprocess.target_psf``) has power down to ~1e-15 of its peak at high frequency: those modes carry no
information about the sky through that PSF, and dividing the residual by ~0 would dominate the loss."""


def _padded(h: int, w: int) -> tuple[int, int]:
    # zero-pad to at least 2H x 2W minus one so that the circular convolution equals the linear one
    return 2 * h, 2 * w


def psf_rfft(psf: Tensor) -> Tensor:
    r"""The real FFT of PSFs ``(B or 1, C, H, W)`` (unit sum, centred at (H//2, W//2)) on the padded grid.

    Pass it as ``psf_hat`` to :func:`fft_convolve` to reuse a shared PSF across batches.
    """

    h, w = psf.shape[-2:]
    return torch.fft.rfft2(psf.float(), s=_padded(h, w))


def fft_convolve(images: Tensor, psf: Tensor | None = None, *, psf_hat: Tensor | None = None) -> Tensor:
    r"""Convolve stamps with PSFs by zero-padded FFT (linear, not circular, convolution).

    Arguments:
        images: Stamps (B, C, H, W).
        psf: PSFs (B or 1, C, H, W), centre at pixel (H // 2, W // 2); same pixel scale as ``images``.
        psf_hat: Alternatively, :func:`psf_rfft` of the PSFs (computed once for a shared PSF).

    Returns:
        The convolved stamps (B, C, H, W), same grid and centre as ``images``; flux is conserved
        for a unit-sum PSF (up to the light that falls off the stamp).
    """

    h, w = images.shape[-2:]
    if psf_hat is None:
        if psf is None:
            raise ValueError("fft_convolve: pass psf or psf_hat")
        if psf.shape[-2:] != (h, w):
            raise ValueError(f"fft_convolve: psf shape {tuple(psf.shape)} does not match images {tuple(images.shape)}")
        psf_hat = psf_rfft(psf)
    ph, pw = _padded(h, w)
    img_hat = torch.fft.rfft2(images.float(), s=(ph, pw))
    full = torch.fft.irfft2(img_hat * psf_hat, s=(ph, pw))
    cy, cx = h // 2, w // 2
    return full[..., cy : cy + h, cx : cx + w].to(images.dtype)


def rfft_weights(h: int, w: int, device: torch.device | str | None = None) -> Tensor:
    r"""Multiplicity (W // 2 + 1,) of each rfft column in the full spectrum (1 for DC and Nyquist, else 2)."""

    weights = torch.full((w // 2 + 1,), 2.0, device=device)
    weights[0] = 1.0
    if w % 2 == 0:
        weights[-1] = 1.0
    return weights


def chi2_pixel(residual: Tensor, sigma: Tensor) -> Tensor:
    r"""Per-stamp :math:`\chi^2 = \sum_{pixels} (r / \sigma)^2` (B,) for white noise of std ``sigma`` (B,)."""

    r = residual.float() / sigma.float().view(-1, 1, 1, 1)
    return r.square().flatten(1).sum(1)


def informative_modes(power: Tensor, floor: float = POWER_FLOOR) -> Tensor:
    r"""Boolean mask of the modes of ``power`` (..., H, W // 2 + 1) above ``floor`` times its maximum per stamp
    and channel (every mode of white or coloured noise without deep nulls)."""

    peak = power.flatten(-2).amax(-1)[..., None, None]
    return power > floor * peak


def chi2_fourier(residual: Tensor, power: Tensor) -> Tensor:
    r"""Per-stamp :math:`\chi^2` (B,) of a residual under stationary Gaussian noise of spectrum ``power``.

    :math:`\chi^2 = \sum_k |\hat r_k|^2 / (H W P_k)` over the informative modes (:func:`informative_modes`:
    power above :data:`POWER_FLOOR` of its maximum), rfft bins weighted by their multiplicity. For white noise
    (:math:`P = \sigma^2`) every mode counts and it equals :func:`chi2_pixel` (Parseval).

    Arguments:
        residual: Observed minus model (B, C, H, W).
        power: Noise power spectrum (B or 1, C, H, W // 2 + 1), normalised units squared.
    """

    h, w = residual.shape[-2:]
    r_hat = torch.fft.rfft2(residual.float())
    weights = rfft_weights(h, w, residual.device)
    power = power.float()
    keep = informative_modes(power)
    terms = r_hat.abs().square() * weights / (h * w * torch.where(keep, power, torch.ones_like(power)))
    return torch.where(keep, terms, torch.zeros_like(terms)).flatten(1).sum(1)


def sample_noise(
    shape: tuple[int, ...] | torch.Size,
    sigma: Tensor,
    power: Tensor | None,
    generator: torch.Generator,
) -> Tensor:
    r"""Draw Gaussian noise stamps (B, C, H, W) with the given noise model.

    Arguments:
        shape: (B, C, H, W).
        sigma: Per-stamp pixel standard deviation (B,) (used when ``power`` is None).
        power: Noise power spectrum (B or 1, C, H, W // 2 + 1) or None for white noise. Coloured noise is
            white unit noise filtered by :math:`\sqrt{P}` in Fourier space, so that
            :math:`E|\mathrm{rfft2}(n)|^2 / (HW) = P`.
        generator: The torch generator of the draws (on the device of the result).

    Returns:
        Noise (B, C, H, W) float32 on the generator's device.
    """

    shape = tuple(shape)
    if len(shape) != 4:
        raise ValueError(f"sample_noise: shape must be (B, C, H, W), got {shape}")
    device = generator.device
    white = torch.randn(shape, generator=generator, device=device)
    if power is None:
        return white * sigma.to(device, torch.float32).view(-1, 1, 1, 1)
    h, w = shape[-2:]
    if power.shape[-3:] != (shape[1], h, w // 2 + 1):
        raise ValueError(f"sample_noise: power shape {tuple(power.shape)} does not match noise shape {shape}")
    filt = power.to(device, torch.float32).clamp_min(0).sqrt()
    return torch.fft.irfft2(torch.fft.rfft2(white) * filt, s=(h, w))
