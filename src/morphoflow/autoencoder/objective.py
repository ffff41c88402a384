r"""Stage-1 training data and objective: stamps as tensors, and the (β-)ELBO under the forward model.

The loss per galaxy is :math:`[\chi^2/2 + \beta\,KL] / (CHW)` (nats per pixel): :math:`\chi^2` compares the
observed normalised stamp with the decoder output, convolved with the galaxy's PSF when ``psf_aware``,
under a pixel (white, std ``noise_sigma / norm_scale``) or Fourier (``noise_power / norm_scale²``)
Gaussian likelihood; KL is the VAE's posterior divergence (0 for the deterministic AE).
:class:`DetailLoss` is the objective of the detail level of a two-level model (:mod:`.detail`).
"""

from __future__ import annotations

__all__ = ["AutoencoderLoss", "DetailLoss", "StampTensors", "reconstruct", "stamp_tensors"]

import dataclasses
import math

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import TensorDataset

from ..contract import GalaxySet
from .forward import chi2_fourier, chi2_pixel, fft_convolve, psf_rfft
from .models import VAE


@dataclasses.dataclass
class StampTensors:
    r"""Normalised stamps and their noise model as tensors.

    Attributes:
        x: Observed stamps / norm_scale (N, C, H, W).
        sigma: Pixel noise std / norm_scale (N,).
        psf: PSFs (1 or N, C, H, W), unit sum.
        power: Noise power / norm_scale² (1 or N, C, H, W // 2 + 1), or None.
        norm_scale: The normalisation constant in counts.
    """

    x: Tensor
    sigma: Tensor
    psf: Tensor
    power: Tensor | None
    norm_scale: float

    def dataset(self) -> TensorDataset:
        r"""Items ``(x, sigma, index)``; ``index`` selects the PSF and noise power in :class:`AutoencoderLoss`."""

        return TensorDataset(self.x, self.sigma, torch.arange(len(self.x)))


def stamp_tensors(gs: GalaxySet, norm_scale: float | None = None, name: str = "<memory>") -> StampTensors:
    r"""Tensors of a galaxy set in normalised units (``norm_scale`` defaults to the file attribute)."""

    if norm_scale is None:
        if "norm_scale" not in gs.attrs:
            raise ValueError(f"{name}: attribute 'norm_scale' is missing (run the preprocess stage first)")
        norm_scale = float(gs.attrs["norm_scale"])
    if not (np.isfinite(norm_scale) and norm_scale > 0):
        raise ValueError(f"{name}: attribute 'norm_scale' must be a positive number, got {norm_scale}")
    if not np.all(gs.noise_sigma > 0):
        raise ValueError(f"{name}: dataset 'noise_sigma' must be > 0 for every galaxy")
    s = float(norm_scale)
    return StampTensors(
        x=torch.from_numpy(np.ascontiguousarray(gs.images, np.float32) / s),
        sigma=torch.from_numpy(np.asarray(gs.noise_sigma, np.float32) / s),
        psf=torch.from_numpy(np.ascontiguousarray(gs.psf, np.float32)),
        power=None if gs.noise_power is None else torch.from_numpy(np.asarray(gs.noise_power, np.float32) / s**2),
        norm_scale=s,
    )


