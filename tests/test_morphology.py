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
    with pytest.raises(ValueError, match=r"metrics\.morphology\.engine"):
        measure_morphology(np.zeros((1, 8, 8)), np.ones(1), engine="fast")


def test_gaussian_smoothing_matches_scipy():
    from scipy import ndimage as ndi

    from morphoflow.metrics.morphology import _gaussian_smooth

    rng = np.random.default_rng(0)
    imgs = rng.normal(size=(4, 40, 40)).astype(np.float32)
    sig = np.array([0.3, 2.0, 7.5, 15.0])  # the last reaches past the stamp (multiple reflections)
    sm = _gaussian_smooth(imgs, sig)
    for i, s in enumerate(sig):
        np.testing.assert_allclose(sm[i], ndi.gaussian_filter(imgs[i].astype(np.float64), s), atol=2e-6)


def test_autocorrelation_window_matches_full_fft():
    from morphoflow.metrics.morphology import _autocorrelation_window

    rng = np.random.default_rng(1)
    n, h = 5, 48
    yc, xc = rng.uniform(18, 30, n), rng.uniform(18, 30, n)
    support = rng.uniform(3, 20, n)
    yy, xx = np.mgrid[:h, :h]
    lim = rng.normal(size=(n, h, h)) * (
        np.hypot(yy - yc[:, None, None], xx - xc[:, None, None]) < support[:, None, None]
    )
    lim = lim.astype(np.float32)
    full = np.fft.irfft2(np.fft.rfft2(lim, s=(2 * h, 2 * h)) ** 2, s=(2 * h, 2 * h))
    reach = np.full(n, 5.0)
    myw = np.round(2 * yc).astype(int)[:, None] + np.arange(-5, 6)[None, :]
    mxw = np.round(2 * xc).astype(int)[:, None] + np.arange(-5, 6)[None, :]
    win = _autocorrelation_window(lim, xc, yc, support, reach, myw, mxw)
    ref = full[np.arange(n)[:, None, None], myw[:, :, None], mxw[:, None, :]]
    np.testing.assert_allclose(win, ref, rtol=1e-4, atol=1e-3 * np.abs(ref).max())


def test_smoothness_background_uses_statmorphs_sky_box():
    import warnings

    import statmorph

    from morphoflow.metrics.morphology import _skybox_smoothness

    gs = render_galaxies(3, size=64, pixel_scale=0.05, seed=11, knot_fraction=(0.0, 0.3), log10_flux=(4.3, 5.0))
    imgs, sig = gs.images[:, 0], gs.noise_sigma
    seg = segment(imgs, sig)
    boxcar, ref = [], []
    for i in range(len(imgs)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m = statmorph.SourceMorphology(
                imgs[i].astype(np.float64), seg[i].astype(np.int32), 1, weightmap=np.full(imgs[i].shape, sig[i])
            )
            boxcar.append(int(0.25 * m.rpetro_circ))
            ref.append(m._sky_smoothness)
    ours = _skybox_smoothness(imgs.astype(np.float32), seg, np.array(boxcar))
    np.testing.assert_allclose(ours, ref, rtol=1e-4)
