"""Stage 2: the conditional flow on a generic (target, context) table."""

from __future__ import annotations

import json
import warnings

import h5py
import numpy as np
import pytest
import torch

from morphoflow.autoencoder.latents import read_latents
from morphoflow.checkpoint import ModelFileError
from morphoflow.config import load_config
from morphoflow.contract import ContractError
from morphoflow.flow import (
    KINDS,
    ConditionalFlow,
    OutOfRangeError,
    OutOfRangeWarning,
    Standardizer,
    build_flow,
    flow_hyper,
    load_flow,
    nll_per_dim,
    save_flow,
    train_conditional_flow,
)
from morphoflow.flow.evaluate import run_evaluate_flow
from morphoflow.flow.train import run_train_flow

torch.set_num_threads(1)

TRAIN = dict(
    max_epochs=1,
    batch_size=64,
    lr=3e-3,
    weight_decay=0.0,
    warmup_steps=5,
    patience=5,
    checkpoint_every=1000,
    device="cpu",
    bf16=False,
)


def flow_config(train: dict | None = None, **keys) -> dict:
    r"""A validated ``flow`` section: ``keys`` and :data:`TRAIN` updated by ``train``, the rest from the schema."""

    return load_config(overrides={"flow": dict(keys, train=dict(TRAIN, **(train or {})))})["flow"]


