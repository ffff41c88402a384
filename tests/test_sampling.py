"""Rule `sample`: generated counterparts of the test galaxies, observed through their PSF and noise."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from _galaxies import make_galaxies
from morphoflow.autoencoder import load_autoencoder
from morphoflow.autoencoder.forward import fft_convolve
from morphoflow.config import load_config
from morphoflow.contract import ContractError, read_galaxies, write_galaxies
from morphoflow.flow import OutOfRangeError
from morphoflow.sampling import run_sample
from test_generator import make_model_dir

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = make_model_dir(tmp_path_factory.mktemp("results"))
    gs = make_galaxies(16, 32, seed=5, sigma=1.5, per_galaxy_psf=True)  # real GalSim galaxies, mag 18-19.8
    write_galaxies(root / "test.h5", gs)
    return root


def rule_config(seed: int = 3, batch_size: int | None = None, out_of_range: str | None = None) -> dict:
    r"""The ``config`` of rule ``sample`` (``pick("sample", "seed", "flow.out_of_range")``) of a validated config."""

    overrides = {"seed": seed}
    if batch_size is not None:
        overrides["sample"] = {"batch_size": batch_size}
    if out_of_range is not None:
        overrides["flow"] = {"out_of_range": out_of_range}
    cfg = load_config(overrides=overrides)
    return {"sample": cfg["sample"], "seed": cfg["seed"], "flow": {"out_of_range": cfg["flow"]["out_of_range"]}}


def sample(test, root, out, method="flow", **config):
    return run_sample(
        test=test,
        autoencoder=root / "autoencoder" / "model.pt",
        samples=out,
        method=method,
        config=rule_config(**config),
        flow=root / "flow" / "model.pt",
        progress=False,
    )


def run(root, out, method="flow", **config):
    return sample(root / "test.h5", root, out, method, **config)


def test_flow_samples_follow_the_contract_and_the_test_noise(setup, tmp_path):
    run(setup, tmp_path / "flow.h5", batch_size=16)
    out, test = read_galaxies(tmp_path / "flow.h5"), read_galaxies(setup / "test.h5")
    assert out.attrs["source"] == "flow" and out.attrs["pixel_scale_arcsec"] == test.attrs["pixel_scale_arcsec"]
    for key in test.catalog:
        np.testing.assert_array_equal(out.catalog[key], test.catalog[key])  # the requested conditions
    np.testing.assert_array_equal(out.psf, test.psf)
    np.testing.assert_array_equal(out.noise_sigma, test.noise_sigma)
    with h5py.File(tmp_path / "flow.h5") as f:
        z = f["z"][()]
    assert z.shape == (16, 3)

    # truth = decoder(z) in counts; images = truth (*) PSF + noise of the test galaxy's std
    decoder, meta = load_autoencoder(setup / "autoencoder" / "model.pt")
    with torch.no_grad():
        truth = decoder.decode(torch.as_tensor(z)).numpy() * meta["norm_scale"]
    np.testing.assert_allclose(out.truth, truth, rtol=1e-5, atol=1e-5)
    conv = fft_convolve(torch.as_tensor(out.truth), torch.as_tensor(out.psf)).numpy()
    resid = out.images - conv
    assert resid.std() == pytest.approx(1.5, rel=0.05)
    assert abs(resid.mean()) < 0.05

    # reproducible, and independent of the batch size
    run(setup, tmp_path / "again.h5", batch_size=16)
    np.testing.assert_array_equal(read_galaxies(tmp_path / "again.h5").images, out.images)
    run(setup, tmp_path / "b5.h5", batch_size=5)
    np.testing.assert_allclose(read_galaxies(tmp_path / "b5.h5").images, out.images, atol=1e-4)


def test_gaussian_baseline_and_noise_power(setup, tmp_path):
    test = read_galaxies(setup / "test.h5")
    test.noise_power = np.full((1, 1, 32, 17), 4.0, np.float32)  # white noise of std 2 counts, given as a spectrum
    write_galaxies(tmp_path / "test.h5", test)
    for name in ("autoencoder", "flow"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "model.pt").write_bytes((setup / name / "model.pt").read_bytes())
    run(tmp_path, tmp_path / "gauss.h5", method="gaussian")
    run(tmp_path, tmp_path / "flow.h5", method="flow")
    gauss = read_galaxies(tmp_path / "gauss.h5")
    read_galaxies(tmp_path / "flow.h5")  # a valid contract file
    assert gauss.attrs["source"] == "gaussian"
    np.testing.assert_array_equal(gauss.noise_power, test.noise_power)
    with h5py.File(tmp_path / "gauss.h5") as f, h5py.File(tmp_path / "flow.h5") as g:
        zg, zf = f["z"][()], g["z"][()]
    assert not np.allclose(zg, zf)
    # the noise follows noise_power (std 2), not noise_sigma (1.5)
    conv = fft_convolve(torch.as_tensor(gauss.truth), torch.as_tensor(gauss.psf)).numpy()
    assert (gauss.images - conv).std() == pytest.approx(2.0, rel=0.05)


def test_bad_inputs_are_named(setup, tmp_path):
    small = make_galaxies(4, 16, seed=1)
    write_galaxies(tmp_path / "test.h5", small)
    with pytest.raises(ContractError, match=r"test.h5: dataset 'images' stamps \[1, 16, 16\] do not match the model's"):
        sample(tmp_path / "test.h5", setup, tmp_path / "x.h5", seed=0)
    with pytest.raises(ValueError, match="unknown sampling method 'prior'"):
        run(setup, tmp_path / "x.h5", method="prior")
    gs = make_galaxies(4, 32, seed=2)
    gs.catalog["redshift"][:] = 5.0
    write_galaxies(tmp_path / "far.h5", gs)
    with pytest.raises(OutOfRangeError, match=r"far.h5 catalog: context column 'redshift' = 5"):
        sample(tmp_path / "far.h5", setup, tmp_path / "x.h5", seed=0, out_of_range="error")
    assert not (tmp_path / "x.h5").exists()
