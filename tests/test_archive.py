from __future__ import annotations

import io
import tarfile

import pytest

from morphoflow.data.archive import ArchiveError, safe_extract


def make_tar(path, members):
    r"""members: list of (TarInfo, bytes or None)."""
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return path


def file_member(name, data=b"hello"):
    return tarfile.TarInfo(name), data


def link_member(name, target, kind=tarfile.SYMTYPE):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info, None


def test_extracts_a_good_archive(tmp_path):
    d = tarfile.TarInfo("top")
    d.type = tarfile.DIRTYPE
    tar = make_tar(
        tmp_path / "ok.tar.gz", [(d, None), file_member("top/a.txt", b"abc"), link_member("top/b.txt", "a.txt")]
    )
    out = safe_extract(tar, tmp_path / "dest")
    assert (out / "top" / "a.txt").read_bytes() == b"abc"
    assert (out / "top" / "b.txt").read_bytes() == b"abc"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize(
    "member, why",
    [
        (file_member("../evil.txt"), "climbs out"),
        (file_member("top/../../evil.txt"), "climbs out"),
        (file_member("/tmp/evil.txt"), "absolute path"),
        (link_member("top/link", "../../outside"), "points outside"),
        (link_member("top/abs", "/etc/passwd"), "points outside"),
        (link_member("top/hard", "../x", kind=tarfile.LNKTYPE), "outside|climbs out"),
        (link_member("top/dev", "", kind=tarfile.CHRTYPE), "special file"),
    ],
)
def test_rejects_unsafe_members(tmp_path, member, why):
    tar = make_tar(tmp_path / "bad.tar.gz", [file_member("top/ok.txt"), member])
    with pytest.raises(ArchiveError, match=why) as err:
        safe_extract(tar, tmp_path / "sub" / "dest")
    assert "bad.tar.gz" in str(err.value)
    assert not (tmp_path / "evil.txt").exists()
    assert not (tmp_path / "sub" / "dest").exists()
    assert list((tmp_path / "sub").iterdir()) == []  # temporary folder removed


def test_corrupt_archive_is_named(tmp_path):
    good = make_tar(tmp_path / "good.tar.gz", [file_member("top/a.bin", bytes(200_000))])
    bad = tmp_path / "truncated.tar.gz"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ArchiveError, match="truncated.tar.gz"):
        safe_extract(bad, tmp_path / "dest")
    (tmp_path / "noise.tar.gz").write_bytes(b"not an archive at all")
    with pytest.raises(ArchiveError, match="noise.tar.gz: corrupt"):
        safe_extract(tmp_path / "noise.tar.gz", tmp_path / "dest")
    assert not (tmp_path / "dest").exists()
