r"""Stage-1 models: the PSF-aware β-VAE and the deterministic autoencoder, and their persistence."""

from __future__ import annotations

__all__ = [
    "VAE",
    "AE",
    "MODEL_KINDS",
    "ModelFileError",
    "build_autoencoder",
    "save_autoencoder",
    "load_autoencoder",
]

from .ae import AE
from .io import MODEL_KINDS, ModelFileError, build_autoencoder, load_autoencoder, save_autoencoder
from .vae import VAE
