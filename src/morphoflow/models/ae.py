r"""Deterministic convolutional autoencoder (GalacticForge-style), same encoder/decoder as :class:`~.vae.VAE`."""

from __future__ import annotations

__all__ = ["AE"]

from collections.abc import Sequence

from torch import Tensor, nn

from .layers import ConvDecoder, ConvEncoder


class AE(nn.Module):
    r"""Autoencoder with a deterministic code; :meth:`encode` returns ``(z, None)``.

    Arguments: as :class:`~.vae.VAE`.
    """

    kind = "ae"

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
        self.encoder = ConvEncoder(image_shape, widths, blocks, self.latent_dim, asinh_scale, patch)
        self.decoder = ConvDecoder(image_shape, widths, blocks, self.latent_dim, positive=psf_aware, patch=patch)

    def encode(self, x: Tensor) -> tuple[Tensor, None]:
        r"""Codes (B, D) of normalised stamps (B, C, H, W), and None (no posterior variance)."""

        return self.encoder(x), None

    def decode(self, z: Tensor) -> Tensor:
        r"""Normalised stamps (B, C, H, W) of codes (B, D) (PSF-free if psf_aware)."""

        return self.decoder(z)
