from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from _cosmos_fixture import FileServer
from _workflow import copy_workflow
from morphoflow.config import load_config
from morphoflow.data.download import DownloadError, check_pin, fetch, run_download, verify

PAYLOAD = bytes(range(256)) * 4000  # ~1 MB


def sha(b: bytes) -> str:
    return "sha256:" + hashlib.sha256(b).hexdigest()


def test_resume_after_dropped_connection(tmp_path):
    with FileServer({"/f.tar.gz": PAYLOAD}, cut_first=True) as srv:
        out = fetch(
            f"{srv.url}/f.tar.gz",
            tmp_path / "f.tar.gz",
            known_hash=sha(PAYLOAD),
            backoff=0,
            chunk_size=4096,
            progress=False,
        )
    assert out.read_bytes() == PAYLOAD
    # First request without Range was cut half-way; the second resumed from the bytes kept.
    assert srv.requests[0][1] is None
    resumed = srv.requests[1][1]
    assert resumed is not None and 0 < int(resumed[6:-1]) < len(PAYLOAD)
    assert len(srv.requests) == 2
    assert not (tmp_path / "f.tar.gz.part").exists()


def test_resume_of_partial_file_from_earlier_run_and_hash_recorded(tmp_path):
    (tmp_path / "f.bin.part").write_bytes(PAYLOAD[:1000])
    with FileServer({"/f.bin": PAYLOAD}) as srv:
        out = fetch(f"{srv.url}/f.bin", tmp_path / "f.bin", progress=False)
    assert srv.requests == [("/f.bin", "bytes=1000-")]
    assert out.read_bytes() == PAYLOAD
    # No checksum configured: the first download's SHA-256 is recorded and checked on reuse.
    assert (tmp_path / "f.bin.sha256").read_text().strip() == sha(PAYLOAD)
    out.write_bytes(PAYLOAD[:-1] + b"\x00")  # corrupted on disk later
    with pytest.raises(DownloadError, match="checksum mismatch"):
        fetch("http://127.0.0.1:9/unused", out, progress=False)


def test_checksum_mismatch_leaves_no_file(tmp_path):
    with FileServer({"/f.bin": PAYLOAD}) as srv, pytest.raises(DownloadError, match="checksum mismatch") as err:
        fetch(f"{srv.url}/f.bin", tmp_path / "f.bin", known_hash=sha(b"something else"), progress=False)
    assert f"{srv.url}/f.bin" in str(err.value)
    assert not (tmp_path / "f.bin").exists()
    assert not (tmp_path / "f.bin.part").exists()


def test_md5_hash_and_reuse_without_network(tmp_path):
    md5 = "md5:" + hashlib.md5(PAYLOAD).hexdigest()
    with FileServer({"/f.bin": PAYLOAD}) as srv:
        fetch(f"{srv.url}/f.bin", tmp_path / "f.bin", known_hash=md5, progress=False)
    assert verify(tmp_path / "f.bin", md5) == md5
    # The server is gone: an existing verified file is reused, nothing is fetched.
    assert fetch(f"{srv.url}/f.bin", tmp_path / "f.bin", known_hash=md5).read_bytes() == PAYLOAD


def test_http_error_is_named(tmp_path):
    with FileServer({}) as srv, pytest.raises(DownloadError, match="HTTP error 404"):
        fetch(f"{srv.url}/missing", tmp_path / "x", progress=False)


def test_unreachable_host_fails_with_one_line(tmp_path, caplog):
    with socket.socket() as s:  # a port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = load_config(
        overrides={"download": {"url": f"http://127.0.0.1:{port}/COSMOS.tar.gz", "retries": 3, "timeout_s": 2}}
    )
    with pytest.raises(SystemExit) as exc:
        run_download(tarball=tmp_path / "c.tar.gz", config={"download": config["download"]})
    assert exc.value.code == 1
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "\n" not in errors[0]
    assert errors[0].startswith(f"download failed: http://127.0.0.1:{port}/COSMOS.tar.gz: cannot connect")
    assert not (tmp_path / "c.tar.gz").exists()


def test_mismatch_with_recorded_hash_is_checked_before_the_rename(tmp_path):
    # known_hash null, a <name>.sha256 left by an earlier download, the file itself deleted: the new
    # download differs, so it must not get the final name (outside Snakemake nothing would remove it).
    (tmp_path / "f.bin.sha256").write_text(sha(b"the old file") + "\n")
    with FileServer({"/f.bin": PAYLOAD}) as srv, pytest.raises(DownloadError, match="checksum mismatch") as err:
        fetch(f"{srv.url}/f.bin", tmp_path / "f.bin", progress=False)
    message = str(err.value)
    assert f"{srv.url}/f.bin" in message and f"delete the stale {tmp_path / 'f.bin.sha256'}" in message
    assert not (tmp_path / "f.bin").exists() and not (tmp_path / "f.bin.part").exists()


def test_pin_differing_from_record_is_refused(tmp_path):
    (tmp_path / "f.bin").write_bytes(PAYLOAD)
    verify(tmp_path / "f.bin")  # records the hash
    check_pin(tmp_path / "f.bin", sha(PAYLOAD).upper().removeprefix("SHA256:"))  # bare hex, same hash: fine
    with pytest.raises(DownloadError, match=r"differs from the hash recorded.*delete"):
        check_pin(tmp_path / "f.bin", sha(b"other"))


@pytest.mark.slow
def test_pinning_the_recorded_hash_does_not_rerun(tmp_path):
    work = copy_workflow(tmp_path / "wf")
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    target = "resources/cosmos/COSMOS_25.2_training_sample.tar.gz"

    def snakemake(known_hash, *args):
        overlay = {"download": {"url": f"{srv.url}/COSMOS_{{sample}}_training_sample.tar.gz", "known_hash": known_hash}}
        (work / "pin.yaml").write_text(yaml.safe_dump(overlay))
        cmd = [str(Path(sys.executable).with_name("snakemake")), target, *args, "--configfile", "pin.yaml"]
        return subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=300)

    with FileServer({"/COSMOS_25.2_training_sample.tar.gz": PAYLOAD}) as srv:
        first = snakemake(None, "--cores", "1")
        assert first.returncode == 0, first.stderr[-3000:]
        recorded = (work / f"{target}.sha256").read_text().strip()
        assert recorded == sha(PAYLOAD)
        pinned = snakemake(recorded, "--cores", "1", "--dry-run")
    assert pinned.returncode == 0, pinned.stderr[-3000:]
    assert "Nothing to be done" in pinned.stdout + pinned.stderr
    assert len(srv.requests) == 1
