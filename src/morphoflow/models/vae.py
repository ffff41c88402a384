r"""β-VAE on galaxy stamps with a ResNet encoder/decoder (Lanusse et al. 2021; Higgins et al. 2017 for β)."""

from __future__ import annotations

__all__ = ["VAE"]

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .layers import ConvDecoder, ConvEncoder


class VAE(nn.Module):
    r"""Variational autoencoder: Gaussian posterior :math:`q(z|x) = N(\mu, \mathrm{diag}\, e^{\log\sigma^2})`.

    Arguments:
        image_shape: (C, H, W) in pixels.
        latent_dim: Size of :math:`z`.
        widths: Channels per level (each level halves the stamp).
        blocks: Residual blocks per level.
        psf_aware: If true, :meth:`decode` returns a non-negative PSF-free galaxy (softplus).
        asinh_scale: Encoder input compression ``asinh(x / asinh_scale)`` (normalised units).
        patch: Space-to-depth factor of the encoder stem and depth-to-space factor of the decoder output.
    """

    kind = "vae"

    def __init__(
        self,
        image_shape: Sequence[int],
        latent_dim: int = 16,
        widths: Sequence[int] = (16, 32, 64, 64),
        blocks: int | Sequence[int] = 1,
        psf_aware: bool = True,
        asinh_scale: float = 1.0,
        patch: int = 1,
    ):
        super().__init__()
        self.latent_dim = int(latent_dim)
        self.encoder = ConvEncoder(image_shape, widths, blocks, 2 * self.latent_dim, asinh_scale, patch)
        self.decoder = ConvDecoder(image_shape, widths, blocks, self.latent_dim, positive=psf_aware, patch=patch)

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        r"""Posterior mean and log-variance (B, D) of normalised stamps (B, C, H, W)."""

        mu, logvar = self.encoder(x).chunk(2, dim=1)
        return mu, logvar.clamp(-12.0, 6.0)

    def decode(self, z: Tensor) -> Tensor:
        r"""Normalised stamps (B, C, H, W) of latents (B, D) (PSF-free if psf_aware)."""

        return self.decoder(z)

    @staticmethod
    def sample_posterior(mu: Tensor, logvar: Tensor) -> Tensor:
        r"""Reparametrised draw :math:`z = \mu + e^{\log\sigma^2 / 2} \epsilon` (uses the torch RNG)."""

        return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)

    @staticmethod
    def kl(mu: Tensor, logvar: Tensor) -> Tensor:
        r"""Per-item :math:`KL(q(z|x) \| N(0, I))` (B,) in nats."""

        return 0.5 * (mu.square() + logvar.exp() - 1.0 - logvar).sum(1)
