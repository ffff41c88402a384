r"""Generated galaxies for the test conditions: flow latents (or a Gaussian baseline) decoded to images.

For every test galaxy (``results/data/test.h5``) a latent is drawn at that galaxy's conditions
(its ``flow.context`` catalog columns) and decoded by the stage-1 decoder into a PSF-free, noiseless
image in counts (``truth``). The "observed" version (``images``) is that image FFT-convolved with the
galaxy's PSF plus noise drawn from the galaxy's noise model (``noise_power`` if present, else
``noise_sigma``), so it can be compared pixel-statistic for pixel-statistic with the real test image.

Methods:

* ``flow``: :math:`z \sim p_\mathrm{flow}(z \mid \mathrm{conditions})`.
* ``gaussian``: the baseline :math:`z \sim \mathcal{N}(0, I)` in the decoder's latent space, ignoring
  the conditions. For a VAE this is its prior; for a plain ``ae`` it is only a reference point
  (its latent codes are not standard normal), which is the point of the comparison.

Every random draw of a galaxy is seeded by ``item_seed(seed, id, purpose)``, so outputs do not
depend on batch size or thread count (up to float rounding of batched matrix products).
"""

from __future__ import annotations

__all__ = [
    "METHODS",
    "decode_latents",
    "detail_noise",
    "observe",
    "run_sample",
    "sample_latents",
]

import logging
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import h5py
import numpy as np
import torch
from tqdm import tqdm

from .atomic import atomic_path
from .autoencoder.forward import fft_convolve, psf_rfft, sample_noise
from .autoencoder.io import check_stamps, load_autoencoder
from .contract import ContractError, GalaxySet, read_galaxies, write_galaxies
from .flow.io import load_flow
from .flow.model import base_noise
from .seeding import item_seed
from .training import select_device

log = logging.getLogger("morphoflow.sampling")

METHODS = ("flow", "gaussian")


def detail_noise(model: torch.nn.Module, seeds: Sequence[int]) -> tuple[np.ndarray, np.ndarray] | None:
    r"""The randomness of each galaxy's detail map: uniforms (N, 1, h, w) and normals (N, channels, h, w),
    row ``i`` from ``numpy.random.default_rng(seeds[i])``; None for a model without a detail level."""

    level = getattr(model, "detail", None)
    if level is None:
        return None
    u_shape, e_shape = level.noise_shapes(1, model.detail_grid)
    u = np.empty((len(seeds), *u_shape[1:]), np.float32)
    eps = np.empty((len(seeds), *e_shape[1:]), np.float32)
    for i, s in enumerate(seeds):
        rng = np.random.default_rng(int(s))
        u[i], eps[i] = rng.random(u_shape[1:]), rng.standard_normal(e_shape[1:])
    return u, eps


@torch.no_grad()
def decode_latents(
    decoder: torch.nn.Module,
    z: np.ndarray,
    norm_scale: float,
    *,
    seeds: Sequence[int] | None = None,
    batch_size: int = 256,
    progress: bool = False,
) -> np.ndarray:
    r"""Decode latents (N, D) to PSF-free noiseless images (N, C, H, W) in counts.

    ``decoder.generate(z, u, eps)`` returns normalised images, which are multiplied by ``norm_scale`` (counts).
    A two-level model draws each galaxy's detail map from its prior with the randomness of
    :func:`detail_noise` (``seeds``: one per galaxy, required then), so a galaxy's image does not depend on
    its batch.
    """

    decoder.eval()
    noise = detail_noise(decoder, seeds) if seeds is not None else None
    if noise is None and getattr(decoder, "detail", None) is not None:
        raise ValueError("decode_latents: a two-level model needs one seed per galaxy for its detail maps")
    try:
        device = next(decoder.parameters()).device
    except StopIteration:  # pragma: no cover - a decoder always has weights
        device = torch.device("cpu")
    out = []
    for i in tqdm(range(0, len(z), batch_size), file=sys.stderr, disable=not progress, desc="decode", unit="batch"):
        zb = torch.as_tensor(np.asarray(z[i : i + batch_size], np.float32), device=device)
        if noise is None:
            g = decoder.decode(zb)
        else:
            u, eps = (torch.as_tensor(a[i : i + batch_size], device=device) for a in noise)
            g = decoder.generate(zb, u, eps)
        out.append((g.float() * float(norm_scale)).cpu().numpy())
    if not out:
        raise ValueError("decode_latents: no latent to decode")
    return np.concatenate(out).astype(np.float32)


