"""The GalSim config galaxy type `MorphoflowGalaxy`: real GalSim config processing on a tiny trained model."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import galsim
import numpy as np
import pytest
from astropy.io import fits

import morphoflow.galsim_config as gc
from morphoflow.contract import GalaxySet, write_galaxies
from morphoflow.generator import Generator
from test_generator import PIXEL_SCALE, RANGES, make_model_dir

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return make_model_dir(tmp_path_factory.mktemp("results"))


def process(config: dict) -> tuple[np.ndarray, gc.MorphoflowModel]:
    r"""Build the config's image in this process; return its pixels and the morphoflow input object."""

    config = galsim.config.CopyConfig(config)
    image = galsim.config.BuildImage(config)
    return image.array.copy(), config["_input_objs"]["morphoflow"][0]


def tiled(model_dir: Path, conditions: dict[str, list[float]], batch: bool = True) -> dict:
    n = len(conditions["mag"])
    gal = {"type": "MorphoflowGalaxy", "seed": {"type": "Sequence", "first": 100}}
    gal.update({c: {"type": "List", "items": v} for c, v in conditions.items()})
    return {
        "input": {"morphoflow": {"model": str(model_dir), "batch": batch}},
        "gal": gal,
        "stamp": {"draw_method": "no_pixel"},
        "image": {"type": "Tiled", "nx_tiles": n, "ny_tiles": 1, "stamp_size": 32, "pixel_scale": PIXEL_SCALE},
    }


def test_each_galaxy_is_the_generator_sample_and_one_pass_per_image(model_dir):
    cond = {"mag": [18.0, 19.0, 20.5, 18.5], "hlr_arcsec": [0.2, 0.5, 0.3, 0.7], "redshift": [0.3, 1.0, 1.5, 0.1]}
    pixels, model = process(tiled(model_dir, cond))
    assert model.model_calls == 1  # four galaxies, one forward pass
    ref = Generator.load(model_dir).sample(cond, n=1, seeds=[100, 101, 102, 103]).images[:, 0]
    tiles = pixels.reshape(32, 4, 32).transpose(1, 0, 2)
    np.testing.assert_allclose(tiles, ref, rtol=1e-4, atol=1e-5 * np.abs(ref).max())
    # the same seed alone gives the same galaxy as in the batch
    alone = Generator.load(model_dir).sample({c: v[2] for c, v in cond.items()}, seed=102).images[0, 0]
    np.testing.assert_allclose(alone, ref[2], rtol=1e-4, atol=1e-5 * np.abs(ref).max())
    # one call per galaxy gives the same image
    per_object, model1 = process(tiled(model_dir, cond, batch=False))
    assert model1.model_calls == 4
    np.testing.assert_allclose(per_object, pixels, rtol=1e-4, atol=1e-5 * np.abs(ref).max())


def test_random_conditions_scattered_field_batched_equals_per_object(model_dir):
    config = {
        "input": {"morphoflow": {"model": str(model_dir)}},
        "gal": {
            "type": "MorphoflowGalaxy",
            "mag": {"type": "Random", "min": 18.0, "max": 20.0},
            "hlr_arcsec": {"type": "Random", "min": 0.2, "max": 0.6},
            "redshift": {"type": "Random", "min": 0.2, "max": 1.5},
            "shear": {"type": "G1G2", "g1": 0.03, "g2": -0.01},
        },
        "psf": {"type": "Moffat", "beta": 3.0, "fwhm": {"type": "Random", "min": 0.6, "max": 0.8}},
        "image": {"type": "Scattered", "size": 96, "nobjects": 6, "pixel_scale": 0.2, "random_seed": 5},
    }
    batched, model = process(config)
    config["input"]["morphoflow"]["batch"] = False
    per_object, model1 = process(config)
    assert (model.model_calls, model1.model_calls) == (1, 6)
    assert np.abs(batched).max() > 0
    np.testing.assert_allclose(batched, per_object, rtol=1e-4, atol=1e-5 * np.abs(batched).max())
    # a galaxy inside a sum, after another object's random draw: still predicted, still one pass
    config["gal"] = {"type": "Sum", "items": [{"type": "Gaussian", "sigma": 0.1, "flux": 100.0}, dict(config["gal"])]}
    config["gal"]["items"][0]["sigma"] = {"type": "Random", "min": 0.1, "max": 0.2}
    config["input"]["morphoflow"]["batch"] = True
    mixed_batched, model = process(config)
    config["input"]["morphoflow"]["batch"] = False
    mixed_single, _ = process(config)
    assert model.model_calls == 1
    np.testing.assert_allclose(mixed_batched, mixed_single, rtol=1e-4, atol=1e-5 * np.abs(mixed_single).max())
    # without image.random_seed the draws cannot be foreseen: the galaxies the batch missed come one by one
    del config["image"]["random_seed"]
    config["input"]["morphoflow"]["batch"] = True
    unseeded, model = process(config)
    assert model.model_calls == 1 + 5 and np.isfinite(unseeded).all() and np.abs(unseeded).max() > 0


