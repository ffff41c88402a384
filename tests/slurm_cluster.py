r"""A real one-node SLURM cluster on 127.0.0.1 for the test suite (no mock).

:class:`LocalSlurm` writes a ``slurm.conf`` into a temporary folder, links it to
``/etc/slurm/slurm.conf`` (the job steps of the Snakemake SLURM plugin clear every ``SLURM_*``
variable, so ``SLURM_CONF`` alone is not enough), starts ``slurmctld -D`` and
``slurmd -D -N localhost`` in the background, waits until the node is idle, and on
:meth:`LocalSlurm.stop` cancels its jobs, stops both daemons by PID and removes the link.

No munge (``auth/none``, ``cred/none``), no slurmdbd (``accounting_storage/none``), so ``sacct``
does not work: profiles must use ``slurm-status-command: squeue`` and keep ``MinJobAge`` at least
3 x ``slurm-init-seconds-before-status-checks`` (else the plugin falls back to ``sacct``).

:func:`unavailable_reason` says why such a cluster cannot run here (``None`` when it can); the
SLURM binaries are installed by ``scripts/install-slurm.sh`` (``make slurm``).
"""

from __future__ import annotations

__all__ = ["MARKER", "SYSTEM_CONF", "LocalSlurm", "unavailable_reason"]

import fcntl
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

