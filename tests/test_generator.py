"""The Generator API: flow + decoder -> images in counts and GalSim objects."""

from __future__ import annotations

import warnings
from pathlib import Path

import galsim
import numpy as np
import pandas as pd
import pytest
import torch

import morphoflow
from morphoflow.autoencoder import build_autoencoder, save_autoencoder
from morphoflow.config import load_config
from morphoflow.flow import OutOfRangeError, OutOfRangeWarning, save_flow, train_conditional_flow
from morphoflow.generator import GeneratedGalaxies, Generator, to_galsim

torch.set_num_threads(1)

COLUMNS = ["mag", "hlr_arcsec", "redshift"]
RANGES = {"mag": (17.5, 21.0), "hlr_arcsec": (0.1, 0.8), "redshift": (0.05, 2.0)}
PIXEL_SCALE = 0.1


def make_model_dir(root: Path, latent_dim: int = 3, size: int = 32, out_of_range: str = "warn") -> Path:
    r"""A results folder with a real (untrained) autoencoder and a flow trained for 2 epochs on latents = f(conditions) + noise."""

    config = load_config(
        overrides={
            "autoencoder": {
                "model": "ae",
                "latent_dim": latent_dim,
                "widths": [8, 8],
                "blocks": 1,
                "patch": 1,
                "psf_aware": True,
            },
            "flow": {
                "kind": "nsf",
                "context": COLUMNS,
                "transforms": 2,
                "hidden_features": [16],
                "bins": 4,
                "passes": 2,
                "train": {
                    "max_epochs": 2,
                    "batch_size": 64,
                    "lr": 1e-3,
                    "weight_decay": 0.0,
                    "warmup_steps": 2,
                    "device": "cpu",
                    "bf16": False,
                },
            },
        }
    )
    torch.manual_seed(0)
    ae_cfg = config["autoencoder"]
    ae = build_autoencoder(ae_cfg, (1, size, size))
    save_autoencoder(
        root / "autoencoder" / "model.pt",
        ae,
        {
            "config": ae_cfg,
            "image_shape": [1, size, size],
            "norm_scale": 2.0,
            "pixel_scale_arcsec": PIXEL_SCALE,
            "band": "F814W",
            "zeropoint_ab": 25.94,
        },
    )
    rng = np.random.default_rng(0)
    n = 256
    ctx = np.stack([rng.uniform(*RANGES[c], n) for c in COLUMNS], axis=-1).astype(np.float32)
    z = (ctx @ rng.normal(size=(3, latent_dim)) + 0.3 * rng.standard_normal((n, latent_dim))).astype(np.float32)
    flow = train_conditional_flow(
        z,
        ctx,
        z[:64],
        ctx[:64],
        config["flow"],
        0,
        root / "flow" / "checkpoints",
        None,
        context_columns=COLUMNS,
        progress=False,
    )
    save_flow(root / "flow" / "model.pt", flow, {"out_of_range": out_of_range})
    return root


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return make_model_dir(tmp_path_factory.mktemp("results"))


def test_lazy_export():
    assert morphoflow.Generator is Generator


def test_sample_shapes_units_and_same_seed_identity(model_dir):
    gen = Generator.load(model_dir)
    assert gen.context_columns == COLUMNS and gen.image_shape == (1, 32, 32)
    cond = {"mag": [18.0, 19.5], "hlr_arcsec": 0.4, "redshift": 0.8}
    a = gen.sample(cond, n=3, seed=5)
    assert isinstance(a, GeneratedGalaxies) and len(a) == 6
    assert a.images.shape == (6, 1, 32, 32) and a.images.dtype == np.float32 and np.isfinite(a.images).all()
    assert a.pixel_scale_arcsec == PIXEL_SCALE and a.band == "F814W"
    assert list(a.conditions["mag"]) == [18.0] * 3 + [19.5] * 3 and (a.conditions["redshift"] == 0.8).all()
    # the images are the decoder output in counts: norm_scale (2 counts) times the normalised image
    with torch.no_grad():
        x = gen.decoder.decode(torch.as_tensor(a.z)).numpy()
    np.testing.assert_allclose(a.images, 2.0 * x, rtol=1e-5, atol=1e-6)

    b = gen.sample(cond, n=3, seed=5)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.seeds, b.seeds)
    c = gen.sample(cond, n=3, seed=6)
    assert not np.allclose(a.images, c.images)
    assert len(np.unique(a.z.round(5), axis=0)) == 6  # every draw differs

    # a DataFrame gives the same as the dict
    df = pd.DataFrame({"mag": [18.0, 19.5], "hlr_arcsec": [0.4, 0.4], "redshift": [0.8, 0.8]})
    np.testing.assert_array_equal(gen.sample(df, n=3, seed=5).images, a.images)