def test_field_example_with_the_galsim_executable_fluxes_follow_magnitudes(model_dir, tmp_path):
    rng = np.random.default_rng(0)
    n = 16
    catalog = {c: rng.uniform(lo + 0.05 * (hi - lo), hi - 0.05 * (hi - lo), n) for c, (lo, hi) in RANGES.items()}
    catalog["id"] = np.arange(n, dtype=np.int64)
    images = np.zeros((n, 1, 8, 8), np.float32)
    psf = np.zeros((1, 1, 8, 8), np.float32)
    psf[..., 4, 4] = 1.0
    attrs = {"pixel_scale_arcsec": 0.1, "band": "F814W", "zeropoint_ab": 25.94, "source": "simulate"}
    write_galaxies(tmp_path / "test.h5", GalaxySet(images, psf, np.ones(n, np.float32), catalog, attrs))
    assert gc.main(["catalog", str(tmp_path / "test.h5"), str(tmp_path / "output" / "conditions.fits")]) == 0
    with fits.open(tmp_path / "output" / "conditions.fits") as hdus:
        assert hdus[1].columns["mag"].unit == "mag(AB)" and len(hdus[1].data) == n

    (tmp_path / "examples").mkdir()
    shutil.copy(ROOT / "examples" / "field.yaml", tmp_path / "examples" / "field.yaml")
    (tmp_path / "results").symlink_to(model_dir)
    exe = Path(sys.executable).with_name("galsim")
    size = 320
    env = dict(
        os.environ, OMP_NUM_THREADS="1", PYTHONPATH=f"{ROOT / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"
    )
    run = subprocess.run(
        [str(exe), "-v", "2", "examples/field.yaml", f"image.size={size}", "image.nobjects=12"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    assert "12 galaxies generated in one pass" in run.stdout + run.stderr
    field = galsim.fits.read(str(tmp_path / "output" / "field.fits")).array
    truth = np.loadtxt(tmp_path / "output" / "field_truth.dat")
    assert field.shape == (size, size) and len(truth) == 12
    # every galaxy got the next catalog row's conditions and the flux of its magnitude at zero point 30
    np.testing.assert_allclose(truth[:, 3], catalog["mag"][:12], rtol=1e-6)
    np.testing.assert_allclose(truth[:, 6], 10 ** (-0.4 * (truth[:, 3] - 30.0)), rtol=1e-6)
    # the image: isolated galaxies' fluxes in a 41-pixel box match their magnitudes within the noise
    sigma_box = np.sqrt(100.0 + 5.0**2) * 41  # CCD noise (sky 100 counts, read noise 5) summed over the box
    checked = 0
    for _, x, y, mag, *_ in truth:
        ix, iy = round(x) - 1, round(y) - 1
        others = np.hypot(truth[:, 1] - x, truth[:, 2] - y)
        if min(ix, iy) < 20 or max(ix, iy) >= size - 20 or np.sort(others)[1] < 45:
            continue
        measured = field[iy - 20 : iy + 21, ix - 20 : ix + 21].sum()
        expected = 10 ** (-0.4 * (mag - 30.0))
        assert abs(measured - expected) < 4 * sigma_box + 0.03 * expected, (mag, measured, expected)
        checked += 1
    assert checked >= 3
