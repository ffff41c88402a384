"""The data contract: round trip, validation errors that name the file and dataset, atomic writes."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from morphoflow.atomic import atomic_path
from morphoflow.contract import ContractError, GalaxySet, check_file, read_galaxies, write_galaxies


def make_set(n: int = 5, size: int = 16, per_galaxy_psf: bool = False) -> GalaxySet:
    rng = np.random.default_rng(0)
    psf = np.zeros((n if per_galaxy_psf else 1, 1, size, size), np.float32)
    psf[..., size // 2, size // 2] = 1.0
    return GalaxySet(
        images=rng.normal(size=(n, 1, size, size)).astype(np.float32),
        psf=psf,
        noise_sigma=np.full(n, 0.5, np.float32),
        catalog={"id": np.arange(n) + 10, "mag": np.linspace(20, 24, n), "hlr_arcsec": np.full(n, 0.3)},
        attrs={"pixel_scale_arcsec": 0.03, "band": "F814W", "zeropoint_ab": 25.94, "source": "test"},
        truth=rng.random((n, 1, size, size)).astype(np.float32),
        noise_power=np.full((1, 1, size, size // 2 + 1), 0.25, np.float32),
    )


def test_round_trip(tmp_path):
    gs = make_set()
    path = tmp_path / "a.h5"
    write_galaxies(path, gs)
    back = read_galaxies(path)
    np.testing.assert_array_equal(back.images, gs.images)
    np.testing.assert_array_equal(back.truth, gs.truth)
    np.testing.assert_array_equal(back.catalog["id"], gs.catalog["id"])
    assert back.units["hlr_arcsec"] == "arcsec" and back.units["mag"] == "mag(AB)"
    assert back.attrs["format_version"] == 1 and back.pixel_scale == pytest.approx(0.03)
    with h5py.File(path) as f:
        assert f["images"].chunks == (1, 1, 16, 16)
        assert f["images"].compression == "gzip"


def test_subset_keeps_shared_psf():
    gs = make_set(n=6)
    sub = gs.subset(np.array([1, 3]))
    assert len(sub) == 2 and sub.psf.shape[0] == 1
    assert sub.psf_of(slice(None)).shape == (2, 1, 16, 16)
    per = make_set(n=6, per_galaxy_psf=True).subset(np.array([0, 2, 4]))
    assert per.psf.shape[0] == 3


@pytest.mark.parametrize(
    "dataset, mutate",
    [
        ("images", lambda f: f.__delitem__("images")),
        ("noise_sigma", lambda f: (f.__delitem__("noise_sigma"), f.create_dataset("noise_sigma", data=np.ones(3)))),
        ("psf", lambda f: (f.__delitem__("psf"), f.create_dataset("psf", data=np.ones((1, 1, 8, 8))))),
        ("catalog/id", lambda f: f["catalog"].__delitem__("id")),
        ("pixel_scale_arcsec", lambda f: f.attrs.__delitem__("pixel_scale_arcsec")),
    ],
)
def test_errors_name_file_and_dataset(tmp_path, dataset, mutate):
    path = tmp_path / "bad.h5"
    write_galaxies(path, make_set())
    with h5py.File(path, "a") as f:
        mutate(f)
    with pytest.raises(ContractError) as err:
        check_file(path)
    assert str(path) in str(err.value) and dataset.split("/")[-1] in str(err.value)


def test_non_finite_and_missing_file(tmp_path):
    gs = make_set()
    gs.images[2, 0, 3, 3] = np.nan
    path = tmp_path / "nan.h5"
    with pytest.raises(ContractError, match="'images' holds non-finite"):
        write_galaxies(path, gs)  # the writer refuses what the reader refuses
    assert not path.exists()
    write_galaxies(path, gs, raw=True)  # a raw file may hold them (preprocess cleans them)
    with pytest.raises(ContractError, match="'images' holds non-finite"):
        read_galaxies(path)
    with pytest.raises(ContractError, match="file not found"):
        read_galaxies(tmp_path / "missing.h5")
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    with pytest.raises(ContractError, match="not a readable HDF5"):
        read_galaxies(tmp_path / "junk.h5")


def test_write_refuses_bad_shapes_and_unknown_units(tmp_path):
    gs = make_set()
    gs.noise_sigma = gs.noise_sigma[:2]
    with pytest.raises(ContractError, match="noise_sigma"):
        write_galaxies(tmp_path / "x.h5", gs)
    gs = make_set()
    gs.catalog["weird"] = np.ones(5)
    with pytest.raises(ContractError, match="'weird' has no unit"):
        write_galaxies(tmp_path / "y.h5", gs)
    assert not list(tmp_path.iterdir()), "a failed write leaves no file behind"
    gs.units["weird"] = "furlong"
    write_galaxies(tmp_path / "y.h5", gs)
    assert read_galaxies(tmp_path / "y.h5").units["weird"] == "furlong"


def test_atomic_path_leaves_nothing_on_error(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]
    with atomic_path(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new"
