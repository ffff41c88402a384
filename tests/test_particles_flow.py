"""Star-particle flow: leave-galaxies-out split, own-context sampling, learning rate, metrics, rule chain.

One module fixture simulates a few dozen small galaxies, cleans them, writes stage-1 latent files
(train/val/test by id, as preprocess does; the latent values are fixtures, the autoencoder is tested
elsewhere) and trains the two flow variants for a few epochs with the real training engine.
"""

from __future__ import annotations

import json

import h5py
import numpy as np
import pandas as pd
import pytest
import torch

from morphoflow.contract import ContractError, write_catalog
from morphoflow.flow import load_flow
from morphoflow.particles import metrics as pm
from morphoflow.particles.dataset import build_table, galaxy_contexts, read_latents, stars_to_target, target_to_stars
from morphoflow.particles.io import STAR_COLUMNS, read_stars
from morphoflow.particles.pipeline import (
    clean_particles,
    particle_metrics,
    plot_particles,
    sample_galaxies,
    sample_particle_flow,
    simulate_particles,
    train_particle_flow,
)

LR = 3e-3
CFG = {
    "context": ["log_mstar", "age_median_gyr", "age_p10_gyr", "log_mean_z"],
    "max_stars_per_galaxy": None,
    "flow": {
        "kind": "nsf", "transforms": 2, "hidden_features": [32, 32], "bins": 6, "passes": 2,
        "train": {"max_epochs": 4, "batch_size": 256, "lr": LR, "warmup_steps": 20, "patience": 4,
                  "device": "cpu", "bf16": False, "checkpoint_every": 1000},
    },
}  # fmt: skip


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    torch.set_num_threads(1)
    d = tmp_path_factory.mktemp("particles")
    simulate_particles(d / "raw_stars.h5", 11, {"n_galaxies": 24, "n_stars_range": [250, 450], "log_mstar_range": [9.0, 11.0]})
    clean_particles(d / "raw_stars.h5", d / "stars.h5", d / "cleaning.json", {"n_min": 50})
    ss = read_stars(d / "stars.h5")
    order = np.argsort(ss.catalog["log_mstar"])
    # Held out: the 2nd lightest and 2nd heaviest galaxy (very different contexts, inside the training range).
    test = {int(ss.ids[order[1]]), int(ss.ids[order[-2]])}
    val = {int(ss.ids[order[5]]), int(ss.ids[order[12]])}
    rng = np.random.default_rng(0)
    split_ids = {
        "test": np.array(sorted(test)),
        "val": np.array(sorted(val)),
        "train": np.array([int(i) for i in ss.ids if int(i) not in test | val]),
    }
    for split, ids in split_ids.items():
        with h5py.File(d / f"{split}.h5", "w") as f:
            f["z_mean"] = rng.normal(size=(len(ids), 3)).astype(np.float32)
            write_catalog(f.create_group("catalog"), {"id": ids})
    for v in ("latent", "global"):
        train_particle_flow(d / "stars.h5", d / "train.h5", d / "val.h5", d / f"flow_{v}.pt", d / f"history_{v}.csv",
                            v, CFG, 11, d / f"work_{v}", progress=False)  # fmt: skip
        sample_particle_flow(d / f"flow_{v}.pt", d / "stars.h5", d / "test.h5", d / f"samples_{v}.h5", 11, batch_size=4096)
    return d, ss, split_ids


def test_held_out_galaxies_never_reach_training(run):
    d, ss, split = run
    for v in ("latent", "global"):
        meta = load_flow(d / f"flow_{v}.pt").meta
        assert set(meta["train_ids"]) == set(split["train"].tolist())
        assert not set(meta["train_ids"]) & set(split["test"].tolist())
        assert not set(meta["val_ids"]) & set(split["test"].tolist())
        assert meta["n_train_stars"] == int(sum(ss.counts[np.isin(ss.ids, split["train"])]))
    # The training table holds exactly the training galaxies' stars.
    ids, z = read_latents(d / "train.h5")
    rows, ctx, cols = galaxy_contexts(ss, ids, z, "latent", CFG["context"])
    _, _, gal = build_table(ss, rows, ctx)
    assert set(np.unique(gal).tolist()) == set(split["train"].tolist())
    assert cols[-3:] == ["z0", "z1", "z2"]
    # Sampling a "held-out" file that contains training galaxies is refused.
    with pytest.raises(ValueError, match="seen in flow training"):
        sample_particle_flow(d / "flow_global.pt", d / "stars.h5", d / "train.h5", d / "leak.h5", 11)


def test_each_held_out_galaxy_is_sampled_with_its_own_context(run):
    d, ss, split = run
    samples = read_stars(d / "samples_global.h5")
    assert list(samples.ids) == sorted(split["test"].tolist())
    row = {int(i): r for r, i in enumerate(ss.ids)}
    truth = [stars_to_target(ss.galaxy(row[int(i)]), ss.columns) for i in samples.ids]
    sampled = [stars_to_target(samples.galaxy(g), samples.columns) for g in range(2)]
    assert [len(s) for s in sampled] == [len(t) for t in truth]  # as many stars as the truth
    scale = load_flow(d / "flow_global.pt").target_std.std
    own = [pm.sliced_wasserstein(sampled[g] / scale, truth[g] / scale) for g in range(2)]
    swapped = [pm.sliced_wasserstein(sampled[g] / scale, truth[1 - g] / scale) for g in range(2)]
    assert own[0] < swapped[0] and own[1] < swapped[1], (own, swapped)
    # Velocity scale follows the galaxy's mass: the heavier galaxy's sampled stars move faster.
    heavy = int(np.argmax([ss.catalog["log_mstar"][row[int(i)]] for i in samples.ids]))
    speed = [np.linalg.norm(s[:, 3:6], axis=1).mean() for s in sampled]
    assert speed[heavy] > speed[1 - heavy]


