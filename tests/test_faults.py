"""Fault suite (issue #16): faults injected into one finished tiny DAG run, each must fail with a message that
names its cause, and leave no output that the next reader would refuse.

One tiny run (``tiny``, module fixture) is made once; every case works on a copy of the files it needs.
Real files, real processes: Snakemake for the rule logs, subprocesses for the CLI, kill -9 and disk-full cases.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml

from _workflow import ROOT, copy_workflow
from morphoflow.atomic import DiskFullError, atomic_path
from morphoflow.checkpoint import ModelFileError, load_torch_file
from morphoflow.cli import main
from morphoflow.config import ConfigError, load_config
from morphoflow.contract import ContractError, check_file, read_galaxies, write_galaxies
from morphoflow.data.archive import ArchiveError, safe_extract
from morphoflow.data.download import DownloadError, verify
from morphoflow.data.preprocess import MIN_TEST_HALF, PreprocessError, run_preprocess
from morphoflow.data.tfrecord import write_tfrecord
from morphoflow.flow.io import FLOW_FORMAT, FLOW_WHAT
from morphoflow.flow.train import run_train_flow
from morphoflow.training import CHECKPOINT_FORMAT

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent
CONFIGS = (ROOT / "config/config.yaml", ROOT / "config/test.yaml")
SPLITS = ("train", "val", "test")
TORCH_HINT = "will likely succeed"


def env() -> dict[str, str]:
    return dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")


def snakemake(
    workdir: Path, *args: str, check: bool = True, cores: int = 1, configs: tuple[str, ...] = ("config/test.yaml",)
) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        # Targets first: --configfile takes several values and would swallow them.
        [str(BIN / "snakemake"), *args, "--cores", str(cores), "--configfile", *configs],
        cwd=workdir,
        env=env(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    return proc


def python(code: str, *, timeout: int = 300, **kwargs) -> subprocess.CompletedProcess:
    r"""Run ``code`` in a fresh Python process (``cwd`` = repository root)."""

    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        env=kwargs.pop("env", env()),
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,
    )


def cli(*args: str, preexec_fn=None) -> subprocess.CompletedProcess:
    exe = BIN / "morphoflow"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "morphoflow.cli"]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, env=env(), timeout=300, preexec_fn=preexec_fn)


def cli_inprocess(capsys, *args: str) -> tuple[int, str]:
    try:
        code = main(list(args))
    except SystemExit as exit_:
        code = exit_.code
    return code, capsys.readouterr().err


def one_line_error(err: str) -> str:
    r"""The CLI's error: exactly one non-empty line, no traceback."""

    lines = [ln for ln in err.splitlines() if ln.strip() and "Warning" not in ln and "warnings.warn" not in ln]
    assert "Traceback" not in err, err
    assert len(lines) == 1, err
    return lines[0]


def config(**overrides) -> dict:
    return load_config(*CONFIGS, overrides=overrides)


def flow_config(**train) -> dict:
    c = config(flow={"train": train} if train else {})
    return {"flow": c["flow"], "seed": c["seed"]}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    r"""One tiny DAG run up to the trained models and latents, shared read-only by every case.

    (Two clean runs giving identical ``metrics.json`` is ``test_workflow.py::test_rerun_gives_the_same_metrics``.)
    """

    work = copy_workflow(tmp_path_factory.mktemp("tiny"))
    targets = ["results/flow/model.pt", "results/latents/test.h5", "results/autoencoder/model.pt"]
    snakemake(work, *targets, cores=2)
    return work


def copy_of(tiny: Path, rel: str, dest: Path) -> Path:
    out = dest / Path(rel).name
    shutil.copy2(tiny / rel, out)
    return out


