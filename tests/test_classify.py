"""Powered C2ST and HSM shape biases on real GalSim galaxies: a wrong generator is caught, real halves are not."""

from __future__ import annotations

import galsim
import numpy as np
import pytest
import torch

from morphoflow.metrics.classify import auc_interval, powered_c2st, prepare
from morphoflow.metrics.distances import split_halves
from morphoflow.metrics.moments import measure_moments
from morphoflow.metrics.shapes import bias_pct, shape_biases
from morphoflow.seeding import item_rng

torch.set_num_threads(1)
PSF = galsim.Gaussian(fwhm=0.15)
NOISE = 5.0


def _galaxies(ids: np.ndarray, scale: float = 1.0) -> np.ndarray:
    r"""Sheared exponential disks (32 x 32 stamps, 0.07"), white noise; ``scale`` x the half-light radius."""
    out = np.empty((len(ids), 32, 32), np.float32)
    for k, gid in enumerate(ids):
        rng = item_rng(3, int(gid), "c2st-test")
        gal = galsim.Exponential(half_light_radius=scale * rng.uniform(0.12, 0.22), flux=10 ** rng.uniform(3.5, 4.5))
        gal = gal.shear(q=rng.uniform(0.3, 1.0), beta=rng.uniform(0, np.pi) * galsim.radians)
        img = galsim.Convolve(gal, PSF).drawImage(nx=32, ny=32, scale=0.07).array
        out[k] = img + rng.normal(0.0, NOISE, img.shape)
    return out


@pytest.fixture(scope="module")
def sets():
    train, test = np.arange(500), np.arange(10_000, 10_400)
    return {
        "train_ids": train,
        "test_ids": test,
        "train": _galaxies(train),
        "test": _galaxies(test),
        "train_big": _galaxies(train, 1.5),  # a wrong generator: every galaxy 1.5 x larger
        "test_big": _galaxies(test, 1.5),
    }


def test_powered_c2st_catches_a_generator_of_too_large_galaxies(sets):
    x = {k: prepare(v, NOISE) for k, v in sets.items() if not k.endswith("ids")}
    bright = np.zeros(len(sets["test_ids"]), bool)
    bright[::3] = True
    res = powered_c2st(
        x["train"], x["train_big"], x["test"], x["test_big"], subsets={"bright": (bright, bright)}, epochs=3
    )
    assert res["all"]["auc"] >= 0.8
    lo, hi = res["all"]["interval"]
    assert lo <= res["all"]["auc"] <= hi and hi - lo < 0.1
    assert res["all"]["n_train"] == 500 and res["all"]["n_test"] == 800
    assert res["bright"]["n_test"] == 2 * bright.sum() and res["bright"]["auc"] >= 0.7


def test_powered_c2st_of_two_halves_of_one_real_set_reads_one_half(sets):
    x_train, x_test = prepare(sets["train"], NOISE), prepare(sets["test"], NOISE)
    h1, h2 = split_halves(sets["train_ids"], salt="metrics-train-half")
    a, b = split_halves(sets["test_ids"])
    res = powered_c2st(x_train[h1], x_train[h2], x_test[a], x_test[b], epochs=3)["all"]
    assert abs(res["auc"] - 0.5) <= 0.08
    assert res["interval"][0] <= 0.5 <= res["interval"][1]


def test_prepare_crops_the_centre_and_scales_by_sigma():
    img = np.zeros((2, 48, 48), np.float32)
    img[:, 24, 24] = 10.0
    x = prepare(img, np.array([1.0, 10.0]), crop=32)
    assert x.shape == (2, 1, 32, 32)
    assert x[0, 0, 16, 16] == pytest.approx(np.arcsinh(10.0)) and x[1, 0, 16, 16] == pytest.approx(np.arcsinh(1.0))


def test_auc_interval_of_separated_scores():
    e = auc_interval(np.zeros(20), np.ones(30), n_boot=50)
    assert e["auc"] == 1.0 and e["interval"] == [1.0, 1.0] and e["n_test"] == 50


def test_shape_biases_measure_a_larger_generator(sets):
    real, big = measure_moments(sets["test"][:120]), measure_moments(sets["test_big"][:120])
    out = shape_biases(real, big, n_boot=100)
    # HSM sigma of PSF-convolved galaxies grows by less than 1.5 x but clearly; |e| grows (the PSF rounds them less)
    assert 20 < out["sigma"]["bias_pct"] < 50 and out["sigma"]["error_pct"] < 3
    assert out["e_abs"]["bias_pct"] > 0 and out["sigma"]["n"] <= 120
    same = shape_biases(real, real, n_boot=100)
    assert same["sigma"]["bias_pct"] == 0 and same["e_abs"]["error_pct"] == 0
    assert np.isnan(bias_pct(np.array([1.0]), np.array([2.0]))["bias_pct"])


def test_auc_interval_of_a_class_too_small_to_score_has_no_auc():
    e = auc_interval(np.zeros(1), np.ones(5), n_boot=10)
    assert e == {"too_small": True, "n_test": 6}
