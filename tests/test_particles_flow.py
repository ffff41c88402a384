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

from morphoflow.autoencoder.latents import read_latents
from morphoflow.config import load_config
from morphoflow.contract import ContractError, write_catalog
from morphoflow.flow import load_flow
from morphoflow.particles import metrics as pm
from morphoflow.particles.dataset import build_table, galaxy_contexts, stars_to_target, target_to_stars
from morphoflow.particles.io import STAR_COLUMNS, read_stars
from morphoflow.particles.pipeline import (
    load_split,
    run_particles_clean,
    run_particles_metrics,
    run_particles_plots,
    run_particles_sample,
    run_particles_simulate,
    run_particles_train,
    sample_stars,
)

LR = 3e-3
#: The validated config of these runs (schema defaults + a small, short-trained flow), as ``pick`` builds it.
CONFIG = load_config(overrides={
    "seed": 11,
    "particles": {
        "simulate": {"n_galaxies": 24, "n_stars_range": [250, 450], "log_mstar_range": [9.0, 11.0]},
        "clean": {"n_min": 50},
        "context": ["log_mstar", "age_median_gyr", "age_p10_gyr", "log_mean_z"],
        "max_stars_per_galaxy": None,
        "flow": {
            "kind": "nsf", "transforms": 2, "hidden_features": [32, 32], "bins": 6, "passes": 2,
            "train": {"max_epochs": 4, "batch_size": 256, "lr": LR, "warmup_steps": 20, "patience": 4,
                      "device": "cpu", "bf16": False, "checkpoint_every": 1000},
        },
        "sample": {"batch_size": 4096},
        "metrics": {"n_proj": 16, "max_n": 200, "c2st_steps": 30},
    },
})  # fmt: skip
CFG = CONFIG["particles"]


def pick(*keys: str) -> dict:
    r"""The ``config`` argument of a ``run_particles_*`` function: ``particles.<key>`` sections and ``seed``."""
    out: dict = {}
    for key in keys:
        if key == "seed":
            out["seed"] = CONFIG["seed"]
        else:
            out.setdefault("particles", {})[key] = CFG[key]
    return out


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    torch.set_num_threads(1)
    d = tmp_path_factory.mktemp("particles")
    run_particles_simulate(raw_stars=d / "raw_stars.h5", config=pick("simulate", "seed"))
    run_particles_clean(
        raw_stars=d / "raw_stars.h5", stars=d / "stars.h5", cleaning=d / "cleaning.json", config=pick("clean")
    )
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
        run_particles_train(
            stars=d / "stars.h5",
            train=d / "train.h5",
            val=d / "val.h5",
            model=d / f"flow_{v}.pt",
            history=d / f"history_{v}.csv",
            variant=v,
            checkpoints=d / f"work_{v}",
            config=pick("context", "max_stars_per_galaxy", "flow", "seed"),
            progress=False,
        )
        run_particles_sample(
            model=d / f"flow_{v}.pt",
            stars=d / "stars.h5",
            test=d / "test.h5",
            samples=d / f"samples_{v}.h5",
            config=pick("sample", "seed"),
        )
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
    lt = read_latents(d / "train.h5")
    rows, ctx, cols = galaxy_contexts(ss, lt.ids, lt.z_mean, "latent", CFG["context"])
    _, _, gal = build_table(ss, rows, ctx)
    assert set(np.unique(gal).tolist()) == set(split["train"].tolist())
    assert cols[-3:] == ["z0", "z1", "z2"]
    # Sampling a "held-out" file that contains training galaxies is refused.
    with pytest.raises(ValueError, match="seen in flow training"):
        run_particles_sample(
            model=d / "flow_global.pt",
            stars=d / "stars.h5",
            test=d / "train.h5",
            samples=d / "leak.h5",
            config=pick("sample", "seed"),
        )


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
    both = sample_stars(cflow, ss.ids[rows], ctx, np.array([300, 200]), seed=11, batch_size=128)
    alone = sample_stars(cflow, ss.ids[rows[1:]], ctx[1:], np.array([200]), seed=11, batch_size=4096)
    np.testing.assert_allclose(both[1], alone[0], rtol=1e-5, atol=1e-5)
    stored = read_stars(d / "samples_global.h5")
    again = target_to_stars(sample_stars(cflow, ss.ids[rows], ctx, ss.counts[rows], seed=11, batch_size=65536)[0])
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
    run_particles_plots(stars=d / "stars.h5", samples=samples, **plots)
    assert all(p.stat().st_size > 1000 for p in plots.values())
    ae = tmp_path / "ae.json"
    ae.write_text(json.dumps({"test_mse": 0.5}))
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "particles_train_latent.tsv").write_text("s\th:m:s\n3.5\t0:00:03\n")
    (tmp_path / "bench" / "particles_metrics.tsv").write_text("s\n9.0\n")  # the rule's own: left out
    out = run_particles_metrics(
        stars=d / "stars.h5", samples=samples, models={v: d / f"flow_{v}.pt" for v in samples},
        train=d / "train.h5", val=d / "val.h5", test=d / "test.h5", cleaning=d / "cleaning.json",
        plots=[str(p) for p in plots.values()], autoencoder=ae, metrics=tmp_path / "metrics.json",
        config=pick("variants", "metrics", "seed"), benchmarks=tmp_path / "bench",
    )  # fmt: skip
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    assert on_disk == out
    assert on_disk["autoencoder"] == {"test_mse": 0.5}
    assert on_disk["timing_s"] == {"particles_train_latent": 3.5}
    p = on_disk["particles"]
    assert p["plots"] == [str(f) for f in plots.values()]
    assert (
        on_disk["format_version"] == 2  # one metrics.json schema for both modes
        and on_disk["data"]["n_test"] == 2
        and on_disk["data"]["n_train"] == len(split["train"])
    )
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
    assert pm.particle_c2st_auc(a, c, seed=0, steps=100) > 0.75
    assert abs(pm.particle_c2st_auc(a, b, seed=0, steps=100) - 0.5) < 0.12
    np.testing.assert_allclose(pm.w1_per_dim(a, a + 0.5), 0.5, atol=1e-9)


def test_latent_file_errors_name_the_file(run, tmp_path):
    _, ss, _ = run
    with h5py.File(tmp_path / "lat.h5", "w") as f:
        f["z_mean"] = np.zeros((3, 2), np.float32)
        write_catalog(f.create_group("catalog"), {"mag": np.zeros(3)}, {"mag": "mag(AB)"})
    with pytest.raises(ContractError, match=r"lat\.h5.*catalog/id"):
        load_split(ss, tmp_path / "lat.h5", "latent", CFG["context"])
    with pytest.raises(ContractError, match=r"missing\.h5"):
        load_split(ss, tmp_path / "missing.h5", "latent", CFG["context"])
