"""Your own galaxies by config alone (issue 15): data.source file / fits / realgalaxy through the tiny DAG.

The three DAG runs start together (one Snakemake each, --cores 1) from files the test draws with GalSim;
the contract file is a ground-based survey (Moffat FWHM 0.7", 0.2"/pixel), so the same run shows that a
different pixel scale and PSF need no code change.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pooch
import pytest
import yaml
from astropy.io import fits

from _own_data import ground_galaxies, write_fits_source, write_realgalaxy_source
from _workflow import copy_workflow
from morphoflow.config import load_config
from morphoflow.contract import ContractError, read_galaxies, write_galaxies
from morphoflow.data.contract_file import run_contract_file
from morphoflow.data.fits_stamps import FitsSourceError, read_fits_stamps
from morphoflow.data.realgalaxy import RealGalaxyError, read_realgalaxy

SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
N = 60  # galaxies per source: ~15 in the test split (the metrics need 10)
TINY = {  # on top of config/test.yaml: no TFRecords, one generative model
    "preprocess": {"split": {"train": 0.5, "val": 0.2, "test": 0.3}, "tfrecord": False},
    "metrics": {"models": ["flow"]},
}
FITS_COLUMNS = {"id": "objid", "mag": "mag_r", "hlr_arcsec": "r50", "redshift": "zphot"}


def realgalaxy_section(catalog: Path, **extra) -> dict:
    return {
        "catalog": str(catalog),
        "zeropoint_ab": 25.94,
        "stamp_size": 32,
        "pixel_scale_arcsec": 0.09,
        "columns": {"hlr_arcsec": "HLR", "redshift": "ZPHOT"},
        **extra,
    }


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("own_inputs")
    gs = ground_galaxies(N)
    write_galaxies(folder / "ground.h5", gs)
    return {
        "galaxies": gs,
        "file": folder / "ground.h5",
        "fits": write_fits_source(folder / "fits", gs),
        "realgalaxy": write_realgalaxy_source(folder / "rg", n=N),
    }


def overlays(inputs: dict) -> dict[str, dict]:
    fits_paths = {k: str(v) for k, v in inputs["fits"].items()}
    return {
        "file": {"data": {"source": "file", "path": str(inputs["file"])}},
        "fits": {
            "data": {"source": "fits"},
            "fits": {**fits_paths, "noise_sigma_keyword": "SKYSIG", "columns": FITS_COLUMNS},
        },
        "realgalaxy": {"data": {"source": "realgalaxy"}, "realgalaxy": realgalaxy_section(inputs["realgalaxy"])},
    }


@pytest.fixture(scope="module")
def dag_runs(inputs, tmp_path_factory) -> dict[str, Path]:
    r"""The tiny DAG to results/metrics.json for each source, three Snakemake processes at once."""

    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    runs, procs = {}, {}
    for source, overlay in overlays(inputs).items():
        work = copy_workflow(tmp_path_factory.mktemp(f"dag_{source}"))
        (work / "own.yaml").write_text(yaml.safe_dump({**TINY, **overlay}))
        cmd = [SNAKEMAKE, "results/metrics.json", "--cores", "1", "--configfile", "config/test.yaml", "own.yaml"]
        procs[source] = subprocess.Popen(cmd, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        runs[source] = work
    for source, proc in procs.items():
        out, _ = proc.communicate(timeout=900)
        if proc.returncode != 0:
            raise AssertionError(f"source {source}: snakemake failed:\n{out.decode(errors='replace')[-5000:]}")
    return runs


def check_metrics(work: Path) -> dict:
    metrics = json.loads((work / "results/metrics.json").read_text())
    assert metrics["data"]["n_test"] > 0 and metrics["data"]["n_train"] > metrics["data"]["n_test"]
    flow = metrics["generation"]["flow"]  # (C2ST needs more test galaxies than these tiny runs have)
    assert {"flux", "r50", "gini"} <= set(flow["morphology"]) and "power_spectrum" in flow
    return metrics


@pytest.mark.slow
def test_file_source_ground_based_survey_runs_unchanged(dag_runs, inputs):
    work = dag_runs["file"]
    check_metrics(work)
    record = json.loads((work / "results/data/raw_source.json").read_text())
    assert record["sha256"] == "sha256:" + pooch.file_hash(str(inputs["file"]))
    assert (work / "results/data/raw.h5").read_bytes() == inputs["file"].read_bytes()
    test = read_galaxies(work / "results/data/test.h5")
    # the survey's pixel scale and Moffat PSF went through untouched
    assert test.pixel_scale == 0.2 and test.attrs["band"] == "r"
    np.testing.assert_allclose(test.psf[0, 0], inputs["galaxies"].psf[0, 0], atol=1e-7)


@pytest.mark.slow
def test_fits_source_converts_units_and_runs(dag_runs, inputs):
    work = dag_runs["fits"]
    check_metrics(work)
    raw, gs = read_galaxies(work / "results/data/raw.h5"), inputs["galaxies"]
    assert raw.attrs["source"] == "fits" and raw.pixel_scale == 0.2 and raw.attrs["zeropoint_ab"] == 30.0
    np.testing.assert_array_equal(raw.ids, gs.ids)
    np.testing.assert_allclose(raw.catalog["hlr_arcsec"], gs.catalog["hlr_arcsec"])  # r50 was in pixels
    np.testing.assert_allclose(raw.psf[:, 0], np.broadcast_to(gs.psf[0, 0], raw.psf[:, 0].shape), atol=1e-6)
    np.testing.assert_array_equal(raw.noise_sigma, gs.noise_sigma)


@pytest.mark.slow
def test_realgalaxy_source_without_fits_catalog_runs(dag_runs, inputs):
    work = dag_runs["realgalaxy"]
    check_metrics(work)
    assert not list(inputs["realgalaxy"].parent.glob("*_fits.fits"))
    raw = read_galaxies(work / "results/data/raw.h5")
    table = fits.getdata(inputs["realgalaxy"], 1)
    assert raw.attrs["zeropoint_ab"] == 25.94 and raw.pixel_scale == 0.09
    np.testing.assert_allclose(raw.catalog["mag"], table["MAG"])  # the catalog's own magnitudes
    with h5py.File(work / "results/data/raw.h5") as f:
        assert f["noise_power"].shape == (N, 1, 32, 17)


def test_contract_error_names_the_users_file(tmp_path, inputs):
    bad = tmp_path / "bad.h5"
    write_galaxies(bad, inputs["galaxies"])
    with h5py.File(bad, "a") as f:
        del f["noise_sigma"]
    with pytest.raises(ContractError, match=rf"{bad}.*noise_sigma"):
        run_contract_file(path=bad, raw=tmp_path / "raw.h5", record=tmp_path / "r.json", config={})
    assert not (tmp_path / "raw.h5").exists()


def test_fits_source_needs_pixel_scale_and_zero_point(tmp_path, inputs):
    paths = {k: str(v) for k, v in inputs["fits"].items()}
    bare = tmp_path / "bare.fits"
    fits.PrimaryHDU(fits.getdata(paths["images"]), header=fits.Header({"SKYSIG": 2.0})).writeto(bare)
    base = {**paths, "images": str(bare), "noise_sigma_column": None, "columns": FITS_COLUMNS}
    cfg = load_config(overrides={"fits": {**base, "noise_sigma_keyword": "SKYSIG"}})["fits"]
    with pytest.raises(FitsSourceError, match="fits.pixel_scale_arcsec"):
        read_fits_stamps(cfg)
    cfg = load_config(overrides={"fits": {**base, "pixel_scale_arcsec": 0.2, "noise_sigma_keyword": "SKYSIG"}})
    with pytest.raises(FitsSourceError, match="fits.zeropoint_ab"):
        read_fits_stamps(cfg["fits"])


def test_realgalaxy_needs_a_zero_point_and_measures_sizes(inputs):
    cfg = load_config(overrides={"realgalaxy": realgalaxy_section(inputs["realgalaxy"], zeropoint_ab=None)})
    with pytest.raises(RealGalaxyError, match="realgalaxy.zeropoint_ab"):
        read_realgalaxy(cfg["realgalaxy"], seed=1)
    section = realgalaxy_section(inputs["realgalaxy"], max_galaxies=4, columns={"hlr_arcsec": None})
    gs = read_realgalaxy(load_config(overrides={"realgalaxy": section})["realgalaxy"], seed=1)
    assert np.all((gs.catalog["hlr_arcsec"] > 0.05) & (gs.catalog["hlr_arcsec"] < 1.0))
    assert "redshift" not in gs.catalog
    # drawn at 0.09"/pixel, 3 x the catalog's: the noise model follows (σ x 9), as the pixels do
    corners = np.concatenate([gs.images[:, 0, :6, :6].ravel(), gs.images[:, 0, -6:, -6:].ravel()])
    assert 0.8 < corners.std() / gs.noise_sigma.mean() < 1.3