def test_load_explicit_files_and_errors(model_dir, tmp_path):
    gen = Generator.load(autoencoder=model_dir / "autoencoder" / "model.pt", flow=model_dir / "flow" / "model.pt")
    assert gen.context_columns == COLUMNS
    with pytest.raises(FileNotFoundError, match="flow model file not found"):
        Generator.load(autoencoder=model_dir / "autoencoder" / "model.pt", flow=tmp_path / "nope.pt")
    with pytest.raises(ValueError, match=r"column\(s\) \['redshift'\] missing"):
        gen.sample({"mag": 18.0, "hlr_arcsec": 0.3})


def test_out_of_range_warn_vs_error(model_dir, tmp_path):
    cond = {"mag": 28.0, "hlr_arcsec": 0.4, "redshift": 0.8}
    gen = Generator.load(model_dir)  # the model was saved with out_of_range: warn
    with pytest.warns(OutOfRangeWarning, match=r"'mag' = 28 is outside the training range \[17\.\d+, 2\d\.\d+\]"):
        gen.sample(cond)
    with pytest.raises(OutOfRangeError, match="'mag' = 28"):
        gen.sample(cond, on_out_of_range="error")
    strict = Generator.load(model_dir, on_out_of_range="error")
    with pytest.raises(OutOfRangeError, match="'mag'"):
        strict.sample(cond)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        strict.sample({"mag": 19.0, "hlr_arcsec": 0.4, "redshift": 0.8})  # in range: silent


def test_galsim_objects_reproduce_sample_pixels(model_dir):
    gen = Generator.load(model_dir)
    cond = {"mag": [18.0, 20.0], "hlr_arcsec": [0.3, 0.6], "redshift": 1.0}
    pixels = gen.sample(cond, n=2, seed=3).images[:, 0]
    objs = gen.galsim_objects(cond, n=2, seed=3)
    assert len(objs) == 4 and all(isinstance(o, galsim.InterpolatedImage) for o in objs)
    for obj, ref in zip(objs, pixels, strict=True):
        assert obj.flux == pytest.approx(ref.sum(), rel=1e-5)  # flux-preserving, in counts
        img = obj.drawImage(nx=32, ny=32, scale=PIXEL_SCALE, method="no_pixel").array
        np.testing.assert_allclose(img, ref, rtol=1e-5, atol=1e-6 * ref.max())


def test_galsim_objects_convolve_like_the_pixels():
    # Real GalSim galaxies (they fade to ~0 at the stamp edge, as a trained decoder's do; the untrained
    # decoder above gives a flat pedestal that a Fourier draw cannot reproduce at a hard stamp edge).
    rng = np.random.default_rng(1)
    images = np.stack(
        [
            galsim.Sersic(n=n, half_light_radius=hlr, flux=flux)
            .shear(q=0.6, beta=0.3 * galsim.radians)
            .drawImage(nx=48, ny=48, scale=PIXEL_SCALE, method="no_pixel")
            .array[None]
            for n, hlr, flux in zip([1.0, 1.5], [0.3, 0.5], rng.uniform(300, 1500, 2), strict=True)
        ]
    ).astype(np.float32)
    delta = galsim.Gaussian(sigma=1e-4)
    psf = galsim.Moffat(beta=3, fwhm=0.3)
    for obj, ref in zip(to_galsim(images, PIXEL_SCALE), images[:, 0], strict=True):
        img = galsim.Convolve(obj, delta).drawImage(nx=48, ny=48, scale=PIXEL_SCALE, method="no_pixel").array
        # interpolant + Fourier draw: within 3% of the peak at the centre, 0.3% of it in rms
        np.testing.assert_allclose(img, ref, atol=0.03 * ref.max())
        assert np.sqrt(np.mean((img - ref) ** 2)) < 3e-3 * ref.max()
        assert img.sum() == pytest.approx(ref.sum(), rel=1e-3)
        # a GalSim simulation can shear it and convolve it with its own PSF; the flux (counts) is kept
        sim = galsim.Convolve(obj.shear(g1=0.05), psf).drawImage(nx=64, ny=64, scale=PIXEL_SCALE)
        assert sim.array.sum() == pytest.approx(ref.sum(), rel=0.02)


def test_per_image_seeds_give_the_single_draws(model_dir):
    gen = Generator.load(model_dir)
    cond = {"mag": [18.0, 19.0, 20.0], "hlr_arcsec": 0.4, "redshift": [0.5, 1.0, 1.5]}
    batch = gen.sample(cond, seeds=[7, 8, 9])
    for k, s in enumerate([7, 8, 9]):
        alone = gen.sample({c: np.atleast_1d(v)[min(k, len(np.atleast_1d(v)) - 1)] for c, v in cond.items()}, seed=s)
        np.testing.assert_allclose(batch.images[k], alone.images[0], rtol=1e-4, atol=1e-6)
        assert batch.seeds[k] == alone.seeds[0]
    with pytest.raises(ValueError, match="2 seeds for 3 images"):
        gen.sample(cond, seeds=[1, 2])
