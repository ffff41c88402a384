from __future__ import annotations

import math
import os
import signal

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import TensorDataset

from morphoflow.checkpoint import ModelFileError
from morphoflow.config import load_config
from morphoflow.training import (
    NonFiniteLossError,
    TrainingInterrupted,
    TrainSettings,
    fit,
    lr_factor,
    select_device,
)

torch.set_num_threads(1)


def _data(n: int = 96, seed: int = 0) -> tuple[TensorDataset, TensorDataset]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    w = torch.randn(8, 1, generator=g)
    y = x @ w + 0.05 * torch.randn(n, 1, generator=g)
    return TensorDataset(x[: n * 3 // 4], y[: n * 3 // 4]), TensorDataset(x[n * 3 // 4 :], y[n * 3 // 4 :])


def _model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    # dropout makes the run consume the torch RNG: resuming must restore it
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Dropout(0.1), torch.nn.Linear(16, 1))


def _loss(model: torch.nn.Module, batch: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
    x, y = batch
    mse = ((model(x) - y) ** 2).mean()
    return {"loss": mse, "abs": (model(x) - y).abs().mean()}


def _settings(**kw) -> TrainSettings:
    base = dict(
        max_epochs=6, batch_size=16, lr=1e-2, warmup_steps=4, checkpoint_every=5, patience=100, device="cpu", seed=3
    )
    base.update(kw)
    return TrainSettings(**base)


def test_fit_learns_and_logs_history(tmp_path):
    train, val = _data()
    model = _model()
    res = fit(
        model,
        _loss,
        train,
        val,
        _settings(max_epochs=15),
        tmp_path / "w",
        run_key={"a": 1},
        history_path=tmp_path / "history.csv",
        progress=False,
    )
    h = res.history
    assert list(h.columns[:4]) == ["epoch", "step", "lr", "seconds"]
    assert {"train_loss", "train_abs", "val_loss", "val_abs"} <= set(h.columns)
    assert h["val_loss"].iloc[-1] < 0.2 * h["val_loss"].iloc[0]
    assert res.steps == 15 * math.ceil(72 / 16)
    assert res.best_val_loss == pytest.approx(h["val_loss"].min())
    on_disk = pd.read_csv(tmp_path / "history.csv")
    assert len(on_disk) == 15 and np.allclose(on_disk["val_loss"], h["val_loss"])
    # best weights are loaded into the model
    for k, v in model.state_dict().items():
        assert torch.equal(v, res.state_dict[k])
    # a rerun with the same key resumes the finished run: no more steps, same result
    res2 = fit(_model(), _loss, train, val, _settings(max_epochs=15), tmp_path / "w", run_key={"a": 1}, progress=False)
    assert res2.resumed_from_step == res.steps
    assert all(torch.equal(res2.state_dict[k], v) for k, v in res.state_dict.items())


def test_lr_schedule_is_sane(tmp_path):
    total, warm, lr = 200, 20, 1e-3
    f = np.array([lr_factor(s, total, warm, 0.01) for s in range(total)])
    assert f[0] == pytest.approx(0.01)
    assert f.max() == pytest.approx(1.0)
    assert np.all(np.diff(f[: warm + 1]) > 0)  # warm-up rises
    assert np.all(np.diff(f[warm:]) <= 1e-12)  # monotone decay afterwards
    assert np.all(f[:-1] > 0.01 - 1e-12) and f[-1] == pytest.approx(0.01)  # never below the floor, floor at the end
    assert np.all(f[warm : total // 2] > 0.5)  # no premature collapse (ExponentialLR gamma=0.1 killed it in 60 steps)
    # a real run logs these rates per epoch
    train, val = _data()
    res = fit(_model(), _loss, train, val, _settings(max_epochs=10, lr=lr), tmp_path, run_key={}, progress=False)
    lrs = res.history["lr"].to_numpy()
    assert np.all(lrs > 0) and lrs.max() <= lr * (1 + 1e-9) and lrs.max() > 0.5 * lr
    assert np.all(np.diff(lrs[1:]) <= 0)
    assert lrs[-1] == pytest.approx(lr * 0.01, rel=1e-6)


def test_sigterm_then_resume_equals_uninterrupted(tmp_path):
    train, val = _data()
    settings = _settings(max_epochs=4)
    ref = fit(_model(), _loss, train, val, settings, tmp_path / "ref", run_key={"k": 1}, progress=False)

    calls = {"n": 0}

    def killing_loss(model, batch):
        if model.training:
            calls["n"] += 1
            if calls["n"] == 7:  # mid-epoch, off the checkpoint period
                os.kill(os.getpid(), signal.SIGTERM)
        return _loss(model, batch)

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(TrainingInterrupted) as info:
        fit(_model(), killing_loss, train, val, settings, tmp_path / "run", run_key={"k": 1}, progress=False)
    assert info.value.code == 143 and "step 7" in str(info.value)
    assert signal.getsignal(signal.SIGTERM) is before  # the very handler of before fit() is restored

    def own_handler(signum, frame):  # a caller's own handler survives a (resumed) fit() too
        raise AssertionError("SIGTERM reached the caller's handler")

    signal.signal(signal.SIGTERM, own_handler)
    try:
        res = fit(_model(), _loss, train, val, settings, tmp_path / "run", run_key={"k": 1}, progress=False)
        assert signal.getsignal(signal.SIGTERM) is own_handler
    finally:
        signal.signal(signal.SIGTERM, before)
    assert res.resumed_from_step == 7
    assert res.steps == ref.steps
    for k, v in ref.state_dict.items():
        assert torch.equal(res.state_dict[k], v), k
    assert np.array_equal(res.history["val_loss"].to_numpy(), ref.history["val_loss"].to_numpy())
    assert np.array_equal(res.history["train_loss"].to_numpy(), ref.history["train_loss"].to_numpy())


def test_other_run_key_starts_fresh(tmp_path):
    train, val = _data()
    fit(_model(), _loss, train, val, _settings(max_epochs=2), tmp_path, run_key={"k": 1}, progress=False)
    res = fit(_model(), _loss, train, val, _settings(max_epochs=2), tmp_path, run_key={"k": 2}, progress=False)
    assert res.resumed_from_step == 0 and res.steps == 2 * 5


@pytest.mark.parametrize("content", [b"\x00garbage, not a checkpoint", None])
def test_corrupted_or_foreign_checkpoint(tmp_path, content):
    ckpt = tmp_path / "checkpoint.pt"
    if content is None:
        torch.save({"weights": torch.zeros(3)}, ckpt)  # a foreign torch file
    else:
        ckpt.write_bytes(content)
    train, val = _data()
    with pytest.raises(ModelFileError, match=r"checkpoint.pt: .*morphoflow training checkpoint"):
        fit(_model(), _loss, train, val, _settings(max_epochs=1), tmp_path, run_key={}, progress=False)


def test_checkpoint_of_another_model_is_refused(tmp_path):
    train, val = _data()
    fit(_model(), _loss, train, val, _settings(max_epochs=1), tmp_path, run_key={}, progress=False)
    torch.manual_seed(0)
    wider = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.Tanh(), torch.nn.Linear(32, 1))
    with pytest.raises(ModelFileError, match=r"checkpoint.pt: the morphoflow training checkpoint does not fit"):
        fit(wider, _loss, train, val, _settings(max_epochs=1), tmp_path, run_key={}, progress=False)


def test_nonfinite_loss_names_step_and_keeps_checkpoint(tmp_path):
    train, val = _data()
    calls = {"n": 0}

    def bad_loss(model, batch):
        out = _loss(model, batch)
        if model.training:
            calls["n"] += 1
            if calls["n"] == 8:
                out["loss"] = out["loss"] * float("nan")
        return out

    with pytest.raises(NonFiniteLossError, match="step 8"):
        fit(_model(), bad_loss, train, val, _settings(max_epochs=3), tmp_path, run_key={}, progress=False)
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert ckpt["step"] == 5  # the last good checkpoint (period 5), not overwritten
    assert ckpt["format"] == "morphoflow-checkpoint-v1" and "rng_data" not in ckpt  # data order: from (seed, epoch)
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values())


def test_settings_from_config_and_device():
    block = load_config(overrides={"autoencoder": {"train": {"lr": 3e-4, "max_epochs": 2}}})["autoencoder"]["train"]
    s = TrainSettings.from_config(block, seed=9)
    assert s.lr == 3e-4 and s.max_epochs == 2 and s.seed == 9 and s.batch_size == 32  # the schema's default
    # every value comes from the config, none from a field default
    for key, value in block.items():
        assert getattr(s, key) == value, key
    with pytest.raises(ValueError, match=r"train.learning_rate"):
        TrainSettings.from_config(dict(block, learning_rate=1e-3), seed=0)
    with pytest.raises(ValueError, match=r"train.batch_size"):
        TrainSettings.from_config(dict(block, batch_size=0), seed=0)
    with pytest.raises(ValueError, match=r"train.patience' is missing"):
        TrainSettings.from_config({k: v for k, v in block.items() if k != "patience"}, seed=0)
    assert select_device("cpu").type == "cpu"
    assert select_device("auto").type in ("cpu", "cuda", "mps")


def test_early_stopping(tmp_path):
    train, val = _data()

    def flat_val(model, batch):  # validation never improves after the first epoch
        out = _loss(model, batch)
        if not model.training:
            out["loss"] = torch.tensor(1.0)
        return out

    res = fit(
        _model(), flat_val, train, val, _settings(max_epochs=20, patience=2), tmp_path, run_key={}, progress=False
    )
    assert res.stopped_early and len(res.history) == 3
