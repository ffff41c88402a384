r"""The workflow on a REAL one-node SLURM cluster (tests/slurm_cluster.py), through the slurm executor.

Skipped, with the reason, only where SLURM cannot run (not installed: `make slurm`; not root;
a real /etc/slurm/slurm.conf present). Two tests need no SLURM: the profile of a real cluster
(profiles/slurm) is checked with a dry run, and pre-emption (SIGTERM to the job's processes
mid-training, then a rerun that resumes from the checkpoint) with the local executor.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from _workflow import copy_workflow
from slurm_cluster import PARTITION, LocalSlurm, unavailable_reason

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # the venv running the tests: snakemake and the jobs use it
SLURM_REASON = unavailable_reason()
_skip_without_slurm = pytest.mark.skipif(SLURM_REASON is not None, reason=f"no local SLURM: {SLURM_REASON}")


def needs_slurm(test):
    r"""Mark a test as needing the local SLURM cluster (and skip it, with the reason, where there is none)."""

    return pytest.mark.slurm(_skip_without_slurm(test))


TRAINING_RULES = ("train_autoencoder", "train_flow")


def _env() -> dict[str, str]:
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "PYTHONUNBUFFERED": "1"}


def run_snakemake(args: list[str], cwd: Path, timeout_s: int) -> subprocess.CompletedProcess:
    r"""Run snakemake (hard-killed after ``timeout_s``) and return it with stdout+stderr merged."""

    cmd = ["timeout", "-k", "10", str(timeout_s), str(BIN / "snakemake"), *args]
    res = subprocess.run(cmd, cwd=cwd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert res.returncode not in (124, 137), f"snakemake timed out after {timeout_s} s:\n{res.stdout[-4000:]}"
    return res


def job_resources(dry_run_output: str) -> dict[str, dict[str, str]]:
    r"""``{rule: {resource: value}}`` from the job blocks of a ``snakemake -n`` output."""

    out: dict[str, dict[str, str]] = {}
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", dry_run_output):
        m = re.match(r"(?:local)?rule (\w+):", block)
        r = re.search(r"^\s+resources: (.*)$", block, re.M)
        if m and r:
            out[m.group(1)] = dict(kv.split("=", 1) for kv in r.group(1).split(", ") if "=" in kv)
    return out


def slurm_jobs(cluster: LocalSlurm) -> dict[str, dict[str, str]]:
    r"""``{job id: scontrol fields}`` of every job the controller still knows."""

    jobs = {}
    for jid in cluster.job_ids():
        res = subprocess.run(["scontrol", "-o", "show", "job", jid], capture_output=True, text=True, env=cluster.env())
        jobs[jid] = dict(kv.split("=", 1) for kv in res.stdout.split() if "=" in kv)
    return jobs


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if SLURM_REASON is not None:
        pytest.skip(f"no local SLURM: {SLURM_REASON}")
    c = LocalSlurm(tmp_path_factory.mktemp("slurm"), gpus=1)
    c.start()
    try:
        yield c
    finally:
        c.stop()


def edited_production_profile(dest: Path, partition: str) -> Path:
    r"""profiles/slurm as a user edits it for the test cluster; returns the profile folder.

    The three CHANGE_ME names become the test partition and the account is dropped (docs/cluster.md,
    section 1); the test cluster has no accounting database, so status queries use squeue (same
    section), checked 1 s after submission.
    """

    text = (ROOT / "profiles/slurm/config.yaml").read_text()
    for name in ("CHANGE_ME_cpu_partition", "CHANGE_ME_gpu_partition", "CHANGE_ME_account"):
        assert text.count(name) == 1, f"profiles/slurm/config.yaml: {name} must be written exactly once"
    profile = yaml.safe_load(
        text.replace("CHANGE_ME_cpu_partition", partition).replace("CHANGE_ME_gpu_partition", partition)
    )
    del profile["default-resources"]["slurm_account"]
    profile["slurm-status-command"] = "squeue"
    profile["slurm-init-seconds-before-status-checks"] = 1
    profile["latency-wait"] = 5
    profile["retries"] = 0  # the failing job below must fail once, not three times
    (dest / "config.yaml").parent.mkdir(parents=True, exist_ok=True)
    (dest / "config.yaml").write_text(yaml.safe_dump(profile))
    return dest


TINY_SNAKEFILE = r"""
rule all:
    input: "cpu.txt", "gpu.txt", "never.txt"

rule cpu_job:
    output: "cpu.txt"
    threads: 2
    shell: "echo $SLURM_JOB_ID > {output}; echo $SLURM_CPUS_PER_TASK >> {output}"