MARKER = "# morphoflow test cluster (tests/slurm_cluster.py)"
SYSTEM_CONF = Path("/etc/slurm/slurm.conf")
BINARIES = ("slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "scontrol", "scancel")
CTLD_PORT = 6817
SLURMD_PORT = 6818
LOCK_FILE = Path("/tmp/morphoflow-slurm-test.lock")
PARTITION = "debug"
MIN_JOB_AGE_S = 3600  # keep finished jobs visible to squeue/scontrol for the whole test session


def _ours(conf: Path) -> bool:
    r"""Whether ``conf`` (existing or dangling link) was written by this helper."""

    if conf.is_symlink() and not conf.exists():
        return True  # a dangling link left behind by a killed test run
    try:
        return conf.read_text(errors="replace").startswith(MARKER)
    except OSError:
        return False


def _port_busy(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _which(binary: str) -> str | None:
    r"""Path of a SLURM binary; the daemons live in sbin folders that a user's PATH may lack."""

    return shutil.which(binary) or shutil.which(binary, path="/usr/sbin:/usr/local/sbin:/sbin")


def unavailable_reason() -> str | None:
    r"""Why a local SLURM cluster cannot be started here, or ``None`` if it can."""

    missing = [b for b in BINARIES if _which(b) is None]
    if missing:
        return (
            f"SLURM is not installed (missing {', '.join(missing)}); "
            "run `make slurm` (scripts/install-slurm.sh, needs root + apt-get)"
        )
    if os.geteuid() != 0:
        return "a local SLURM test cluster needs root (slurmd, /etc/slurm/slurm.conf)"
    if (SYSTEM_CONF.exists() or SYSTEM_CONF.is_symlink()) and not _ours(SYSTEM_CONF):
        return f"{SYSTEM_CONF} exists and belongs to a real SLURM installation; not touching it"
    return None


def _total_memory_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    return 4096


class LocalSlurm:
    r"""A one-node SLURM cluster (node ``localhost``, partition ``debug``) living in ``root``.

    Arguments:
        root: A fresh folder for the configuration, spool, state, PID and log files.
        cpus: CPUs of the node (default: this machine's count).
        mem_mb: Memory of the node in MB (default: this machine's total, at least 16000 MB so
            that the default memory requests of the workflow's rules fit; memory is a consumable
            for scheduling only, nothing enforces it with ``task/none``).
        gpus: 0 or 1: whether the node declares one GPU (generic resource ``gpu`` backed by
            ``/dev/null``; SLURM needs a device file, nothing real is bound). Jobs asking
            ``--gpus=1`` are then scheduled and run (CPU code), which tests the GPU request path.
    """

    def __init__(self, root: str | os.PathLike, cpus: int | None = None, mem_mb: int | None = None, gpus: int = 1):
        self.root = Path(root).resolve()
        self.gpus = min(max(int(gpus), 0), 1)
        self.cpus = int(cpus or os.cpu_count() or 1)
        self.mem_mb = int(mem_mb or max(_total_memory_mb(), 16000))
        self.conf = self.root / "slurm.conf"
        self._procs: list[subprocess.Popen] = []
        self._lock = None
        self._linked = False

    # ------------------------------------------------------------------ configuration
    def config_text(self) -> str:
        r"""The ``slurm.conf`` of this cluster."""

        r = self.root
        return "\n".join(
            [
                MARKER,
                "ClusterName=morphoflowtest",
                "SlurmctldHost=localhost",
                f"SlurmctldPort={CTLD_PORT}",
                f"SlurmdPort={SLURMD_PORT}",
                "SlurmUser=root",
                "SlurmdUser=root",
                "AuthType=auth/none",
                "CredType=cred/none",
                "MpiDefault=none",
                "ProctrackType=proctrack/linuxproc",
                "TaskPlugin=task/none",
                "SelectType=select/cons_tres",
                "SelectTypeParameters=CR_Core_Memory",
                # The node may declare more memory than the machine has (scheduling only).
                "SlurmdParameters=config_overrides",
                "AccountingStorageType=accounting_storage/none",
                "JobAcctGatherType=jobacct_gather/none",
                "JobCompType=jobcomp/none",
                # squeue keeps finished jobs this long; the plugin's squeue status needs
                # MinJobAge >= 3 x slurm-init-seconds-before-status-checks.
                f"MinJobAge={MIN_JOB_AGE_S}",
                "ReturnToService=2",
                "SchedulerType=sched/backfill",
                "SlurmctldTimeout=30",
                "SlurmdTimeout=30",
                f"StateSaveLocation={r / 'state'}",
                f"SlurmdSpoolDir={r / 'spool'}",
                f"SlurmctldPidFile={r / 'slurmctld.pid'}",
                f"SlurmdPidFile={r / 'slurmd.pid'}",
                f"SlurmctldLogFile={r / 'slurmctld.log'}",
                f"SlurmdLogFile={r / 'slurmd.log'}",
                "SlurmctldDebug=info",
                "SlurmdDebug=info",
                *(["GresTypes=gpu"] if self.gpus else []),
                f"NodeName=localhost NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory={self.mem_mb}"
                + (f" Gres=gpu:{self.gpus}" if self.gpus else "")
                + " State=UNKNOWN",
                f"PartitionName={PARTITION} Nodes=localhost Default=YES MaxTime=INFINITE State=UP",
                "",
            ]
        )

    def env(self) -> dict[str, str]:
        r"""Environment for SLURM client commands (``SLURM_CONF`` set, also linked system-wide)."""

        return {**os.environ, "SLURM_CONF": str(self.conf)}

    # ------------------------------------------------------------------ life cycle
    def start(self, timeout: float = 30.0) -> LocalSlurm:
        r"""Start both daemons and wait until the node is idle.

        Raises:
            RuntimeError: when SLURM cannot run here (see :func:`unavailable_reason`) or the
                node does not become idle within ``timeout`` seconds (the daemons' log tails
                are in the message).
        """

        reason = unavailable_reason()
        if reason:
            raise RuntimeError(reason)
        # One test cluster per machine at a time (ports 6817/6818 and /etc/slurm/slurm.conf).
        self._lock = open(LOCK_FILE, "w")  # noqa: SIM115 - held (locked) until stop()
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        try:
            for port in (CTLD_PORT, SLURMD_PORT):
                if _port_busy(port):
                    raise RuntimeError(f"port {port} on 127.0.0.1 is in use (another slurmctld/slurmd runs)")
            for sub in ("state", "spool"):
                (self.root / sub).mkdir(parents=True, exist_ok=True)
            self.conf.write_text(self.config_text())
            # A stand-in GPU (slurmd drops GPUs without a File); gres.conf is read beside slurm.conf.
            (self.root / "gres.conf").write_text(
                f"{MARKER}\nAutoDetect=off\n" + ("NodeName=localhost Name=gpu File=/dev/null\n" if self.gpus else "")
            )
            SYSTEM_CONF.parent.mkdir(parents=True, exist_ok=True)
            if SYSTEM_CONF.is_symlink() or SYSTEM_CONF.exists():
                SYSTEM_CONF.unlink()  # ours (checked by unavailable_reason)
            SYSTEM_CONF.symlink_to(self.conf)
            self._linked = True
            env = self.env()
            for cmd, name in (
                (["slurmctld", "-D", "-i", "-f", str(self.conf)], "slurmctld"),
                (["slurmd", "-D", "-N", "localhost", "-f", str(self.conf)], "slurmd"),
            ):
                cmd[0] = _which(cmd[0])
                out = open(self.root / f"{name}.stdout", "w")  # noqa: SIM115 - the daemon writes to it
                self._procs.append(
                    subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
                )
            self._wait_idle(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_idle(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            for p in self._procs:
                if p.poll() is not None:
                    raise RuntimeError(f"{p.args[0]} exited with code {p.returncode}:\n{self.log_tail()}")
            res = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, env=self.env())
            state = res.stdout.strip()
            if state == "idle":
                return
            time.sleep(0.25)
        raise RuntimeError(f"SLURM node not idle after {timeout:.0f} s (state {state!r}):\n{self.log_tail()}")

    def log_tail(self, lines: int = 15) -> str:
        r"""The last lines of both daemons' logs (for error messages)."""

        parts = []
        for name in ("slurmctld.log", "slurmd.log", "slurmctld.stdout", "slurmd.stdout"):
            p = self.root / name
            if p.exists():
                tail = p.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"--- {p}\n" + "\n".join(tail))
        return "\n".join(parts)

    def job_ids(self) -> list[str]:
        r"""IDs of the jobs the controller still knows (running, pending or recently finished)."""

        res = subprocess.run(["squeue", "-h", "-t", "all", "-o", "%i"], capture_output=True, text=True, env=self.env())
        return res.stdout.split()

    def stop(self) -> None:
        r"""Cancel remaining jobs, stop the daemons by PID, remove the ``/etc/slurm`` link."""

        if self._procs and all(p.poll() is None for p in self._procs):
            res = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True, env=self.env())
            ids = res.stdout.split()
            if ids:
                subprocess.run(["scancel", *ids], capture_output=True, env=self.env())
                time.sleep(1.0)
        for p in reversed(self._procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in reversed(self._procs):
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=5)
        self._procs.clear()
        if self._linked and SYSTEM_CONF.is_symlink() and os.readlink(SYSTEM_CONF) == str(self.conf):
            SYSTEM_CONF.unlink()
        self._linked = False
        if self._lock is not None:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None

    def __enter__(self) -> LocalSlurm:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
