from __future__ import annotations

import pandas as pd
import pytest
import torch

from _galaxies import make_galaxies, write_split
from morphoflow.autoencoder import AE, VAE, build_autoencoder, load_autoencoder, save_autoencoder
from morphoflow.autoencoder.objective import AutoencoderLoss, stamp_tensors
from morphoflow.autoencoder.train import run_train_autoencoder
from morphoflow.checkpoint import ModelFileError
from morphoflow.config import load_config
from morphoflow.training import TrainSettings, fit

torch.set_num_threads(1)

TINY_KEYS = {
    "model": "vae",
    "latent_dim": 8,
    "widths": [16, 32],
    "blocks": 1,
    "patch": 2,
    "psf_aware": True,
    "beta": 0.1,
}


def ae_config(**keys) -> dict:
    r"""A validated ``autoencoder`` section: the tiny model with ``keys`` on top, the rest from the schema."""

    return load_config(overrides={"autoencoder": dict(TINY_KEYS, **keys)})["autoencoder"]


TINY = ae_config()


@pytest.mark.parametrize("kind", ["vae", "ae"])
def test_tiny_model_overfits_32_galaxies(tmp_path, kind):
    gs = make_galaxies(32, 32, seed=1, sigma=0.5)  # bright: S/N ~ 20-90
    st = stamp_tensors(gs)
    torch.manual_seed(0)
    model = build_autoencoder(dict(TINY, model=kind), (1, 32, 32))
    assert isinstance(model, VAE if kind == "vae" else AE)
    loss = AutoencoderLoss(st.psf, None, True, "pixel", beta=0.1)
    data = st.dataset()
    with torch.no_grad():
        chi2_before = float(loss(model.eval(), data.tensors)["chi2"])
    settings = TrainSettings(max_epochs=25, batch_size=8, lr=3e-3, warmup_steps=10, device="cpu", patience=100, seed=0)
    res = fit(model, loss, data, data, settings, tmp_path, run_key={}, progress=False)
    h = res.history
    # chi2 per pixel starts far above the noise level and falls by a large factor, towards the noise limit 1
    assert chi2_before > 5 * h["val_chi2"].min()
    assert h["val_chi2"].min() < 4.0
    assert h["train_loss"].iloc[-1] < 0.2 * h["train_loss"].iloc[0]
    # the PSF-free output is non-negative and carries the galaxy's flux (normalised units)
    with torch.no_grad():
        mu, logvar = model.encode(st.x)
        g = model.decode(mu)
    assert (logvar is None) == (kind == "ae")
    assert mu.shape == (32, 8) and g.shape == st.x.shape and bool((g >= 0).all())
    flux_true = torch.from_numpy(gs.truth).sum((1, 2, 3)) / st.norm_scale
    ratio = g.sum((1, 2, 3)) / flux_true
    assert float(ratio.median()) == pytest.approx(1.0, abs=0.2)


def test_psf_unaware_decoder_is_linear_output():
    model = build_autoencoder(dict(TINY, psf_aware=False), (1, 32, 32))
    model.decoder.features[-2].bias.data.fill_(-5.0)  # the ConvTranspose before PixelShuffle
    with torch.no_grad():
        assert bool((model.decode(torch.zeros(2, 8)) < 0).any())


def test_bad_shapes_and_kinds():
    with pytest.raises(ValueError, match="divisible"):
        build_autoencoder(dict(TINY, widths=[8, 8, 8, 8, 8]), (1, 32, 32))
    with pytest.raises(ValueError, match=r"autoencoder.model"):
        build_autoencoder(dict(TINY, model="gan"), (1, 32, 32))
    with pytest.raises(ValueError, match=r"autoencoder.blocks"):
        build_autoencoder(dict(TINY, blocks=[1, 1, 1]), (1, 32, 32))


def test_save_load_roundtrip_and_bad_files(tmp_path):
    torch.manual_seed(0)
    model = build_autoencoder(TINY, (1, 32, 32))
    meta = {
        "config": TINY,
        "image_shape": [1, 32, 32],
        "norm_scale": 2.5,
        "pixel_scale_arcsec": 0.1,
        "band": "F814W",
        "zeropoint_ab": 25.94,
        "likelihood": "pixel",
    }
    path = tmp_path / "model.pt"
    save_autoencoder(path, model, meta)
    loaded, meta2 = load_autoencoder(path)
    assert meta2["model"] == "vae" and meta2["latent_dim"] == 8 and meta2["psf_aware"] is True
    assert meta2["norm_scale"] == 2.5 and meta2["image_shape"] == [1, 32, 32]
    x = torch.randn(3, 1, 32, 32)
    with torch.no_grad():
        model.eval()
        assert torch.equal(model.encode(x)[0], loaded.encode(x)[0])
        z = torch.randn(3, 8)
        assert torch.equal(model.decode(z), loaded.decode(z))
    assert not list(tmp_path.glob(".*.tmp"))  # atomic write left no temporary file

    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(ModelFileError, match=r"bad.pt"):
        load_autoencoder(bad)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(ModelFileError, match=r"foreign.pt"):
        load_autoencoder(foreign)
    with pytest.raises(ModelFileError, match=r"missing.pt"):
        load_autoencoder(tmp_path / "missing.pt")


def test_train_autoencoder_from_files(tmp_path):
    paths = write_split(tmp_path / "data", n=32, size=32, per_galaxy_psf=True)
    tiny_train = {"max_epochs": 2, "batch_size": 16, "device": "cpu"}
    detail = {"width": 8, "blocks": 1, "train": tiny_train}
    config = {"autoencoder": ae_config(likelihood="auto", train=tiny_train, detail=detail), "seed": 5}

    def train(val, model, history, checkpoints):
        return run_train_autoencoder(
            train=paths["train"],
            val=val,
            model=tmp_path / model,
            history=tmp_path / history,
            checkpoints=tmp_path / checkpoints,
            config=config,
            progress=False,
        )

    res = train(paths["val"], "model.pt", "history.csv", "ckpt")
    assert res.steps == 4  # the detail level's fit, after the global level's
    history = pd.read_csv(tmp_path / "history.csv")
    assert list(history["level"]) == ["global"] * 2 + ["detail"] * 2 and "val_kl" in history
    net, meta = load_autoencoder(tmp_path / "model.pt")
    assert net.detail is not None and meta["detail"] is True
    assert meta["likelihood"] == "pixel" and meta["norm_scale"] == 1.0 and meta["seed"] == 5
    assert meta["pixel_scale_arcsec"] == pytest.approx(0.1) and meta["band"] == "F814W"
    # rerun: resumes the finished run from the checkpoint, identical weights
    res2 = train(paths["val"], "model2.pt", "history2.csv", "ckpt")
    assert res2.resumed_from_step == 4
    assert all(torch.equal(v, res2.state_dict[k]) for k, v in res.state_dict.items())
    # a val file normalised differently is refused, naming the file and attribute
    from morphoflow.contract import read_galaxies, write_galaxies

    gs = read_galaxies(paths["val"])
    gs.attrs["norm_scale"] = 3.0
    write_galaxies(tmp_path / "val_bad.h5", gs)
    with pytest.raises(ValueError, match=r"val_bad.h5.*norm_scale"):
        train(tmp_path / "val_bad.h5", "m3.pt", "h3.csv", "ckpt3")