def sample_latents(
    method: str,
    ids: np.ndarray,
    seed: int,
    latent_dim: int,
    *,
    flow: Any = None,
    context: np.ndarray | None = None,
    batch_size: int = 4096,
) -> np.ndarray:
    r"""Latents (N, D) for the items ``ids``: from ``flow`` at ``context`` (N, K), or N(0, I) (``gaussian``)."""

    if method not in METHODS:
        raise ValueError(f"unknown sampling method '{method}' (choose from {list(METHODS)})")
    seeds = [item_seed(seed, int(i), f"sample-{method}") for i in ids]
    if method == "gaussian":
        return base_noise(seeds, latent_dim)
    if flow is None or context is None:
        raise ValueError("sample_latents: method 'flow' needs a flow and a context table")
    if flow.features != latent_dim:
        raise ValueError(f"the flow models {flow.features} latent dims, the decoder expects {latent_dim}")
    return flow.sample(context, seeds, batch_size=batch_size)


@torch.no_grad()
def observe(
    truth: np.ndarray,
    psf: np.ndarray,
    noise_sigma: np.ndarray,
    noise_power: np.ndarray | None,
    seeds: Sequence[int],
    *,
    batch_size: int = 256,
) -> np.ndarray:
    r"""Convolve PSF-free images (N, C, H, W) [counts] with their PSFs and add seeded noise per image.

    Arguments:
        truth: Noiseless PSF-free images in counts.
        psf: PSFs (1 or N, C, H, W), unit sum, centred at (H // 2, W // 2).
        noise_sigma: Per-pixel noise std (N,) in counts, used when ``noise_power`` is None.
        noise_power: Optional spectra (1 or N, C, H, W // 2 + 1) in counts².
        seeds: One seed per image for its noise draw.
    """

    n, c, h, w = truth.shape
    shared_hat = psf_rfft(torch.as_tensor(psf)) if len(psf) == 1 else None
    out = np.empty_like(truth, dtype=np.float32)
    for i in range(0, n, batch_size):
        sl = slice(i, min(i + batch_size, n))
        x = torch.as_tensor(truth[sl])
        if shared_hat is not None:
            conv = fft_convolve(x, psf_hat=shared_hat)
        else:
            conv = fft_convolve(x, torch.as_tensor(psf[sl]))
        for j in range(sl.start, sl.stop):
            gen = torch.Generator().manual_seed(int(seeds[j]))
            power = None
            if noise_power is not None:
                power = torch.as_tensor(noise_power[0 if len(noise_power) == 1 else j][None])
            noise = sample_noise((1, c, h, w), torch.as_tensor(noise_sigma[j : j + 1]), power, gen)
            out[j] = (conv[j - sl.start] + noise[0]).numpy()
    return out


def _load_decoder(autoencoder: str | os.PathLike, test: GalaxySet, test_path: str | os.PathLike, device: torch.device):
    r"""The autoencoder and its meta, checked against the test split's stamps and pixel scale."""

    decoder, meta = load_autoencoder(autoencoder, device=device)
    check_stamps(meta, test, test_path, autoencoder)
    scale = float(meta.get("pixel_scale_arcsec", test.pixel_scale))
    if not np.isclose(scale, test.pixel_scale, rtol=1e-6):
        raise ContractError(
            f"{test_path}: pixel scale {test.pixel_scale} arcsec differs from the autoencoder's {scale} arcsec"
        )
    return decoder, meta


def _write_samples(path: str | os.PathLike, gs: GalaxySet, z: np.ndarray, method: str) -> None:
    with atomic_path(path) as tmp:
        write_galaxies(tmp, gs)
        with h5py.File(tmp, "a") as f:
            ds = f.create_dataset("z", data=z.astype(np.float32))
            ds.attrs["description"] = f"latents decoded into 'truth' ({method})"


