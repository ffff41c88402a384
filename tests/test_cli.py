"""The `morphoflow sample` command line, run in a subprocess on a tiny model trained in the test."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits

from morphoflow.cli import main
from morphoflow.flow import OutOfRangeWarning
from morphoflow.generator import Generator
from test_generator import make_model_dir


def cli(*args: str) -> subprocess.CompletedProcess:
    r"""Run the installed console script (``morphoflow``) in a subprocess."""

    exe = os.path.join(os.path.dirname(sys.executable), "morphoflow")
    cmd = [exe] if os.path.exists(exe) else [sys.executable, "-m", "morphoflow.cli"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([*cmd, *args], capture_output=True, text=True, env=env, timeout=180)


def cli_inprocess(capsys, *args: str) -> tuple[int, str, str]:
    r"""Run ``morphoflow.cli.main`` in this process (faster than a subprocess): (exit code, stdout, stderr)."""

    try:
        code = main(list(args))
    except SystemExit as exit_:  # argparse usage errors and --help
        code = exit_.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_model_dir(tmp_path_factory.mktemp("results"))


def test_cli_writes_fits_cube_and_table(model_dir, tmp_path):
    out = tmp_path / "out.fits"
    res = cli(
        "sample",
        "--model",
        str(model_dir),
        "--mag",
        "18.5",
        "--hlr-arcsec",
        "0.4",
        "--redshift",
        "0.8",
        "-n",
        "3",
        "--seed",
        "7",
        "-o",
        str(out),
    )
    assert res.returncode == 0, res.stderr
    with fits.open(out) as hdul:
        cube, hdr = hdul[0].data, hdul[0].header
        table = hdul["CONDITIONS"].data
        assert cube.shape == (3, 32, 32)
        assert hdr["PIXSCALE"] == pytest.approx(0.1) and hdr["BUNIT"] == "counts" and hdr["BAND"] == "F814W"
        assert list(table["mag"]) == [18.5] * 3 and list(table["hlr_arcsec"]) == [0.4] * 3
        seeds = np.array(table["seed"])
    # the same images as the Python API with the same seed
    ref = Generator.load(model_dir).sample({"mag": 18.5, "hlr_arcsec": 0.4, "redshift": 0.8}, n=3, seed=7)
    np.testing.assert_array_equal(cube, ref.images[:, 0])
    np.testing.assert_array_equal(seeds, ref.seeds)


def test_cli_conditions_table_and_errors(model_dir, tmp_path, capsys):
    csv = tmp_path / "cond.csv"
    pd.DataFrame({"mag": [18.0, 19.0], "hlr_arcsec": [0.3, 0.5], "redshift": [0.5, 1.0]}).to_csv(csv, index=False)
    out = tmp_path / "t.fits"
    code, _, err = cli_inprocess(
        capsys, "sample", "--model", str(model_dir), "--conditions", str(csv), "-n", "2", "-o", str(out)
    )
    assert code == 0, err
    with fits.open(out) as hdul:
        assert hdul[0].data.shape == (4, 32, 32)
        assert list(hdul["CONDITIONS"].data["redshift"]) == [0.5, 0.5, 1.0, 1.0]

    # flags come from the model's context columns
    code, stdout, _ = cli_inprocess(capsys, "sample", "--model", str(model_dir), "--help")
    assert code == 0 and "--hlr-arcsec" in stdout and "--redshift" in stdout
    code, _, err = cli_inprocess(
        capsys, "sample", "--model", str(model_dir), "--mag", "18", "-o", str(tmp_path / "x.fits")
    )
    assert code == 2 and "missing condition(s) --hlr-arcsec --redshift" in err
    # out of range: a warning by default, an error with --out-of-range error; no file left behind
    args = ["sample", "--model", str(model_dir), "--mag", "30", "--hlr-arcsec", "0.4", "--redshift", "0.8"]
    with pytest.warns(OutOfRangeWarning, match="'mag' = 30 is outside the training range"):
        code, _, err = cli_inprocess(capsys, *args, "-o", str(tmp_path / "w.fits"))
    assert code == 0 and (tmp_path / "w.fits").exists()
    code, _, err = cli_inprocess(capsys, *args, "--out-of-range", "error", "-o", str(tmp_path / "e.fits"))
    assert code == 1 and "'mag' = 30 is outside the training range" in err
    assert not (tmp_path / "e.fits").exists()
    code, _, err = cli_inprocess(capsys, *args, "-o", str(tmp_path / "w.fits"))
    assert code == 1 and "exists (pass --overwrite" in err
    # a flow file that is not one is named (read by morphoflow.checkpoint, the one loader of model files)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a torch file")
    code, _, err = cli_inprocess(
        capsys,
        "sample",
        "--autoencoder",
        str(model_dir / "autoencoder" / "model.pt"),
        "--flow",
        str(bad),
        "--mag",
        "18",
        "-o",
        str(tmp_path / "b.fits"),
    )
    assert code == 1 and "bad.pt: corrupted or truncated morphoflow conditional-flow file" in err