def synthetic(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    r"""Target (n, 2) = f(context) + noise, with known conditional mean and spread."""

    rng = np.random.default_rng(seed)
    c = rng.uniform(-1.0, 1.0, size=(n, 2)).astype(np.float32)
    mean = np.stack([2.0 * c[:, 0] + 1.0, c[:, 0] - c[:, 1]], axis=-1)
    t = mean + np.array([0.3, 0.25]) * rng.standard_normal((n, 2))
    return t.astype(np.float32), c


def test_flow_learns_conditional_mean_and_spread(tmp_path):
    t, c = synthetic(3000, 0)
    vt, vc = synthetic(500, 1)
    cfg = flow_config(
        dict(max_epochs=25, batch_size=128, lr=5e-3, warmup_steps=20),
        kind="nsf",
        transforms=2,
        hidden_features=[32, 32],
        bins=8,
        passes=2,
    )
    flow = train_conditional_flow(
        t, c, vt, vc, cfg, 0, tmp_path / "work", tmp_path / "history.csv", context_columns=["a", "b"], progress=False
    )
    assert (tmp_path / "history.csv").exists()

    # At two test conditions, 2000 draws: mean and spread match the truth.
    for a, b in [(0.5, -0.5), (-0.6, 0.2)]:
        ctx = np.tile(np.array([[a, b]], np.float32), (2000, 1))
        z = flow.sample(ctx, seeds=np.arange(2000))
        assert z.shape == (2000, 2) and np.isfinite(z).all()
        np.testing.assert_allclose(z.mean(0), [2 * a + 1, a - b], atol=0.08)
        np.testing.assert_allclose(z.std(0), [0.3, 0.25], rtol=0.25)

    # NLL: better than a context-free Gaussian on the standardised target.
    tt, tc = synthetic(500, 2)
    nll = nll_per_dim(flow, tt, tc)
    assert nll < 1.4189 - 0.5, nll  # 0.5 ln(2 pi e) is the unconditional Gaussian's NLL per dim


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_kind_trains_and_samples(tmp_path, kind):
    t, c = synthetic(128, 3)
    cfg = flow_config(kind=kind, hidden_features=[16], transforms=2)
    if kind == "cnf":
        cfg = flow_config(kind=kind, hidden_features=[16], atol=1e-4, rtol=1e-3)
    flow = train_conditional_flow(
        t, c, t[:32], c[:32], cfg, 0, tmp_path, None, context_columns=["a", "b"], progress=False
    )
    assert flow.kind == kind
    z = flow.sample(c[:5], seeds=range(5))
    assert z.shape == (5, 2) and np.isfinite(z).all()
    assert np.isfinite(nll_per_dim(flow, t[:16], c[:16]))


def test_sampling_is_seeded_per_item():
    torch.manual_seed(0)
    flow = ConditionalFlow(
        "nsf",
        3,
        ["a"],
        dict(transforms=2, hidden_features=[8]),
        Standardizer([0.0] * 3, [1.0] * 3),
        Standardizer([0.0], [1.0]),
        {"a": (-1, 1)},
    )
    ctx = np.linspace(-1, 1, 9, dtype=np.float32)[:, None]
    seeds = np.arange(100, 109)
    full = flow.sample(ctx, seeds)
    np.testing.assert_array_equal(full, flow.sample(ctx, seeds))  # same seeds -> identical
    # an item's sample does not depend on its batch
    np.testing.assert_allclose(flow.sample(ctx[4:5], seeds[4:5]), full[4:5], atol=1e-5)
    np.testing.assert_allclose(flow.sample(ctx, seeds, batch_size=2), full, atol=1e-5)
    assert not np.allclose(flow.sample(ctx, seeds + 1), full)


def test_build_flow_rejects_bad_kind_and_hyper():
    with pytest.raises(ValueError, match="unknown flow kind 'glow'"):
        build_flow("glow", 2, 1)
    with pytest.raises(ValueError, match=r"'cnf' does not take.*bins"):
        build_flow("cnf", 2, 1, bins=8)


def test_out_of_range_warn_and_error():
    flow = ConditionalFlow(
        "maf",
        2,
        ["mag", "redshift"],
        dict(transforms=1, hidden_features=[8]),
        Standardizer([0.0] * 2, [1.0] * 2),
        Standardizer([22.0, 1.0], [1.0, 0.5]),
        {"mag": (20.0, 25.0), "redshift": (0.1, 2.0)},
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ctx = flow.context_matrix({"mag": [21.0, 24.0], "redshift": 0.5 * np.ones(2)})
    assert ctx.shape == (2, 2)
    with pytest.warns(OutOfRangeWarning, match=r"'mag' = 27 is outside the training range \[20, 25\]"):
        flow.context_matrix({"mag": [21.0, 27.0], "redshift": [0.5, 0.5]})
    with pytest.raises(OutOfRangeError, match=r"'redshift' = 3 is outside"):
        flow.context_matrix({"mag": [21.0], "redshift": [3.0]}, on_out_of_range="error")
    with pytest.raises(ValueError, match="context column 'redshift' is missing"):
        flow.context_matrix({"mag": [21.0]})


def test_save_load_roundtrip(tmp_path):
    torch.manual_seed(1)
    flow = ConditionalFlow(
        "nsf",
        4,
        ["a", "b"],
        dict(transforms=2, hidden_features=[8], bins=4, passes=2),
        Standardizer([1.0] * 4, [2.0] * 4),
        Standardizer([0.0, 3.0], [1.0, 0.5]),
        {"a": (-1, 1), "b": (2, 4)},
    )
    save_flow(tmp_path / "flow.pt", flow, {"pixel_scale_arcsec": np.float64(0.03), "band": "F814W"})
    back = load_flow(tmp_path / "flow.pt")
    assert back.kind == "nsf" and back.context_columns == ["a", "b"] and back.context_range["b"] == (2.0, 4.0)
    assert back.meta == {"pixel_scale_arcsec": 0.03, "band": "F814W"}
    ctx = np.array([[0.1, 3.0], [0.5, 2.5]], np.float32)
    np.testing.assert_array_equal(back.sample(ctx, [1, 2]), flow.sample(ctx, [1, 2]))
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelFileError, match=r"bad.pt: corrupted or truncated morphoflow conditional-flow file"):
        load_flow(tmp_path / "bad.pt")
    torch.save({"format": "morphoflow-checkpoint-v1"}, tmp_path / "ckpt.pt")  # a training checkpoint
    with pytest.raises(ModelFileError, match=r"ckpt.pt: not a morphoflow conditional-flow file"):
        load_flow(tmp_path / "ckpt.pt")


def write_latents(path, z, cat):
    with h5py.File(path, "w") as f:
        f.create_dataset("z_mean", data=z)
        for k, v in cat.items():
            f.create_dataset(f"catalog/{k}", data=v).attrs["unit"] = ""
        f.attrs.update(latent_dim=z.shape[1], model="ae", pixel_scale_arcsec=0.03, band="F814W")


def test_rule_functions_on_latent_files(tmp_path):
    files = {}
    for i, split in enumerate(["train", "val", "test"]):
        t, c = synthetic(200, 10 + i)
        files[split] = tmp_path / f"{split}.h5"
        write_latents(files[split], t, {"id": np.arange(200) + 1000 * i, "mag": c[:, 0] + 22, "redshift": c[:, 1] + 1})
    cfg = flow_config(kind="nsf", context=["mag", "redshift"], transforms=2, hidden_features=[16], out_of_range="error")
    run_train_flow(
        train=files["train"],
        val=files["val"],
        model=tmp_path / "model.pt",
        history=tmp_path / "history.csv",
        checkpoints=tmp_path / "ckpt",
        config={"flow": cfg, "seed": 0},
        progress=False,
    )
    flow = load_flow(tmp_path / "model.pt")
    assert flow.meta["out_of_range"] == "error" and flow.meta["band"] == "F814W"
    metrics = run_evaluate_flow(model=tmp_path / "model.pt", test=files["test"], metrics=tmp_path / "m.json")
    assert json.loads((tmp_path / "m.json").read_text()) == metrics
    assert np.isfinite(metrics["test_nll_per_dim"]) and metrics["n_test"] == 200

    with pytest.raises(ContractError, match=r"train.h5: dataset 'catalog/hlr_arcsec' is missing"):
        read_latents(files["train"]).context(["mag", "hlr_arcsec"])


def test_default_config_builds_every_kind():
    from morphoflow.config import load_config

    cfg = load_config("config/config.yaml")["flow"]
    assert cfg["kind"] == "nsf" and cfg["context"] == ["mag", "hlr_arcsec", "redshift"]
    for kind in KINDS:
        flow = build_flow(kind, 16, 3, **flow_hyper(dict(cfg, kind=kind)))
        assert sum(p.numel() for p in flow.parameters()) > 0
    assert flow_hyper(dict(cfg, passes=None))["passes"] is None  # fully autoregressive stays expressible
