r"""Stage-1 models: the β-VAE and the deterministic autoencoder on galaxy stamps, one ResNet encoder/decoder.

Both share :class:`~.layers.ConvEncoder` and :class:`~.layers.ConvDecoder`; they differ only in the
code: the VAE's encoder outputs a Gaussian posterior (mean and log-variance), the AE's a point.

References:
    | Lanusse et al. (2021). Deep generative models for galaxy image simulations (MNRAS 504, 5543).
    | Higgins et al. (2017). β-VAE: Learning Basic Visual Concepts with a Constrained Variational Framework.

Example:
    >>> import torch
    >>> vae = VAE((1, 32, 32), latent_dim=8, widths=[16, 16], patch=4)
    >>> mu, logvar = vae.encode(torch.zeros(2, 1, 32, 32))
    >>> vae.decode(mu).shape
    torch.Size([2, 1, 32, 32])
"""

from __future__ import annotations

__all__ = ["AE", "VAE", "StampAutoencoder"]

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .detail import DetailLevel
from .layers import ConvDecoder, ConvEncoder


class StampAutoencoder(nn.Module):
    r"""ResNet encoder and mirror decoder on stamps; subclasses define the code (:meth:`encode`).

    Optionally a second, spatial latent (:meth:`add_detail`, :class:`~.detail.DetailLevel`) adds small-scale
    structure to what the global code decodes to.

    Arguments:
        image_shape: (C, H, W) in pixels.
        latent_dim: Size of the code :math:`z`.
        widths: Channels per level (each level halves the stamp).
        blocks: Residual blocks per level.
        psf_aware: If true, :meth:`decode` returns a non-negative PSF-free galaxy (softplus).
        asinh_scale: Encoder input compression ``asinh(x / asinh_scale)`` (normalised units).
        patch: Space-to-depth factor of the encoder stem and depth-to-space factor of the decoder output.
    """

    kind = ""
    #: Encoder outputs per latent dimension (2 for a Gaussian posterior).
    outputs_per_dim = 1

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
        out = self.outputs_per_dim * self.latent_dim
        self.encoder = ConvEncoder(image_shape, widths, blocks, out, asinh_scale, patch)
        self.decoder = ConvDecoder(image_shape, widths, blocks, self.latent_dim, positive=psf_aware, patch=patch)
        self.image_shape = tuple(int(v) for v in image_shape)
        self.detail: DetailLevel | None = None

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor | None]:  # pragma: no cover - abstract
        raise NotImplementedError

    def add_detail(self, channels: int, width: int, blocks: int, components: int) -> DetailLevel:
        r"""Attach a :class:`~.detail.DetailLevel` (a spatial latent of ``channels`` per decoder cell)."""

        c, _, _ = self.image_shape
        self.detail = DetailLevel(c * self.decoder.patch**2, self.decoder.patch, channels, width, blocks, components)
        return self.detail

    @property
    def detail_grid(self) -> tuple[int, int]:
        r"""(h, w) of the detail map: the stamp in cells of patch × patch pixels."""

        _, h, w = self.image_shape
        return h // self.decoder.patch, w // self.decoder.patch

    def decode(self, z: Tensor, detail: Tensor | None = None) -> Tensor:
        r"""Normalised stamps (B, C, H, W) of codes (B, D) (PSF-free if psf_aware), with a detail map if given."""

        logits = self.decoder.logits(z)
        if detail is not None:
            logits = self.detail.refine(logits, detail)
        return self.decoder.output(logits)

    def generate(self, z: Tensor, u: Tensor | None = None, eps: Tensor | None = None) -> Tensor:
        r"""Galaxies of global codes ``z``: the detail map is drawn from its prior with the given randomness
        (``u`` uniforms (B, 1, h, w), ``eps`` normals (B, channels, h, w)); without a detail level, :meth:`decode`."""

        if self.detail is None:
            return self.decode(z)
        logits = self.decoder.logits(z)
        d = self.detail.sample_prior(logits, u, eps)
        return self.decoder.output(self.detail.refine(logits, d))


class VAE(StampAutoencoder):
    r"""Variational autoencoder: Gaussian posterior :math:`q(z|x) = N(\mu, \mathrm{diag}\, e^{\log\sigma^2})`.

    Arguments: as :class:`StampAutoencoder`.
    """

    kind = "vae"
    outputs_per_dim = 2

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        r"""Posterior mean and log-variance (B, D) of normalised stamps (B, C, H, W)."""

        mu, logvar = self.encoder(x).chunk(2, dim=1)
        return mu, logvar.clamp(-12.0, 6.0)

    @staticmethod
    def sample_posterior(mu: Tensor, logvar: Tensor) -> Tensor:
        r"""Reparametrised draw :math:`z = \mu + e^{\log\sigma^2 / 2} \epsilon` (uses the torch RNG)."""

        return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)

    @staticmethod
    def kl(mu: Tensor, logvar: Tensor) -> Tensor:
        r"""Per-item :math:`KL(q(z|x) \| N(0, I))` (B,) in nats."""

        return 0.5 * (mu.square() + logvar.exp() - 1.0 - logvar).sum(1)


class AE(StampAutoencoder):
    r"""Autoencoder with a deterministic code (GalacticForge-style); :meth:`encode` returns ``(z, None)``.

    Arguments: as :class:`StampAutoencoder`.
    """

    kind = "ae"

    def encode(self, x: Tensor) -> tuple[Tensor, None]:
        r"""Codes (B, D) of normalised stamps (B, C, H, W), and None (no posterior variance)."""

        return self.encoder(x), None
