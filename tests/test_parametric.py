"""The parametric baseline of the simulated data set: GalSim's clump-free profile at each galaxy's catalog row."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from _cosmos_fixture import make_cosmos_tarball
from morphoflow.autoencoder.forward import fft_convolve
from morphoflow.config import load_config
from morphoflow.contract import ContractError, read_galaxies, write_galaxies
from morphoflow.data.cosmos import run_cosmos
from morphoflow.data.floors import simulation_floors
from morphoflow.data.simulate import simulate
from morphoflow.parametric import parametric_set, parametric_unavailable
from morphoflow.sampling import run_sample

ROOT = Path(__file__).resolve().parents[1]
torch.set_num_threads(1)


@pytest.fixture(scope="module")
def simulated():
    # bright, clumpy galaxies: the clumps matter against the noise, so the smooth model is visibly worse
    overrides = {"simulate": {"n_galaxies": 10, "chunk_size": 5, "catalog": {"mag_min": 20.0, "mag_max": 21.0},
                              "knots": {"max_fraction": 0.5}}}  # fmt: skip
    config = load_config(ROOT / "config/config.yaml", ROOT / "config/test.yaml", overrides=overrides)
    return config, simulate(config, n_threads=1)


def test_parametric_baseline_reproduces_the_smooth_floor(simulated, tmp_path):
    config, gs = simulated
    write_galaxies(tmp_path / "test.h5", gs)
    run_sample(test=tmp_path / "test.h5", autoencoder=None, samples=tmp_path / "p.h5", method="parametric",
               config=config)  # fmt: skip
    par = read_galaxies(tmp_path / "p.h5")
    assert np.array_equal(par.ids, gs.ids) and par.attrs["source"] == "parametric"
    assert np.array_equal(par.noise_sigma, gs.noise_sigma) and par.catalog["mag"] == pytest.approx(gs.catalog["mag"])
    floors = simulation_floors(gs, config["simulate"], config["seed"], 0.1)
    sigma = gs.noise_sigma.reshape(-1, 1, 1, 1)
    # data - parametric image = (data - smooth oracle) + an independent noise field of variance sigma^2
    chi2 = float((((gs.images - par.images) / sigma) ** 2).mean())
    assert chi2 - 1.0 == pytest.approx(floors["smooth"]["chi2_per_pixel_stamp"], rel=0.03)
    assert chi2 - 1.0 > 5 * floors["exact"]["chi2_per_pixel_stamp"]  # the clumps are missing
    # PSF-free truth keeps the flux of the catalog row (up to light off the stamp, which the clumps change)
    assert par.truth.sum(axis=(1, 2, 3)) == pytest.approx(gs.truth.sum(axis=(1, 2, 3)), rel=0.03)
    assert par.truth.sum() == pytest.approx(gs.truth.sum(), rel=0.01)


def test_parametric_is_unavailable_without_profile_parameters(simulated):
    config, gs = simulated
    other = {**config, "data": {**config["data"], "source": "stamps"}}
    assert parametric_unavailable(config) is None and "stamps" in parametric_unavailable(other)
    with pytest.raises(ValueError, match="unavailable"):
        parametric_set(gs, other)
    with pytest.raises(ValueError, match="tarball"):
        parametric_set(gs, {**config, "data": {**config["data"], "source": "cosmos"}})
    wrong = {**config, "seed": config["seed"] + 1}
    with pytest.raises(ContractError, match="another config or seed"):
        parametric_set(gs, wrong)


def test_cosmos_parametric_fits_match_the_galaxies(tmp_path):
    # a COSMOS-format sample whose galaxies are Sérsic profiles and whose fits are their true parameters
    tarball = make_cosmos_tarball(tmp_path / "src", n=6)
    config = load_config(
        overrides={
            "seed": 7,
            "data": {"source": "cosmos"},
            "cosmos": {"stamp_size": 48},
            "download": {"sample": "25.2"},
        }
    )
    rule_config = {"cosmos": config["cosmos"], "seed": 7, "download": config["download"]}
    run_cosmos(tarball=tarball, raw=tmp_path / "raw.h5", config=rule_config)
    run_sample(test=tmp_path / "raw.h5", autoencoder=None, samples=tmp_path / "p.h5", method="parametric",
               config=config, cosmos=tarball)  # fmt: skip
    real, par = read_galaxies(tmp_path / "raw.h5"), read_galaxies(tmp_path / "p.h5")
    assert np.array_equal(par.ids, real.ids) and len(par) >= 4
    # same light as the observed galaxy (its own fit), drawn through the galaxy's PSF with its noise model
    flux_real, flux_par = real.images.sum(axis=(1, 2, 3)), par.truth.sum(axis=(1, 2, 3))
    assert flux_par == pytest.approx(flux_real, rel=0.25)  # the real stamp sums hold noise
    assert flux_par.sum() == pytest.approx(flux_real.sum(), rel=0.1)
    sigma = real.noise_sigma.reshape(-1, 1, 1, 1)
    model = fft_convolve(torch.as_tensor(par.truth), torch.as_tensor(real.psf)).numpy()  # fit ⊛ the galaxy's PSF
    assert ((par.images - model) / sigma).std(axis=(1, 2, 3)) == pytest.approx(1.0, abs=0.1)  # its noise level
    # the fits are bulge + disk or single Sérsic approximations of the galaxies: residuals of a few sigma at
    # 100+ sigma peaks, far below those against another galaxy
    resid = ((real.images - model) / sigma).std(axis=(1, 2, 3))
    other = ((real.images - model[::-1]) / sigma).std(axis=(1, 2, 3))
    assert np.median(resid) < 3.0 and resid.mean() < 0.5 * other.mean()