class AutoencoderLoss:
    r"""``loss_fn(model, (x, sigma, index))`` for :func:`morphoflow.training.fit`.

    Arguments:
        psf: PSF bank (1 or N, C, H, W) of the dataset the batches index.
        power: Noise power bank (1 or N, C, H, W // 2 + 1) in normalised units², or None.
        psf_aware: Convolve the decoder output with the PSF before the likelihood.
        likelihood: ``pixel`` or ``fourier`` (falls back to :math:`\sigma^2` when ``power`` is None).
        beta: Weight of the KL term (VAE only).

    Returns (per call) a dict of batch means: ``loss`` (nats per pixel), ``chi2`` (reduced χ² per pixel)
    and, for the VAE, ``kl`` (nats per galaxy).
    """

    def __init__(self, psf: Tensor, power: Tensor | None, psf_aware: bool, likelihood: str, beta: float):
        if likelihood not in ("pixel", "fourier"):
            raise ValueError(f"config key 'autoencoder.likelihood': must be pixel|fourier|auto, got {likelihood!r}")
        self.psf, self.power = psf, power
        self.psf_aware, self.likelihood, self.beta = bool(psf_aware), likelihood, float(beta)
        self._cache: dict[str, tuple[Tensor, Tensor | None, Tensor | None]] = {}

    def _banks(self, device: torch.device) -> tuple[Tensor, Tensor | None, Tensor | None]:
        key = str(device)
        if key not in self._cache:
            psf = self.psf.to(device)
            hat = psf_rfft(psf) if len(psf) == 1 else None  # shared PSF: transform once
            power = None if self.power is None else self.power.to(device)
            self._cache[key] = (psf, hat, power)
        return self._cache[key]

    def forward_model(self, g: Tensor, index: Tensor) -> Tensor:
        r"""Observed-image model of decoder outputs ``g`` of the galaxies ``index``."""

        if not self.psf_aware:
            return g
        psf, hat, _ = self._banks(g.device)
        if hat is not None:
            return fft_convolve(g, psf_hat=hat)
        return fft_convolve(g, psf[index])

    def chi2(self, residual: Tensor, sigma: Tensor, index: Tensor) -> Tensor:
        r"""Per-galaxy χ² (B,) of residuals under the noise model."""

        _, _, power = self._banks(residual.device)
        if self.likelihood == "fourier":
            if power is None:
                h, w = residual.shape[-2:]
                power = sigma.float().square().view(-1, 1, 1, 1).expand(-1, residual.shape[1], h, w // 2 + 1)
            elif len(power) > 1:
                power = power[index]
            return chi2_fourier(residual, power)
        return chi2_pixel(residual, sigma)

    def __call__(self, model: nn.Module, batch: tuple[Tensor, ...]) -> dict[str, Tensor]:
        x, sigma, index = batch
        mu, logvar = model.encode(x)
        variational = logvar is not None
        z = VAE.sample_posterior(mu, logvar) if variational else mu
        m = self.forward_model(model.decode(z).float(), index)
        chi2 = self.chi2(x - m, sigma, index)
        npix = x[0].numel()
        out = {"chi2": chi2.mean() / npix}
        loss = 0.5 * chi2
        if variational:
            kl = VAE.kl(mu.float(), logvar.float())
            loss = loss + self.beta * kl
            out["kl"] = kl.mean()
        out["loss"] = loss.mean() / npix
        return out


@torch.no_grad()
def reconstruct(model: nn.Module, loss: AutoencoderLoss, x: Tensor, index: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    r"""Posterior-mean reconstruction: returns ``(z_mean, decoder output, observed-image model)``.

    With a detail level, the detail map is its posterior mean given the stamp and the smooth decoding.
    """

    mu, _ = model.encode(x)
    d = None
    if getattr(model, "detail", None) is not None:
        d, _ = model.detail.posterior(x, model.decoder.logits(mu))
    g = model.decode(mu, d).float()
    return mu, g, loss.forward_model(g, index)


class DetailLoss:
    r"""``loss_fn(model, (x, sigma, index, logits))`` of the detail level, the global level frozen.

    The items carry the smooth coarse-grid logits :math:`L` of each galaxy (the frozen global level's
    posterior-mean decoding). The loss per galaxy is :math:`[\chi^2/2 + \beta\, KL] / (CHW)` nats per pixel with
    :math:`KL = \log q(d) - \log p(d \mid L)` at one posterior draw (the mixture prior has no closed form).
    :math:`\beta` follows a schedule: ``beta_start`` for the first ``hold`` fraction of the steps (the decoder
    learns to use the map before the rate is charged in full: at full weight from the start the map collapses
    to the prior, measured in docs/substructure.md), then linearly up to ``beta`` over the next ``ramp`` fraction.
    Validation scores the final objective (:math:`\beta` = ``beta``).

    Arguments:
        base: The stage-1 loss of the same data (PSF bank, noise model, likelihood).
        beta, beta_start, hold, ramp: The KL weight schedule (fractions of the training steps).
    """

    def __init__(self, base: AutoencoderLoss, beta: float, beta_start: float, hold: float, ramp: float):
        self.base = base
        self.beta, self.beta_start, self.hold, self.ramp = float(beta), float(beta_start), float(hold), float(ramp)
        self.beta_now = self.beta

    def set_progress(self, fraction: float | None) -> None:
        r"""Set the KL weight for the fraction of training steps done (None: the final weight)."""

        if fraction is None:
            self.beta_now = self.beta
            return
        ramp = min(max((fraction - self.hold) / self.ramp, 0.0), 1.0) if self.ramp > 0 else float(fraction >= self.hold)
        self.beta_now = self.beta_start + (self.beta - self.beta_start) * ramp

    def __call__(self, model: nn.Module, batch: tuple[Tensor, ...]) -> dict[str, Tensor]:
        x, sigma, index, logits = batch
        mu, logvar = model.detail.posterior(x, logits)
        eps = torch.randn_like(mu)
        d = mu + eps * (0.5 * logvar).exp()
        log_q = -0.5 * (eps.square() + logvar + math.log(2 * math.pi)).flatten(1).sum(1)
        kl = log_q - model.detail.log_prior(d, logits)
        g = model.decoder.output(model.detail.refine(logits, d)).float()
        chi2 = self.base.chi2(x - self.base.forward_model(g, index), sigma, index)
        npix = x[0].numel()
        loss = (0.5 * chi2 + self.beta_now * kl).mean() / npix
        return {"loss": loss, "chi2": chi2.mean() / npix, "kl": kl.mean()}
