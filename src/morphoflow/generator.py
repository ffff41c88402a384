r"""The user-facing generator: galaxy images drawn on demand for given physical conditions.

A :class:`Generator` bundles the trained conditional flow (stage 2) and the autoencoder's decoder
(stage 1). Load it from a results directory (``Generator.load("results")`` after the DAG ran) and draw
PSF-free, noiseless images in counts, or GalSim objects to shear, convolve with any PSF and draw inside
your own simulation.

Example (untrained models of a fixed seed stand in for a trained ``results/`` folder, so it runs anywhere):

    >>> import tempfile, galsim, torch
    >>> from morphoflow import Generator
    >>> from morphoflow.autoencoder import build_autoencoder, save_autoencoder
    >>> from morphoflow.config import load_config
    >>> from morphoflow.flow import ConditionalFlow, Standardizer, save_flow
    >>> results = tempfile.mkdtemp()
    >>> _ = torch.manual_seed(0)
    >>> ae = load_config(overrides={"autoencoder": {"latent_dim": 4, "widths": [8], "patch": 1}})["autoencoder"]
    >>> save_autoencoder(f"{results}/autoencoder/model.pt", build_autoencoder(ae, (1, 32, 32)),
    ...                  {"config": ae, "image_shape": [1, 32, 32], "norm_scale": 10.0, "pixel_scale_arcsec": 0.1})
    >>> ranges = {"mag": (20.0, 25.0), "hlr_arcsec": (0.1, 1.0), "redshift": (0.1, 2.0)}
    >>> target_std, context_std = Standardizer([0.0] * 4, [1.0] * 4), Standardizer([22.5, 0.5, 1.0], [1.5, 0.3, 0.5])
    >>> flow = ConditionalFlow("nsf", 4, list(ranges), {"transforms": 2, "hidden_features": [16]},
    ...                        target_std, context_std, ranges)
    >>> save_flow(f"{results}/flow/model.pt", flow)
    >>> gen = Generator.load(results)              # results/autoencoder/model.pt + results/flow/model.pt
    >>> gen.context_columns
    ['mag', 'hlr_arcsec', 'redshift']
    >>> cond = {"mag": 23.5, "hlr_arcsec": 0.4, "redshift": 0.8}
    >>> out = gen.sample(cond, n=16, seed=1)
    >>> out.images.shape                           # (N, C, H, W) in counts, at out.pixel_scale_arcsec
    (16, 1, 32, 32)
    >>> bool((gen.sample(cond, n=16, seed=1).images == out.images).all())  # same seed, same images
    True
    >>> objs = gen.galsim_objects({"mag": [22, 24], "hlr_arcsec": 0.3, "redshift": 1.0}, n=4)
    >>> len(objs)                                  # 2 conditions x 4 draws
    8
    >>> psf = galsim.Moffat(beta=3.0, fwhm=0.7)
    >>> img = galsim.Convolve(objs[0].shear(g1=0.02), psf).drawImage(nx=48, ny=48, scale=0.2)
    >>> img.array.shape
    (48, 48)

Conditions outside the training range of a context column warn or raise (``on_out_of_range``);
the flow never extrapolates silently.
"""

from __future__ import annotations

__all__ = ["GeneratedGalaxies", "Generator", "to_galsim"]

import dataclasses
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from .flow import ConditionalFlow, load_flow
from .sampling import decode_latents
from .seeding import item_seed


@dataclasses.dataclass
class GeneratedGalaxies:
    r"""Generated galaxies.

    Attributes:
        images: PSF-free, noiseless images (N, C, H, W) in counts.
        pixel_scale_arcsec: Pixel scale in arcsec per pixel.
        conditions: The condition of each image (N rows; each input row repeated ``n`` times).
        seeds: The per-image seeds (N,) of the latent draws.
        z: The decoded latents (N, D).
        band: Filter name.
        zeropoint_ab: AB zero point (``mag = zeropoint_ab - 2.5 log10(sum of counts)``).
    """

    images: np.ndarray
    pixel_scale_arcsec: float
    conditions: pd.DataFrame
    seeds: np.ndarray
    z: np.ndarray
    band: str = ""
    zeropoint_ab: float = float("nan")

    def __len__(self) -> int:
        return len(self.images)


