"""Oracle chi2 floors of the simulated data set: real GalSim redraws of the galaxies of a simulated file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from morphoflow.config import load_config, merge
from morphoflow.contract import ContractError, GalaxySet, write_galaxies
from morphoflow.data.floors import run_simulation_floors, simulation_floors
from morphoflow.data.simulate import simulate

ROOT = Path(__file__).resolve().parents[1]
torch.set_num_threads(1)


def _config(**simulate_overrides) -> dict:
    # bright, clumpy galaxies, so that the clumps matter against the noise
    simulate = {
        "n_galaxies": 12,
        "chunk_size": 4,
        "catalog": {"mag_min": 20.0, "mag_max": 21.0},
        "knots": {"max_fraction": 0.5},
    }
    overrides = {"simulate": merge(simulate, simulate_overrides)}
    return load_config(ROOT / "config/config.yaml", ROOT / "config/test.yaml", overrides=overrides)


def _fraction(config: dict) -> float:
    return config["autoencoder"]["evaluate"]["footprint_fraction"]


def _subset(gs: GalaxySet, keep: np.ndarray) -> GalaxySet:
    # a "test split": some galaxies of the file, in another order, as preprocess leaves them
    return GalaxySet(
        images=gs.images[keep],
        psf=gs.psf,
        noise_sigma=gs.noise_sigma[keep],
        catalog={k: np.asarray(v)[keep] for k, v in gs.catalog.items()},
        attrs=gs.attrs,
        truth=gs.truth[keep],
        noise_power=gs.noise_power,
    )


@pytest.fixture(scope="module")
def simulated() -> tuple[dict, GalaxySet]:
    config = _config()
    return config, simulate(config, n_threads=1)


def test_exact_model_scores_one_and_clump_free_model_more(simulated):
    config, gs = simulated
    test = _subset(gs, np.array([9, 2, 5, 7, 0, 11, 3]))
    floors = simulation_floors(test, config["simulate"], config["seed"], _fraction(config))
    assert floors["n_galaxies"] == 7
    # the redrawn noiseless image leaves exactly the noise: chi2 per pixel ~ 1
    assert floors["exact"]["chi2_per_pixel_stamp"] == pytest.approx(1.0, abs=0.1)
    assert floors["exact"]["chi2_per_pixel"] == pytest.approx(1.0, abs=0.15)
    # without its clumps the same galaxy misses their light: a higher floor, worst on the footprint
    assert floors["smooth"]["chi2_per_pixel"] > floors["exact"]["chi2_per_pixel"] + 0.5
    assert floors["smooth"]["chi2_per_pixel"] >= floors["smooth"]["chi2_per_pixel_stamp"]


def test_without_clumps_both_oracles_agree():
    config = _config(n_galaxies=4, knots={"n_knots": 0})
    floors = simulation_floors(simulate(config, n_threads=1), config["simulate"], config["seed"], _fraction(config))
    assert floors["smooth"] == floors["exact"]


def test_other_seed_is_refused_naming_the_file(simulated, tmp_path):
    config, gs = simulated
    with pytest.raises(ContractError, match=r"test\.h5: galaxy id 0 .*another config or seed"):
        simulation_floors(gs, config["simulate"], config["seed"] + 1, _fraction(config), name="test.h5")
    no_truth = GalaxySet(images=gs.images, psf=gs.psf, noise_sigma=gs.noise_sigma, catalog=gs.catalog, attrs=gs.attrs)
    with pytest.raises(ContractError, match="'truth' is missing"):
        simulation_floors(no_truth, config["simulate"], config["seed"], _fraction(config))


def test_run_simulation_floors_writes_json(simulated, tmp_path):
    config, gs = simulated
    write_galaxies(tmp_path / "test.h5", gs)
    rule_config = {
        "simulate": config["simulate"],
        "seed": config["seed"],
        "autoencoder": {"evaluate": {"footprint_fraction": _fraction(config)}},
    }
    out = run_simulation_floors(test=tmp_path / "test.h5", floors=tmp_path / "floors.json", config=rule_config)
    assert json.loads((tmp_path / "floors.json").read_text()) == out
    assert out["footprint_fraction"] == 0.1