# Named like a training rule: gets the profile's set-resources (GPU partition, --signal=TERM@300).
rule train_flow:
    output: "gpu.txt"
    resources: gpu=1
    shell: "echo $SLURM_JOB_ID > {output}; echo ${{CUDA_VISIBLE_DEVICES:-unset}} >> {output}"

rule failing_job:
    output: "never.txt"
    shell: "echo failing on purpose >&2; exit 3"
"""


@needs_slurm
def test_production_profile_runs_cpu_and_gpu_jobs_and_reports_failure(cluster, tmp_path):
    profile = edited_production_profile(tmp_path / "profile", partition=PARTITION)
    wd = tmp_path / "wd"
    wd.mkdir()
    (wd / "Snakefile").write_text(TINY_SNAKEFILE)
    t0 = time.monotonic()
    res = run_snakemake(["--profile", str(profile)], wd, 300)
    wall = time.monotonic() - t0
    log = res.stdout

    # The failing job is reported as FAILED by SLURM and the run exits 1 (keep-going: the others complete).
    assert res.returncode == 1, log[-4000:]
    assert "SLURM status is: 'FAILED'" in log, log[-4000:]
    assert not (wd / "never.txt").exists()
    failed_logs = list((wd / "logs/slurm/rule_failing_job").glob("*.log"))
    assert failed_logs and "failing on purpose" in failed_logs[0].read_text()

    cpu_id, cpus = (wd / "cpu.txt").read_text().split()
    gpu_id, cuda_devices = (wd / "gpu.txt").read_text().split()
    assert cpu_id.isdigit() and gpu_id.isdigit() and cpu_id != gpu_id  # ran as two SLURM jobs
    assert cpus == "2"  # threads: 2 -> --cpus-per-task=2

    jobs = slurm_jobs(cluster)
    assert jobs[cpu_id]["JobState"] == "COMPLETED" and jobs[gpu_id]["JobState"] == "COMPLETED"
    # resources: gpu=1 -> sbatch --gpus=1 -> SLURM allocates the node's (stand-in) GPU 0.
    assert jobs[gpu_id]["TresPerJob"] == "gres:gpu:1" and cuda_devices == "0"
    assert "TresPerJob" not in jobs[cpu_id]
    failed = [j for j in jobs.values() if j["JobState"] == "FAILED"]
    assert len(failed) == 1 and failed[0]["ExitCode"].startswith("1:")
    # slurm-keep-successful-logs: the SLURM logs of the successful jobs are kept under logs/slurm/.
    assert (wd / f"logs/slurm/rule_train_flow/{gpu_id}.log").exists()
    print(f"tiny SLURM run (3 jobs, 1 failing): {wall:.1f} s")


def _has_stage_rules(*stages: str) -> bool:
    return all((ROOT / "rules" / f"{s}.smk").exists() for s in stages)


@pytest.mark.skipif(
    not _has_stage_rules("data", "autoencoder", "flow", "sampling", "metrics"),
    reason="the image pipeline's rule files are not all written yet",
)
def test_slurm_profile_dry_run_requests_gpus_for_training(tmp_path):
    wd = copy_workflow(tmp_path)
    res = run_snakemake(["--profile", "profiles/slurm", "-n", "results/metrics.json"], wd, 120)
    assert res.returncode == 0, res.stdout[-4000:]
    jobs = job_resources(res.stdout)
    for rule in TRAINING_RULES:
        assert jobs[rule]["gpu"] == "1", jobs[rule]
        assert jobs[rule]["slurm_partition"] == "CHANGE_ME_gpu_partition"
        assert jobs[rule]["slurm_account"] == "CHANGE_ME_account"
    others = [r for r in jobs if r not in TRAINING_RULES and r != "all"]
    assert others
    for rule in others:
        assert jobs[rule].get("gpu", "0") == "0", (rule, jobs[rule])
        assert jobs[rule]["slurm_partition"] == "CHANGE_ME_cpu_partition"

    # cluster.gpu_training: false -> the training rules ask for no GPU.
    (wd / "cpu.yaml").write_text(yaml.safe_dump({"cluster": {"gpu_training": False}}))
    res = run_snakemake(
        ["--profile", "profiles/slurm", "--configfile", "cpu.yaml", "-n", "results/metrics.json"], wd, 120
    )
    assert res.returncode == 0, res.stdout[-4000:]
    jobs = job_resources(res.stdout)
    for rule in TRAINING_RULES:
        assert jobs[rule].get("gpu", "0") == "0", jobs[rule]


@pytest.mark.slow
@needs_slurm
@pytest.mark.skipif(
    not _has_stage_rules("data", "autoencoder", "flow", "sampling", "metrics"),
    reason="the image pipeline's rule files are not all written yet",
)
def test_tiny_dag_runs_on_slurm(cluster, tmp_path):
    wd = copy_workflow(tmp_path)
    t0 = time.monotonic()
    res = run_snakemake(
        [
            "--profile",
            "profiles/slurm-test",
            "--configfile",
            "config/test.yaml",
            # Rules may ask for more threads than the test node has CPUs.
            "--max-threads",
            str(cluster.cpus),
            "results/metrics.json",
        ],
        wd,
        1500,
    )
    wall = time.monotonic() - t0
    assert res.returncode == 0, res.stdout[-6000:]
    metrics = json.loads((wd / "results/metrics.json").read_text())
    assert isinstance(metrics, dict) and metrics

    # Every job of the DAG ran as its own SLURM job, and completed.
    submitted = re.findall(r"submitted with SLURM jobid (\d+)", res.stdout)
    n_steps = re.search(r"(\d+) of (\d+) steps \(100%\) done", res.stdout)
    assert n_steps and len(submitted) == int(n_steps.group(2)), (len(submitted), n_steps and n_steps.group(0))
    jobs = slurm_jobs(cluster)
    assert all(jobs[j]["JobState"] == "COMPLETED" for j in submitted), {j: jobs[j]["JobState"] for j in submitted}
    names = {j: jobs[j].get("Comment", "") for j in submitted}
    for rule in TRAINING_RULES:  # cluster.gpu_training defaults to true: --gpus=1 on the stand-in GPU
        ids = [j for j, c in names.items() if c == f"rule_{rule}"]
        assert ids, f"no SLURM job for {rule}"
        assert jobs[ids[0]].get("TresPerJob") == "gres:gpu:1", jobs[ids[0]]
    print(f"tiny DAG on SLURM: {len(submitted)} jobs in {wall:.0f} s")


@pytest.mark.slow
@pytest.mark.skipif(
    not _has_stage_rules("data", "autoencoder"), reason="rules/data.smk or rules/autoencoder.smk missing"
)
def test_training_killed_by_sigterm_resumes_from_checkpoint(tmp_path):
    r"""SLURM pre-emption, as SLURM does it: SIGTERM to every process of the job mid-training.

    The training rule writes its checkpoint and fails; the rerun of the same command resumes from it.
    """

    wd = copy_workflow(tmp_path)
    # Long enough to be caught mid-training (the test stops it), checkpoints every 2 steps.
    long = {"autoencoder": {"train": {"max_epochs": 500, "patience": 500, "checkpoint_every": 2}}}
    (wd / "long.yaml").write_text(yaml.safe_dump(long))
    cmd = [
        str(BIN / "snakemake"),
        "--cores",
        "2",
        "--until",
        "train_autoencoder",
        "--configfile",
        "config/test.yaml",
        "long.yaml",
    ]
    ckpt = wd / "results/autoencoder/checkpoints/checkpoint.pt"
    log = wd / "logs/train_autoencoder.log"

    def run_until(ready, timeout_s: float) -> tuple[int, str]:
        with open(wd / "snakemake.out", "w") as out:
            proc = subprocess.Popen(
                cmd, cwd=wd, env=_env(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
            deadline = time.monotonic() + timeout_s
            try:
                while not ready():
                    assert proc.poll() is None, (wd / "snakemake.out").read_text()[-4000:]
                    assert time.monotonic() < deadline, f"not ready after {timeout_s} s"
                    time.sleep(0.2)
                os.killpg(proc.pid, signal.SIGTERM)  # like SLURM: every process of the job
                rc = proc.wait(timeout=120)
            finally:
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        return rc, (wd / "snakemake.out").read_text()

    # 1. Interrupted mid-training: checkpoint on disk, no model, the job failed.
    rc, out = run_until(ckpt.exists, 600)  # the first periodic checkpoint (atomic: complete once there)
    assert rc != 0, out[-3000:]
    # The engine checkpoints and exits 143 (128 + SIGTERM): the job fails, Snakemake/SLURM can retry it.
    assert "Error in rule train_autoencoder" in out and "exit status 143" in out, out[-3000:]
    assert ckpt.exists() and not (wd / "results/autoencoder/model.pt").exists()
    first_size = ckpt.stat().st_size
    assert first_size > 0

    # 2. The same command again resumes from that checkpoint (then is stopped again).
    rc, out = run_until(lambda: log.exists() and "resuming from" in log.read_text(), 300)
    m = re.search(r"resuming from \S+ at step (\d+)", log.read_text())
    assert m and int(m.group(1)) >= 2, log.read_text()[-3000:]