def overwrite_middle(path: Path, n: int = 4096) -> None:
    r"""Overwrite ``n`` bytes in the middle of ``path`` with random bytes (a damaged disk block)."""

    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.seek(size // 2)
        f.write(np.random.default_rng(0).bytes(min(n, size // 4)))


def preprocess_outputs(tmp: Path) -> dict:
    return {s: tmp / f"{s}.h5" for s in SPLITS} | {"cleaning": tmp / "cleaning.json"}


def assert_no_split_files(tmp: Path) -> None:
    assert not [p.name for p in tmp.iterdir() if p.name.endswith((".h5", ".tmp")) and p.name != "raw.h5"]


# ---------------------------------------------------------------------------------------------------------------
# 1 and 5: rule logs end with the error; a test split too small for metrics fails in preprocess, before training


@pytest.fixture(scope="module")
def small_split_run(tiny, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    r"""The DAG asked for ``metrics.json`` with a test split of 2 galaxies (halves of 1 and 1) on the tiny raw file."""

    work = copy_workflow(tmp_path_factory.mktemp("small"))
    (work / "results/data").mkdir(parents=True)
    shutil.copy2(tiny / "results/data/raw.h5", work / "results/data/raw.h5")  # no metadata: not rerun
    (work / "small.yaml").write_text(
        yaml.safe_dump({"preprocess": {"split": {"train": 0.89, "val": 0.1, "test": 0.01}}})
    )
    proc = snakemake(work, "results/metrics.json", configs=("config/test.yaml", "small.yaml"), check=False)
    assert "Error in rule preprocess" in proc.stderr + proc.stdout, proc.stderr[-3000:]
    return work, proc


def test_rule_log_ends_with_the_error(small_split_run):
    work, proc = small_split_run
    assert proc.returncode != 0
    log = (work / "logs/preprocess.log").read_text()
    last = log.strip().splitlines()[-1]
    assert last.startswith("rule failed: PreprocessError: ") and "raw.h5" in last, log[-2000:]
    assert "Traceback (most recent call last)" in log


def test_too_small_test_split_fails_in_preprocess_before_training(small_split_run):
    work, _ = small_split_run
    log = (work / "logs/preprocess.log").read_text()
    assert f"rule metrics needs at least {MIN_TEST_HALF} in each half" in log and "preprocess.split.test" in log
    assert not (work / "logs/train_autoencoder.log").exists()  # nothing trained
    assert not list((work / "results/data").glob("t*.h5"))  # no split file left


# ---------------------------------------------------------------------------------------------------------------
# 2: the writer refuses what the reader refuses; cleaning covers psf, noise_power and catalog columns


def test_writer_refuses_a_nan_psf_like_the_reader(tiny, tmp_path):
    gs = read_galaxies(tiny / "results/data/test.h5")
    gs.psf = gs.psf.copy()
    gs.psf[0, 0, 0, 0] = np.nan
    with pytest.raises(ContractError, match=r"test.h5: dataset 'psf' holds non-finite values"):
        write_galaxies(tmp_path / "test.h5", gs)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("field", ["psf", "noise_power", "catalog/redshift"])
def test_preprocess_cleans_every_dataset_and_catalog_column(tiny, tmp_path, field, caplog):
    raw = tiny / "results/data/raw.h5"
    gs = read_galaxies(raw)
    n = len(gs)
    if field == "catalog/redshift":
        gs.catalog["redshift"] = gs.catalog["redshift"].copy()
        gs.catalog["redshift"][3] = np.nan
    else:
        arr = getattr(gs, field)
        arr = np.repeat(arr, n, axis=0) if len(arr) == 1 else arr.copy()
        arr[3, 0, 1, 1] = np.nan
        setattr(gs, field, arr)
    write_galaxies(tmp_path / "raw.h5", gs, raw=True)
    out = preprocess_outputs(tmp_path)
    with caplog.at_level("INFO"):
        report = run_preprocess(raw=tmp_path / "raw.h5", **out, config=config_pre(), min_test_half=MIN_TEST_HALF)
    assert report["removed"]["nonfinite"] == 1
    assert f"'{field}': 1" in caplog.text and "raw.h5" in caplog.text
    for s in SPLITS:
        check_file(out[s])
        read_galaxies(out[s])  # the next rule's reader accepts every split


def test_a_shared_nan_psf_is_refused_naming_raw_and_psf(tiny, tmp_path):
    gs = read_galaxies(tiny / "results/data/raw.h5")
    gs.psf = gs.psf[:1].copy()
    gs.psf[0, 0, 2, 2] = np.inf
    write_galaxies(tmp_path / "raw.h5", gs, raw=True)
    with pytest.raises(PreprocessError, match=r"raw.h5: dataset 'psf' \(shared by all galaxies\) holds non-finite"):
        run_preprocess(raw=tmp_path / "raw.h5", **preprocess_outputs(tmp_path), config=config_pre())
    assert_no_split_files(tmp_path)


def config_pre(**preprocess) -> dict:
    c = config(preprocess=preprocess)
    return {"preprocess": c["preprocess"], "seed": c["seed"]}


# ---------------------------------------------------------------------------------------------------------------
# 3: a damaged chunk inside an HDF5 file names the file, the dataset and the rule to rerun


def test_damaged_hdf5_chunk_names_file_dataset_and_rule(tiny, tmp_path):
    path = copy_of(tiny, "results/data/train.h5", tmp_path)
    overwrite_middle(path)
    with pytest.raises(ContractError) as err:
        read_galaxies(path)
    msg = str(err.value)
    assert re.match(rf"{re.escape(str(path))}: dataset '(images|psf|truth|noise_power)' cannot be read", msg), msg
    assert msg.endswith("rerun the rule that wrote it: snakemake --forcerun preprocess"), msg


# ---------------------------------------------------------------------------------------------------------------
# 4: the CLI prints one line naming the file, exit 1


@pytest.mark.parametrize("damage", ["overwrite", "truncate"])
def test_cli_damaged_flow_model_is_one_line(tiny, tmp_path, damage, capsys):
    flow = copy_of(tiny, "results/flow/model.pt", tmp_path)
    if damage == "overwrite":
        overwrite_middle(flow, 64)
    else:
        flow.write_bytes(flow.read_bytes()[: flow.stat().st_size // 2])
    code, err = cli_inprocess(
        capsys,
        *("sample", "--autoencoder", str(tiny / "results/autoencoder/model.pt"), "--flow", str(flow)),
        *("--mag", "22", "--hlr-arcsec", "0.1", "--redshift", "0.5", "-o", str(tmp_path / "o.fits")),
    )
    line = one_line_error(err)
    assert code == 1 and str(flow) in line and "corrupted" in line and TORCH_HINT not in line, line


def test_cli_damaged_autoencoder_model_is_one_line(tiny, tmp_path):
    ae = copy_of(tiny, "results/autoencoder/model.pt", tmp_path)
    overwrite_middle(ae, 256)
    res = cli(
        *("sample", "--autoencoder", str(ae), "--flow", str(tiny / "results/flow/model.pt")),
        *("--mag", "22", "--hlr-arcsec", "0.1", "--redshift", "0.5", "-o", str(tmp_path / "o.fits")),
    )
    line = one_line_error(res.stderr)
    assert res.returncode == 1 and str(ae) in line and "corrupted" in line, res.stderr


def _fsize_limit(limit: int):
    def apply() -> None:
        import resource

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def test_cli_disk_full_while_writing_fits_is_one_line(tiny, tmp_path):
    out = tmp_path / "o.fits"
    res = cli(
        *("sample", "--model", str(tiny / "results"), "-n", "64"),
        *("--mag", "22", "--hlr-arcsec", "0.1", "--redshift", "0.5", "-o", str(out)),
        preexec_fn=_fsize_limit(100_000),
    )
    line = one_line_error(res.stderr)
    assert res.returncode == 1 and str(out) in line and "not enough disk space: needs" in line, res.stderr
    assert not list(tmp_path.iterdir())


# ---------------------------------------------------------------------------------------------------------------
# 6: disk full: one line naming path and bytes, no temp file, no crash


def test_disk_full_contract_writer_names_path_and_bytes(tiny, tmp_path):
    res = python(
        f"""
        from morphoflow.contract import read_galaxies, write_galaxies
        write_galaxies({str(tmp_path / "out.h5")!r}, read_galaxies({str(tiny / "results/data/train.h5")!r}))
        """,
        preexec_fn=_fsize_limit(200_000),
    )
    assert res.returncode == 1, res.stderr[-2000:]  # an exception, not SIGSEGV
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith(f"morphoflow.atomic.DiskFullError: {tmp_path / 'out.h5'}: not enough disk space: needs ")
    assert not list(tmp_path.iterdir())


WRITES = {
    "h5py": 'with h5py.File(tmp, "w") as f: f.create_dataset("x", data=np.zeros(200_000))',
    "astropy": "fits.PrimaryHDU(np.zeros((64, 32, 32), np.float32)).writeto(tmp)",
    "python": "tmp.write_bytes(bytes(200_000))",
}


@pytest.mark.parametrize("writer", list(WRITES))
def test_disk_full_at_the_first_failing_write(tmp_path, writer):
    out = tmp_path / "x.out"
    res = python(
        f"""
        import h5py, numpy as np
        from astropy.io import fits
        from morphoflow.atomic import atomic_path
        with atomic_path({str(out)!r}) as tmp:
            {WRITES[writer]}
        """,
        preexec_fn=_fsize_limit(100_000),
    )
    assert res.returncode == 1, res.stderr[-2000:]  # an exception, not SIGSEGV or SIGXFSZ
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith(f"morphoflow.atomic.DiskFullError: {out}: disk full while writing"), res.stderr[-2000:]
    assert not list(tmp_path.iterdir())


def test_disk_full_error_is_an_oserror_and_leaves_nothing(tmp_path):
    with pytest.raises(DiskFullError, match=r"needs \d+ bytes"), atomic_path(tmp_path / "big", size=2**62) as tmp:
        tmp.write_bytes(b"never")
    assert issubclass(DiskFullError, OSError) and not list(tmp_path.iterdir())


# ---------------------------------------------------------------------------------------------------------------
# 7: advice that points the right way


def test_corrupt_checkpoint_says_deleting_it_restarts(tiny, tmp_path):
    ckpt = tmp_path / "checkpoints" / "checkpoint.pt"
    ckpt.parent.mkdir()
    shutil.copy2(tiny / "results/flow/model.pt", ckpt)
    overwrite_middle(ckpt, 64)
    with pytest.raises(ModelFileError) as err:
        run_train_flow(
            train=tiny / "results/latents/train.h5",
            val=tiny / "results/latents/val.h5",
            model=tmp_path / "model.pt",
            history=tmp_path / "history.csv",
            checkpoints=ckpt.parent,
            config=flow_config(),
            progress=False,
        )
    msg = str(err.value)
    assert msg.startswith(str(ckpt)) and f"deleting {ckpt} restarts training from scratch" in msg, msg
    assert TORCH_HINT not in msg and not (tmp_path / "model.pt").exists()


def test_malicious_checkpoint_runs_no_code_and_gives_no_torch_hint(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"format": FLOW_FORMAT, "x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(ModelFileError) as err:
        load_torch_file(tmp_path / "evil.pt", FLOW_FORMAT, what=FLOW_WHAT)
    msg = str(err.value)
    assert "evil.pt: not a morphoflow" in msg and "Python code" in msg and "posix.system" in msg
    assert TORCH_HINT not in msg and "weights_only" not in msg and not marker.exists()


def test_foreign_checkpoint_is_refused(tmp_path):
    torch.save({"format": "someone-else", "w": torch.zeros(3)}, tmp_path / "foreign.pt")
    with pytest.raises(ModelFileError, match=r"foreign.pt: not a morphoflow training checkpoint file"):
        load_torch_file(tmp_path / "foreign.pt", CHECKPOINT_FORMAT, what="morphoflow training checkpoint")


# ---------------------------------------------------------------------------------------------------------------
# 8: TFRecord files are byte-identical between runs


def test_tfrecord_is_byte_identical_across_processes(tiny, tmp_path):
    test = tiny / "results/data/test.h5"
    write_tfrecord(tmp_path / "here.tfrecord", read_galaxies(test))
    code = """
        import sys
        from morphoflow.contract import read_galaxies
        from morphoflow.data.tfrecord import write_tfrecord
        write_tfrecord(sys.argv[2], read_galaxies(sys.argv[1]))
    """
    seed = "1" if os.environ.get("PYTHONHASHSEED") != "1" else "2"  # another string hash than this process's
    res = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), str(test), str(tmp_path / "there.tfrecord")],
        env=env() | {"PYTHONHASHSEED": seed},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "here.tfrecord").read_bytes() == (tmp_path / "there.tfrecord").read_bytes()


# ---------------------------------------------------------------------------------------------------------------
# Cases that passed before: they stay passing


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"autoencoder": {"latent_dimm": 8}}, "latent_dimm"),
        ({"autoencoder": {"latent_dim": "eight"}}, "autoencoder.latent_dim"),
        ({"preprocess": {"split": {"train": 1.5}}}, "preprocess.split.train"),
        ({"flow": {"kind": "glow"}}, "flow.kind"),
    ],
    ids=["unknown-key", "wrong-type", "out-of-range", "unknown-flow-kind"],
)
def test_bad_config_names_the_key(overrides, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        config(**overrides)


def _write_h5(path: Path, tiny: Path, edit) -> Path:
    shutil.copy2(tiny / "results/data/test.h5", path)
    with h5py.File(path, "a") as f:
        edit(f)
    return path


def test_nan_pixels_are_refused_by_the_reader(tiny, tmp_path):
    def edit(f):
        f["images"][0, 0, 3, 3] = np.nan

    path = _write_h5(tmp_path / "test.h5", tiny, edit)
    with pytest.raises(ContractError, match=r"test.h5: dataset 'images' holds non-finite values"):
        read_galaxies(path)


@pytest.mark.parametrize("shape", ["wrong", "3d"])
def test_wrong_image_shapes_are_refused(tiny, tmp_path, shape):
    def edit(f):
        images = f["images"][()]
        del f["images"]
        f["images"] = images[:, 0] if shape == "3d" else images[:, :, :-2, :-2]

    path = _write_h5(tmp_path / "test.h5", tiny, edit)
    with pytest.raises(ContractError, match=r"test.h5: dataset '(images|psf)' must be"):
        read_galaxies(path)


def test_truncated_hdf5_is_refused(tiny, tmp_path):
    path = copy_of(tiny, "results/data/test.h5", tmp_path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ContractError, match=r"test.h5: not a readable HDF5 file"):
        read_galaxies(path)


def test_empty_split_after_cleaning(tiny, tmp_path):
    with pytest.raises(PreprocessError, match=r"split 'val' is empty"):
        run_preprocess(
            raw=tiny / "results/data/raw.h5",
            **preprocess_outputs(tmp_path),
            config=config_pre(split={"train": 0.9, "val": 0.0, "test": 0.1}),
        )
    assert_no_split_files(tmp_path)


@pytest.mark.parametrize(("value", "expect"), [("40", "'mag' = 40"), ("nan", "mag")])
def test_cli_out_of_range_and_non_finite_conditions(tiny, tmp_path, capsys, value, expect):
    code, err = cli_inprocess(
        capsys,
        *("sample", "--model", str(tiny / "results"), "--out-of-range", "error"),
        *("--mag", value, "--hlr-arcsec", "0.1", "--redshift", "0.5", "-o", str(tmp_path / "o.fits")),
    )
    line = one_line_error(err)
    assert code == 1 and expect in line, err
    assert not (tmp_path / "o.fits").exists()


def test_tar_member_with_dotdot_is_refused(tmp_path):
    (tmp_path / "evil.txt").write_text("x")
    with tarfile.open(tmp_path / "a.tar", "w") as tar:
        tar.add(tmp_path / "evil.txt", arcname="../evil.txt")
    with pytest.raises(ArchiveError, match=r"a.tar: member '../evil.txt' climbs out"):
        safe_extract(tmp_path / "a.tar", tmp_path / "out")
    assert not (tmp_path / "out" / "evil.txt").exists()


def test_checksum_mismatch(tmp_path):
    (tmp_path / "f.bin").write_bytes(b"data")
    with pytest.raises(DownloadError, match=r"f.bin: checksum mismatch"):
        verify(tmp_path / "f.bin", "sha256:" + "0" * 64)


KILL_TRAIN = {"max_epochs": 30, "patience": 30, "checkpoint_every": 2}


def _train_flow(tiny: Path, out: Path) -> None:
    r"""Rule train_flow's function on the tiny latents (longer training, frequent checkpoints)."""

    run_train_flow(
        train=tiny / "results/latents/train.h5",
        val=tiny / "results/latents/val.h5",
        model=out / "model.pt",
        history=out / "history.csv",
        checkpoints=out / "ckpt",
        config=flow_config(**KILL_TRAIN),
        progress=False,
    )


def _train_flow_process(tiny: Path, out: Path) -> subprocess.Popen:
    r""":func:`_train_flow` in its own process (one torch thread, as in this one)."""

    code = f"""
        import torch; torch.set_num_threads(1)
        from pathlib import Path
        from test_faults import _train_flow
        _train_flow(Path({str(tiny)!r}), Path({str(out)!r}))
    """
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=Path(__file__).parent,
        env=env() | {"PYTHONPATH": os.pathsep.join(sys.path)},
        stderr=subprocess.PIPE,
        text=True,
    )


def _kill_when(proc: subprocess.Popen, ready, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready():
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def test_kill_9_twice_then_rerun_gives_the_uninterrupted_weights(tiny, tmp_path):
    ref, run = tmp_path / "ref", tmp_path / "run"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _train_flow(tiny, ref)  # the uninterrupted run, in this process
    finally:
        torch.set_num_threads(threads)

    ckpt = run / "ckpt" / "checkpoint.pt"
    _kill_when(_train_flow_process(tiny, run), ckpt.exists)  # point 1: right after the first checkpoint
    first = ckpt.stat().st_mtime_ns
    _kill_when(_train_flow_process(tiny, run), lambda: ckpt.stat().st_mtime_ns != first)  # point 2: resumed
    assert not (run / "model.pt").exists()
    proc = _train_flow_process(tiny, run)
    assert proc.wait() == 0, proc.stderr.read()[-3000:]

    a = load_torch_file(ref / "model.pt", FLOW_FORMAT, what=FLOW_WHAT)
    b = load_torch_file(run / "model.pt", FLOW_FORMAT, what=FLOW_WHAT)
    weights_a, weights_b = a["state_dict"], b["state_dict"]
    assert weights_a.keys() == weights_b.keys()
    for key in weights_a:
        assert torch.equal(weights_a[key], weights_b[key]), key
