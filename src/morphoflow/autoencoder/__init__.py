r"""Stage 1: the PSF-aware autoencoder on galaxy stamps (rules ``train_autoencoder``, ``evaluate_autoencoder``,
``extract_latents``).

Modules: :mod:`.layers` (ResNet encoder/decoder), :mod:`.models` (β-VAE, AE), :mod:`.forward` (PSF
convolution, likelihoods, noise), :mod:`.objective` (the training loss), :mod:`.train`, :mod:`.evaluate`,
:mod:`.latents` (the latent files the flow reads), :mod:`.io` (model files).
"""

from __future__ import annotations

__all__ = [
    "AE",
    "MODEL_KINDS",
    "VAE",
    "build_autoencoder",
    "load_autoencoder",
    "save_autoencoder",
]

from .io import MODEL_KINDS, build_autoencoder, load_autoencoder, save_autoencoder
from .models import AE, VAE
