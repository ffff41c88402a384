"""The detail level of the two-level autoencoder: room for clumps, and substructure that changes with the seed.

A tiny two-level model is trained, through the rule's entry point, on 32 simulated
clumpy galaxies (real GalSim draws with galsim.RandomKnots clumps); train and val are the same galaxies, so
this measures capacity (overfitting), not generalisation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from morphoflow.autoencoder.detail import DetailLevel
from morphoflow.autoencoder.evaluate import reconstruct_set
from morphoflow.autoencoder.evaluate import test_metrics as stage1_figures
from morphoflow.autoencoder.io import load_autoencoder
from morphoflow.autoencoder.train import _warn_if_collapsed, run_train_autoencoder
from morphoflow.config import load_config
from morphoflow.contract import write_galaxies
from morphoflow.data.simulate import simulate
from morphoflow.sampling import decode_latents

ROOT = Path(__file__).resolve().parents[1]
STEPS = {"batch_size": 8, "warmup_steps": 20, "patience": 1000, "checkpoint_every": 1000, "device": "cpu"}


def _config(epochs_global: int, epochs_detail: int) -> dict:
    return load_config(
        ROOT / "config/config.yaml",
        ROOT / "config/test.yaml",
        overrides={
            # galaxies bright enough to show their clumps (peak S/N ~ 20-60), half their disk light in clumps
            "simulate": {
                "n_galaxies": 32,
                "catalog": {"mag_min": 22.5, "mag_max": 23.0},
                "knots": {"max_fraction": 0.5},
            },
            "autoencoder": {
                "beta": 0.1,
                "train": dict(STEPS, max_epochs=epochs_global, lr=0.003),
                "detail": {"width": 32, "blocks": 1, "train": dict(STEPS, max_epochs=epochs_detail, lr=0.003)},
            },
        },
    )


@pytest.fixture(scope="module")
def overfit(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("detail")
    config = _config(epochs_global=80, epochs_detail=200)
    gs = simulate(config)
    gs.attrs["norm_scale"] = float(np.median(gs.noise_sigma))
    write_galaxies(tmp / "train.h5", gs)
    run_train_autoencoder(
        train=tmp / "train.h5",
        val=tmp / "train.h5",
        model=tmp / "model.pt",
        history=tmp / "history.csv",
        checkpoints=tmp / "ckpt",
        config=config,
        progress=False,
    )
    net, meta = load_autoencoder(tmp / "model.pt")
    return gs, net, meta


def test_detail_level_fits_clumps_the_smooth_level_cannot(overfit):
    gs, net, meta = overfit
    assert isinstance(net.detail, DetailLevel)
    fraction = load_config()["autoencoder"]["evaluate"]["footprint_fraction"]
    two_level = stage1_figures(reconstruct_set(net, meta, gs), gs, fraction, 2.0)["test_chi2_per_pixel"]
    net.detail, level = None, net.detail
    smooth = stage1_figures(reconstruct_set(net, meta, gs), gs, fraction, 2.0)["test_chi2_per_pixel"]
    net.detail = level
    # the clumps are what the smooth level misses: with the detail map the footprint chi2 reaches the noise
    assert two_level <= 1.3 < smooth


def test_one_global_latent_different_seeds_different_substructure_same_flux(overfit):
    gs, net, meta = overfit
    x = torch.from_numpy(gs.images[:1] / meta["norm_scale"]).float()
    with torch.no_grad():
        z = net.encode(x)[0].numpy()
    seeds = list(range(11, 19))
    images = decode_latents(net, np.repeat(z, 8, axis=0), meta["norm_scale"], seeds=seeds)
    again = decode_latents(net, np.repeat(z, 8, axis=0), meta["norm_scale"], seeds=seeds)
    np.testing.assert_array_equal(images, again)  # seeded: reproducible
    flux = images.sum(axis=(1, 2, 3))
    # the same galaxy (total flux within a few percent: the knots carry up to half the light here) ...
    assert flux.std() / flux.mean() < 0.05  # measured 3.0 % (8 draws)
    for a, b in ((0, 1), (1, 2), (2, 3)):  # ... with other substructure: draws differ by far more than rounding
        assert np.abs(images[a] - images[b]).sum() / flux.mean() > 0.01


def test_a_collapsed_detail_map_is_reported_in_the_log(caplog):
    used = pd.DataFrame({"epoch": [0, 1], "val_kl": [250.0, 58.0]})
    collapsed = pd.DataFrame({"epoch": [0, 1], "val_kl": [250.0, 0.07]})
    with caplog.at_level("WARNING", logger="morphoflow.autoencoder.train"):
        _warn_if_collapsed(used)
        assert not caplog.records
        _warn_if_collapsed(collapsed)
    assert len(caplog.records) == 1 and "collapsed" in caplog.records[0].getMessage()