class Generator:
    r"""Draw galaxy images for given conditions from a trained flow + decoder.

    Arguments:
        flow: The trained :class:`~morphoflow.flow.ConditionalFlow` over the decoder's latents.
        decoder: A module with ``decode(z) -> normalised images`` (the stage-1 autoencoder).
        meta: The autoencoder's meta (``latent_dim``, ``image_shape``, ``norm_scale`` [counts],
            ``pixel_scale_arcsec``, ``band``, ``zeropoint_ab``).
        on_out_of_range: ``warn`` or ``error`` for conditions outside the training range
            (default: the flow's saved ``out_of_range``, else ``warn``).
        batch_size: Decoder batch size.
    """

    def __init__(
        self,
        flow: ConditionalFlow,
        decoder: torch.nn.Module,
        meta: Mapping[str, Any],
        *,
        on_out_of_range: str | None = None,
        batch_size: int = 256,
    ) -> None:
        self.flow = flow.eval()
        self.decoder = decoder.eval()
        self.meta = dict(meta)
        if int(self.meta["latent_dim"]) != flow.features:
            raise ValueError(
                f"the flow models {flow.features} latent dims but the decoder expects {self.meta['latent_dim']}"
            )
        self.on_out_of_range = _policy(on_out_of_range or getattr(flow, "meta", {}).get("out_of_range", "warn"))
        self.batch_size = int(batch_size)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike | None = None,
        *,
        autoencoder: str | os.PathLike | None = None,
        flow: str | os.PathLike | None = None,
        device: str = "cpu",
        on_out_of_range: str | None = None,
        batch_size: int = 256,
    ) -> Generator:
        r"""Load from a results directory ``path`` holding ``autoencoder/model.pt`` and ``flow/model.pt``,
        or from the two files given explicitly (``autoencoder=``, ``flow=``; they override ``path``)."""

        from .autoencoder import load_autoencoder

        if path is None and (autoencoder is None or flow is None):
            raise ValueError("Generator.load: pass a results directory, or both autoencoder= and flow= files")
        if path is not None:
            root = Path(path)
            if not root.is_dir():
                raise FileNotFoundError(f"{root}: not a directory (expected autoencoder/model.pt and flow/model.pt)")
            autoencoder = autoencoder or root / "autoencoder" / "model.pt"
            flow = flow or root / "flow" / "model.pt"
        for name, p in (("autoencoder", autoencoder), ("flow", flow)):
            if not Path(p).exists():
                raise FileNotFoundError(f"{p}: {name} model file not found")
        cflow = load_flow(flow, device=device)
        decoder, meta = load_autoencoder(autoencoder, device=device)
        return cls(cflow, decoder, meta, on_out_of_range=on_out_of_range, batch_size=batch_size)

    @property
    def context_columns(self) -> list[str]:
        r"""The condition columns the generator needs, in order."""
        return list(self.flow.context_columns)

    @property
    def context_range(self) -> dict[str, tuple[float, float]]:
        r"""Training ``(min, max)`` of each condition column."""
        return dict(self.flow.context_range)

    @property
    def pixel_scale_arcsec(self) -> float:
        return float(self.meta["pixel_scale_arcsec"])

    @property
    def image_shape(self) -> tuple[int, ...]:
        r"""(C, H, W) of the generated images."""
        return tuple(int(s) for s in self.meta["image_shape"])

    def conditions_table(self, conditions: Mapping[str, Any] | pd.DataFrame, n: int = 1) -> pd.DataFrame:
        r"""Broadcast a dict of scalars/arrays (or a DataFrame) to rows and repeat each row ``n`` times."""

        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        if isinstance(conditions, pd.DataFrame):
            table = conditions.reset_index(drop=True)
        elif isinstance(conditions, Mapping):
            cols = {k: np.atleast_1d(np.asarray(v)) for k, v in conditions.items()}
            sizes = {len(v) for v in cols.values() if len(v) != 1}
            if len(sizes) > 1:
                raise ValueError(f"conditions: columns have different lengths {sorted(sizes)}")
            m = sizes.pop() if sizes else 1
            table = pd.DataFrame({k: np.broadcast_to(v, (m,)) for k, v in cols.items()})
        else:
            raise TypeError("conditions must be a dict of scalars/arrays or a pandas DataFrame")
        missing = [c for c in self.context_columns if c not in table.columns]
        if missing:
            raise ValueError(f"conditions: column(s) {missing} missing (the model needs {self.context_columns})")
        return table.loc[table.index.repeat(n)].reset_index(drop=True)

    def sample(
        self,
        conditions: Mapping[str, Any] | pd.DataFrame,
        n: int = 1,
        seed: int = 0,
        *,
        seeds: Sequence[int] | None = None,
        on_out_of_range: str | None = None,
    ) -> GeneratedGalaxies:
        r"""Draw ``n`` galaxies per condition row; the same ``seed`` gives identical images.

        Arguments:
            conditions: ``{column: value or array}`` or a DataFrame with the :attr:`context_columns`
                (e.g. ``mag`` [AB mag], ``hlr_arcsec`` [arcsec], ``redshift``); scalars broadcast.
            n: Draws per condition row.
            seed: Seed; image ``k`` uses ``item_seed(seed, k, "generator")`` for its global latent and
                ``item_seed(seed, k, "generator-detail")`` for its detail map (two-level models).
            seeds: One seed per image instead of ``seed`` (``n`` x rows of them): image ``k`` is then the
                one that ``sample(row_k, n=1, seed=seeds[k])`` draws, whatever the batch it is drawn in.
            on_out_of_range: ``warn`` or ``error`` (default: the generator's policy).
        """

        table = self.conditions_table(conditions, n)
        policy = _policy(on_out_of_range or self.on_out_of_range)
        context = self.flow.context_matrix(table, policy)
        if seeds is None:
            pairs = [(seed, k) for k in range(len(table))]
        else:
            pairs = [(int(s), 0) for s in np.asarray(seeds, dtype=np.int64).ravel()]
            if len(pairs) != len(table):
                raise ValueError(f"seeds: {len(pairs)} seeds for {len(table)} images")
        latent_seeds = np.array([item_seed(s, k, "generator") for s, k in pairs], dtype=np.int64)
        z = self.flow.sample(context, latent_seeds)
        detail_seeds = [item_seed(s, k, "generator-detail") for s, k in pairs]
        images = decode_latents(
            self.decoder, z, float(self.meta["norm_scale"]), seeds=detail_seeds, batch_size=self.batch_size
        )
        return GeneratedGalaxies(
            images=images,
            pixel_scale_arcsec=self.pixel_scale_arcsec,
            conditions=table,
            seeds=latent_seeds,
            z=z,
            band=str(self.meta.get("band", "")),
            zeropoint_ab=float(self.meta.get("zeropoint_ab", float("nan"))),
        )

    def decode(self, z: np.ndarray, seed: int = 0) -> np.ndarray:
        r"""PSF-free images (N, C, H, W) in counts of global latents ``z`` (N, D).

        A two-level model draws each image's detail map (clumps, small-scale structure) from its prior,
        image ``k`` with ``item_seed(seed, k, "generator-detail")``: decoding one latent with several seeds
        gives the same galaxy with different substructure.
        """

        seeds = [item_seed(seed, k, "generator-detail") for k in range(len(z))]
        return decode_latents(self.decoder, z, float(self.meta["norm_scale"]), seeds=seeds, batch_size=self.batch_size)

    def galsim_objects(
        self,
        conditions: Mapping[str, Any] | pd.DataFrame,
        n: int = 1,
        seed: int = 0,
        *,
        channel: int = 0,
        on_out_of_range: str | None = None,
        **interpolated_kwargs: Any,
    ) -> list:
        r"""The :meth:`sample` images as flux-preserving ``galsim.InterpolatedImage`` profiles.

        Each profile has the image's total flux (counts) at :attr:`pixel_scale_arcsec`; it can be
        sheared, convolved with any PSF and drawn by GalSim. Drawing it with ``method='no_pixel'`` on
        the same grid gives back the sampled pixels. ``interpolated_kwargs`` go to
        ``galsim.InterpolatedImage`` (e.g. ``x_interpolant``).
        """

        out = self.sample(conditions, n, seed, on_out_of_range=on_out_of_range)
        return to_galsim(out.images, out.pixel_scale_arcsec, channel=channel, **interpolated_kwargs)


