"""Star-particle data side: GalacticFlow .npy reader, star files, simulator, cleaning, rendering."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from morphoflow.config import load_config
from morphoflow.contract import ContractError, read_galaxies
from morphoflow.particles.clean import clean_galaxy
from morphoflow.particles.io import (
    NPY_COLUMNS,
    StarSet,
    read_npy_folder,
    read_npy_galaxy,
    read_stars,
    write_npy_galaxy,
    write_stars,
)
from morphoflow.particles.pipeline import run_particles_clean, run_particles_render, run_particles_simulate
from morphoflow.particles.simulate import simulate_galaxy, simulate_stars


def section(name: str, **overrides) -> dict:
    r"""The validated ``particles.<name>`` config section: schema defaults with ``overrides``."""
    return load_config(overrides={"particles": {name: overrides}})["particles"][name]


SMALL = section("simulate", n_galaxies=6, n_stars_range=[300, 600])


def _galaxy(n: int = 50, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    stars = rng.normal(size=(n, len(NPY_COLUMNS)))
    stars[:, NPY_COLUMNS.index("Z")] = rng.uniform(0.001, 0.03, n)
    stars[:, NPY_COLUMNS.index("mass")] = rng.uniform(1e4, 2e4, n)
    stars[:, NPY_COLUMNS.index("age")] = rng.uniform(0.1, 13, n)
    return stars


def test_npy_reader_round_trips_galacticflow_layout(tmp_path):
    stars = _galaxy(37)
    path = tmp_path / "g1.23e11_1.5e12.npy"
    write_npy_galaxy(path, stars)
    assert np.load(path).shape == (11, 37)  # GalacticFlow's on-disk layout: one column per star
    back, m_dm = read_npy_galaxy(path)
    np.testing.assert_array_equal(back, stars)
    assert m_dm == pytest.approx(1.5e12)

    # A plain (N, 11) array and a structured array read the same.
    np.save(tmp_path / "plain.npy", stars)
    np.testing.assert_array_equal(read_npy_galaxy(tmp_path / "plain.npy")[0], stars)
    rec = np.zeros(37, dtype=[(c, "f8") for c in NPY_COLUMNS])
    for i, c in enumerate(NPY_COLUMNS):
        rec[c] = stars[:, i]
    np.save(tmp_path / "rec.npy", rec)
    back_rec, m_nan = read_npy_galaxy(tmp_path / "rec.npy")
    np.testing.assert_array_equal(back_rec, stars)
    assert np.isnan(m_nan)


def test_npy_reader_names_bad_file(tmp_path):
    np.save(tmp_path / "bad.npy", np.zeros((5, 7)))
    with pytest.raises(ContractError, match=r"bad\.npy"):
        read_npy_galaxy(tmp_path / "bad.npy")
    with pytest.raises(ContractError, match="npy_folder"):
        read_npy_folder(tmp_path / "missing")


def test_npy_folder_to_star_file(tmp_path):
    for k, n in enumerate((20, 35)):
        write_npy_galaxy(tmp_path / "npy" / f"gal{k}_{(k + 1) * 1e11:g}.npy", _galaxy(n, k))
    ss = read_npy_folder(tmp_path / "npy")
    assert list(ss.counts) == [20, 35]
    assert list(ss.catalog["m_dm"]) == [1e11, 2e11]
    write_stars(tmp_path / "stars.h5", ss)
    back = read_stars(tmp_path / "stars.h5")
    np.testing.assert_allclose(back.galaxy(1), _galaxy(35, 1), rtol=1e-6)
    assert back.columns == NPY_COLUMNS
    with h5py.File(tmp_path / "stars.h5", "a") as f:
        del f["offsets"]
    with pytest.raises(ContractError, match="offsets"):
        read_stars(tmp_path / "stars.h5")


def test_simulated_galaxy_depends_only_on_its_id():
    a = simulate_stars(7, {**SMALL, "n_galaxies": 3})
    b = simulate_stars(7, {**SMALL, "n_galaxies": 6})
    np.testing.assert_array_equal(a.galaxy(2), b.galaxy(2))
    assert not np.array_equal(b.galaxy(2), simulate_stars(8, {**SMALL, "n_galaxies": 3}).galaxy(2))
    stars, truth = simulate_galaxy(7, 2, SMALL)
    assert np.log10(stars[:, NPY_COLUMNS.index("mass")].sum()) == pytest.approx(truth["log_mstar_true"])
    age = stars[:, NPY_COLUMNS.index("age")]
    assert (age > 0).all() and (age <= 13.8).all()


def test_cleaning_cuts_satellite_and_aligns_disk():
    stars, _ = simulate_galaxy(3, 11, section("simulate", n_stars_range=[2000, 2000], contamination=0.03))
    cols = NPY_COLUMNS
    r_before = np.linalg.norm(stars[:, :3], axis=1)
    assert r_before.max() > 27.7  # the satellite lies beyond the cap
    out, counts = clean_galaxy(stars, cols, section("clean", percentile=99.5))
    assert counts["radius_capped"] == 1 and counts["removed_radius"] >= 0.02 * len(stars)
    assert counts["stars_in"] - counts["removed_radius"] - counts["removed_top_z"] - counts["removed_feh"] - counts[
        "removed_ofe"
    ] == len(out)
    assert np.linalg.norm(out[:, :3], axis=1).max() <= 27.7
    assert (out[:, cols.index("feh")] >= -8).all()  # the -9 dex outliers are gone
    m = out[:, cols.index("mass")]
    ang = (m[:, None] * np.cross(out[:, 0:3], out[:, 3:6])).sum(0)
    assert ang[2] > 0.99 * np.linalg.norm(ang)  # angular momentum along +z
    # The disk is thin after alignment: z spread much smaller than x, y.
    assert np.std(out[:, 2]) < 0.5 * min(np.std(out[:, 0]), np.std(out[:, 1]))
    # PCA major axis along x.
    assert np.var(out[:, 0]) >= np.var(out[:, 1])
    # Too few stars: the galaxy is dropped.
    dropped, c2 = clean_galaxy(stars[:150], cols, section("clean", n_min=1000))
    assert dropped is None and c2["stars_out"] == 0


def test_clean_and_render_rules_write_contract_files(tmp_path):
    run_particles_simulate(raw_stars=tmp_path / "raw_stars.h5", config={"particles": {"simulate": SMALL}, "seed": 5})
    report = run_particles_clean(
        raw_stars=tmp_path / "raw_stars.h5",
        stars=tmp_path / "stars.h5",
        cleaning=tmp_path / "cleaning.json",
        config={"particles": {"clean": section("clean")}},
    )
    assert json.loads((tmp_path / "cleaning.json").read_text())["stars_out"] == report["stars_out"]
    ss = read_stars(tmp_path / "stars.h5")
    assert report["stars_out"] == len(ss.stars) and report["galaxies_out"] == len(ss)
    for key in ("log_mstar", "age_median_gyr", "age_p10_gyr", "log_mean_z"):
        assert np.isfinite(ss.catalog[key]).all()
    assert (ss.catalog["age_p10_gyr"] < ss.catalog["age_median_gyr"]).all()

    render = {"particles": {"render": section("render", stamp_size=32)}, "seed": 5}
    run_particles_render(stars=tmp_path / "stars.h5", raw=tmp_path / "raw.h5", config=render)
    gs = read_galaxies(tmp_path / "raw.h5")
    assert gs.images.shape == (len(ss), 1, 32, 32)
    np.testing.assert_array_equal(gs.ids, ss.ids)
    assert gs.psf.shape == (1, 1, 32, 32) and gs.psf.sum() == pytest.approx(1, abs=1e-5)
    assert np.unravel_index(np.argmax(gs.psf[0, 0]), (32, 32)) == (16, 16)
    # Truth holds the light that falls in the stamp: at most the catalog flux, most of it for compact galaxies.
    frac = gs.truth.sum(axis=(1, 2, 3)) / gs.catalog["flux"]
    assert (frac <= 1 + 1e-5).all() and np.median(frac) > 0.8
    np.testing.assert_allclose(gs.catalog["mag"], 25.0 - 2.5 * np.log10(gs.catalog["flux"]), rtol=1e-6)
    # More stellar mass of similar age shines brighter: magnitude anti-correlates with log M*.
    assert np.corrcoef(gs.catalog["mag"], ss.catalog["log_mstar"])[0, 1] < -0.5
    # Rerun: identical output (per-galaxy seeds).
    run_particles_render(stars=tmp_path / "stars.h5", raw=tmp_path / "raw2.h5", config=render)
    np.testing.assert_array_equal(read_galaxies(tmp_path / "raw2.h5").images, gs.images)


def test_star_set_validation():
    ss = StarSet.from_list([_galaxy(5), _galaxy(6)], {"id": np.array([3, 3])})
    with pytest.raises(ContractError, match="duplicate"):
        ss.validate("x.h5")