def test_sampling_is_reproducible_and_per_galaxy(run):
    d, ss, split = run
    cflow = load_flow(d / "flow_global.pt")
    rows = [int(np.flatnonzero(ss.ids == i)[0]) for i in split["test"]]
    ctx = np.stack([[ss.catalog[k][r] for k in CFG["context"]] for r in rows]).astype(np.float32)
    both = sample_galaxies(cflow, ss.ids[rows], ctx, np.array([300, 200]), seed=11, batch_size=128)
    alone = sample_galaxies(cflow, ss.ids[rows[1:]], ctx[1:], np.array([200]), seed=11, batch_size=4096)
    np.testing.assert_allclose(both[1], alone[0], rtol=1e-5, atol=1e-5)
    stored = read_stars(d / "samples_global.h5")
    again = target_to_stars(sample_galaxies(cflow, ss.ids[rows], ctx, ss.counts[rows], seed=11)[0])
    np.testing.assert_allclose(again, stored.galaxy(0), rtol=1e-4, atol=1e-4)
    assert stored.columns == STAR_COLUMNS


def test_learning_rate_stays_sane_over_the_run(run):
    d, _, _ = run
    for v in ("latent", "global"):
        hist = pd.read_csv(d / f"history_{v}.csv")
        lr = hist["lr"].to_numpy()
        assert len(hist) >= 2 and np.isfinite(lr).all()
        assert (lr > 0).all() and (lr <= LR * (1 + 1e-6)).all()
        assert lr[-1] < lr.max()  # cosine decay after the warm-up
        assert lr[-1] <= 0.05 * LR  # ends near lr * min_lr_ratio
        assert np.isfinite(hist["val_loss"]).all()
        assert hist["train_loss"].iloc[-1] < hist["train_loss"].iloc[0]  # it learns


def test_metrics_and_plots_files(run, tmp_path):
    d, ss, split = run
    samples = {v: d / f"samples_{v}.h5" for v in ("latent", "global")}
    plots = {k: tmp_path / f"particles_{k}.png" for k in ("corner", "maps", "hist")}
    plot_particles(d / "stars.h5", samples, plots)
    assert all(p.stat().st_size > 1000 for p in plots.values())
    ae = tmp_path / "ae.json"
    ae.write_text(json.dumps({"test_mse": 0.5}))
    out = particle_metrics(
        d / "stars.h5", samples, {v: d / f"flow_{v}.pt" for v in samples},
        {s: d / f"{s}.h5" for s in ("train", "val", "test")}, d / "cleaning.json", tmp_path / "metrics.json", 11,
        {"n_proj": 16, "max_n": 200, "c2st_steps": 30}, autoencoder_metrics=ae, plot_paths=[str(p) for p in plots.values()],
    )  # fmt: skip
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    assert on_disk["autoencoder"] == {"test_mse": 0.5}
    p = on_disk["particles"]
    assert on_disk["format_version"] == 1 and on_disk["data"]["n_test"] == 2 and on_disk["data"]["n_train"] == len(split["train"])
    assert on_disk["data"]["n_galaxies"] == len(ss) and on_disk["data"]["cleaning"]["galaxies_out"] == len(ss)
    assert set(p["latent_vs_global"]) == {"w1_mean", "swd", "mmd", "c2st_auc"}
    for v in ("latent", "global"):
        s = p["variants"][v]
        assert s["n_galaxies"] == 2
        assert set(s["model"]["w1_per_dim"]) == {"x", "y", "z", "vx", "vy", "vz", "logZ", "feh", "ofe", "age"}
        assert all(np.isfinite(s[t][m]) for t in ("model", "floor") for m in pm.METRICS)
        # A few-epoch flow is no better than the data's own half-vs-half floor.
        assert s["model"]["swd"] >= 0.8 * s["floor"]["swd"]
    assert p["cleaning"]["galaxies_out"] == len(ss)
    assert out["particles"]["per_galaxy"]["latent"][0]["id"] in split["test"]


def test_two_sample_metrics_separate_distributions():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(600, 4)), rng.normal(size=(600, 4))
    c = rng.normal(size=(600, 4)) + 1.0
    assert pm.sliced_wasserstein(a, b) < 0.2 < pm.sliced_wasserstein(a, c)
    assert abs(pm.mmd_rbf(a, b)) < 0.01 < pm.mmd_rbf(a, c)
    assert pm.c2st_auc(a, c, seed=0, steps=100) > 0.75
    assert abs(pm.c2st_auc(a, b, seed=0, steps=100) - 0.5) < 0.12
    np.testing.assert_allclose(pm.w1_per_dim(a, a + 0.5), 0.5, atol=1e-9)


def test_latent_file_errors_name_the_file(tmp_path):
    with h5py.File(tmp_path / "lat.h5", "w") as f:
        f["z_mean"] = np.zeros((3, 2), np.float32)
    with pytest.raises(ContractError, match=r"lat\.h5.*catalog/id"):
        read_latents(tmp_path / "lat.h5")