def to_galsim(images: np.ndarray, pixel_scale_arcsec: float, *, channel: int = 0, **interpolated_kwargs: Any) -> list:
    r"""Turn PSF-free images (N, C, H, W) [counts] into flux-preserving ``galsim.InterpolatedImage`` profiles.

    The profile's flux is the image sum (counts) and its pixel scale ``pixel_scale_arcsec`` [arcsec];
    drawn with ``method='no_pixel'`` on the same grid it gives the pixels back exactly.

    Example:
        >>> import numpy as np
        >>> obj = to_galsim(np.ones((1, 1, 8, 8), np.float32), pixel_scale_arcsec=0.1)[0]
        >>> round(float(obj.flux), 6)              # counts
        64.0
        >>> round(float(obj.drawImage(nx=8, ny=8, scale=0.1, method="no_pixel").array[4, 4]), 6)
        1.0
    """

    import galsim

    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"to_galsim: images must be (N, C, H, W), got shape {images.shape}")
    if not 0 <= channel < images.shape[1]:
        raise ValueError(f"channel {channel} out of range for {images.shape[1]} channel(s)")
    objs = []
    for img in images[:, channel]:
        gimg = galsim.Image(np.ascontiguousarray(img, dtype=np.float64), scale=float(pixel_scale_arcsec))
        objs.append(galsim.InterpolatedImage(gimg, normalization="flux", **interpolated_kwargs))
    return objs


def _policy(value: str) -> str:
    if value not in ("warn", "error"):
        raise ValueError(f"on_out_of_range must be 'warn' or 'error', got '{value}'")
    return value