def _run_parametric(
    test: str | os.PathLike, samples: str | os.PathLike, config: Mapping[str, Any], cosmos: str | os.PathLike | None
) -> GalaxySet:
    r"""Method ``parametric``: :func:`morphoflow.parametric.parametric_set` of the galaxies of ``test``."""

    from .parametric import parametric_set

    gs = read_galaxies(test)
    out = parametric_set(gs, config, name=str(test), cosmos=cosmos)
    with atomic_path(samples) as tmp:
        write_galaxies(tmp, out)
    log.info("wrote %s (%d parametric galaxies)", samples, len(out))
    return out


def run_sample(
    *,
    test: str | os.PathLike,
    autoencoder: str | os.PathLike | None,
    samples: str | os.PathLike,
    method: str,
    config: Mapping[str, Any],
    flow: str | os.PathLike | None = None,
    cosmos: str | os.PathLike | None = None,
    progress: bool = True,
) -> GalaxySet:
    r"""Rule ``sample``: generated counterparts of every test galaxy, written in the data contract.

    Arguments:
        test: The test split (contract file); its catalog gives the conditions.
        autoencoder: The trained autoencoder (its decoder makes the images; unused by ``parametric``).
        samples: Output galaxy file.
        method: ``flow`` or ``gaussian`` (:data:`METHODS`), or ``parametric``
            (:func:`morphoflow.parametric.parametric_set`: no latents, no dataset ``z``).
        config: ``{"sample": ..., "seed": ..., "flow": {"out_of_range": ...}}`` from the validated config;
            ``parametric`` also reads ``data.source``, ``simulate``, ``preprocess.target_psf``, ``cosmos`` and
            ``download.sample``.
        flow: The trained flow file (method ``flow`` only).
        cosmos: The COSMOS training-sample tarball (method ``parametric`` on COSMOS data only).

    The output holds ``images`` (observed: PSF-convolved + noise, counts), ``truth`` (PSF-free,
    noiseless, counts), the test file's ``psf``, ``noise_sigma``, ``noise_power`` and catalog (the
    requested conditions, with ``id``), its attributes with ``source`` = ``method``, and an extra
    dataset ``z`` (N, D) of the latents that were decoded.
    """

    if method == "parametric":
        return _run_parametric(test, samples, config, cosmos)
    if method not in METHODS:
        raise ValueError(f"unknown sampling method '{method}' (choose from {list(METHODS)} or 'parametric')")
    scfg, seed = config["sample"], int(config["seed"])
    dev = select_device(scfg["device"])
    gs = read_galaxies(test)
    decoder, meta = _load_decoder(autoencoder, gs, test, dev)
    latent_dim, ids = int(meta["latent_dim"]), gs.ids

    cflow, context = None, None
    if method == "flow":
        if flow is None:
            raise ValueError("run_sample: method 'flow' needs the flow model file")
        cflow = load_flow(flow, device=dev)
        context = cflow.context_matrix(gs.catalog, config["flow"]["out_of_range"], name=f"{test} catalog")
    log.info("sampling %d '%s' latents (D=%d)", len(ids), method, latent_dim)
    z = sample_latents(method, ids, seed, latent_dim, flow=cflow, context=context)
    batch_size = int(scfg["batch_size"])
    detail_seeds = [item_seed(seed, int(i), f"sample-{method}-detail") for i in ids]
    truth = decode_latents(
        decoder, z, float(meta["norm_scale"]), seeds=detail_seeds, batch_size=batch_size, progress=progress
    )
    noise_seeds = [item_seed(seed, int(i), f"sample-{method}-noise") for i in ids]
    images = observe(truth, gs.psf, gs.noise_sigma, gs.noise_power, noise_seeds, batch_size=batch_size)

    attrs = dict(gs.attrs, source=method, latent_dim=latent_dim, model=str(meta.get("model", "")))
    out = GalaxySet(
        images=images,
        psf=gs.psf,
        noise_sigma=gs.noise_sigma,
        catalog=dict(gs.catalog),
        attrs=attrs,
        units=dict(gs.units),
        truth=truth,
        noise_power=gs.noise_power,
    )
    _write_samples(samples, out, z, method)
    log.info("wrote %s (%d galaxies)", samples, len(out))
    return out
