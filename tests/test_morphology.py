r"""Morphology and moments on analytic cases: real GalSim rendering, real HSM."""

from __future__ import annotations

import math

import galsim
import numpy as np
import pytest
import torch

from morphoflow.metrics.moments import measure_moments
from morphoflow.metrics.morphology import (
    MORPHOLOGY_PROPERTIES,
    gini_coefficient,
    measure_morphology,
    morphology_batched,
    segment,
)
from morphoflow.metrics.testdata import render_galaxies

torch.set_num_threads(1)


def gaussians(sigmas_px: list[float], size: int = 48, flux: float = 1e5, g1: float = 0.0) -> np.ndarray:
    out = []
    for s in sigmas_px:
        prof = galsim.Gaussian(sigma=s, flux=flux).shear(g1=g1, g2=0.0)
        out.append(prof.drawImage(nx=size, ny=size, scale=1.0, method="no_pixel").array)
    return np.stack(out)


def test_round_gaussian_moments_and_r50():
    sig = [3.0, 4.0, 5.0]
    imgs = gaussians(sig)
    mom = measure_moments(imgs)
    assert not mom["failed"].any()
    np.testing.assert_allclose(mom["e1"], 0.0, atol=1e-4)
    np.testing.assert_allclose(mom["e2"], 0.0, atol=1e-4)
    np.testing.assert_allclose(mom["sigma"], sig, rtol=1e-3)
    morph = morphology_batched(imgs, np.zeros(len(sig)))
    # r50 of a circular Gaussian: sigma sqrt(2 ln 2) (statmorph measures it within 1.5 Petrosian
    # radii, which holds > 99 % of a Gaussian's flux)
    np.testing.assert_allclose(morph["r50"], np.array(sig) * math.sqrt(2 * math.log(2)), rtol=0.03)
    # concentration 5 log10(r80 / r20) = 5 log10(sqrt(ln 5 / -ln 0.8)) for a Gaussian
    c_gauss = 5 * math.log10(math.sqrt(math.log(5) / -math.log(0.8)))
    np.testing.assert_allclose(morph["concentration"], c_gauss, atol=0.04)
    # a centred, symmetric, noiseless source: asymmetry vanishes; smoothness is small (only the
    # curvature of the profile survives the boxcar)
    np.testing.assert_allclose(morph["asymmetry"], 0.0, atol=0.01)
    assert ((morph["smoothness"] >= 0) & (morph["smoothness"] < 0.1)).all()
    np.testing.assert_allclose(morph["flux"], 1e5, rtol=0.01)


def test_sheared_gaussian_has_e1():
    mom = measure_moments(gaussians([3.0], g1=0.2))
    # distortion e = 2g / (1 + g²) for a sheared round source
    assert mom["e1"][0] == pytest.approx(2 * 0.2 / (1 + 0.04), abs=2e-3)
    assert abs(mom["e2"][0]) < 1e-3


def test_hsm_failure_is_counted_not_raised():
    imgs = np.stack([np.zeros((32, 32)), gaussians([2.0], size=32)[0]])
    mom = measure_moments(imgs)
    assert mom["failed"].tolist() == [True, False]
    assert np.isnan(mom["sigma"][0]) and np.isfinite(mom["sigma"][1])


def test_gini_limits():
    uniform = np.full((1, 16, 16), 3.0)
    mask = np.ones_like(uniform, bool)
    assert gini_coefficient(uniform, mask)[0] == pytest.approx(0.0, abs=1e-12)
    point = np.zeros((1, 16, 16))
    point[0, 8, 8] = 5.0
    assert gini_coefficient(point, mask)[0] == pytest.approx(1.0)
    # only the masked pixels count: a uniform patch inside a mask of the patch has G = 0
    half = np.zeros((1, 16, 16))
    half[0, :8] = 2.0
    assert gini_coefficient(half, half > 0)[0] == pytest.approx(0.0, abs=1e-12)
    assert np.isnan(gini_coefficient(uniform, np.zeros_like(mask))[0])


def test_clumpy_galaxies_are_more_asymmetric_and_less_concentrated_than_smooth():
    smooth = render_galaxies(12, size=48, seed=3, knot_fraction=(0.0, 0.0), noise_sigma=1.0)
    clumpy = render_galaxies(12, size=48, seed=3, knot_fraction=(0.5, 0.6), noise_sigma=1.0)
    ms = morphology_batched(smooth.images[:, 0], smooth.noise_sigma)
    mc = morphology_batched(clumpy.images[:, 0], clumpy.noise_sigma)
    assert np.nanmedian(mc["asymmetry"]) > np.nanmedian(ms["asymmetry"]) + 0.05
    assert np.nanmedian(mc["gini"]) != pytest.approx(np.nanmedian(ms["gini"]), abs=1e-6)


def test_batches_do_not_change_results_and_failures_are_nan():
    gs = render_galaxies(10, size=32, seed=5, knot_fraction=(0.0, 0.3))
    imgs = gs.images[:, 0].copy()
    imgs[3] = 0.0  # an empty stamp fails every property
    a = measure_morphology(imgs, gs.noise_sigma, batch_size=3)
    b = measure_morphology(imgs, gs.noise_sigma, batch_size=256)
    again = measure_morphology(imgs, gs.noise_sigma, batch_size=3)
    for k in MORPHOLOGY_PROPERTIES:
        np.testing.assert_array_equal(a[k], again[k])  # reruns are identical
        # other batches only change float32 summation order
        np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-9)
        assert np.isnan(a[k][3])
        assert np.isfinite(np.delete(a[k], 3)).all(), k


def test_segment_keeps_central_source_only():
    img = np.zeros((1, 40, 40))
    img[0] = gaussians([2.0], size=40, flux=1e4)[0]
    img[0, 2:5, 2:5] += 500.0  # a separate blob in the corner
    seg = segment(img, np.array([1.0]))
    assert seg[0, 20, 20] and not seg[0, 3, 3]


def test_unknown_engine_names_the_config_key():
    with pytest.raises(ValueError, match="metrics.morphology.engine"):
        measure_morphology(np.zeros((1, 8, 8)), np.ones(1), engine="fast")
