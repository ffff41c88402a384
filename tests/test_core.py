"""Seeding and configuration helpers."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from morphoflow.config import DEFAULT_SCHEMA, SCHEMA_DIR, ConfigError, fill_defaults, load_config, load_schema
from morphoflow.seeding import hash_unit, item_rng, item_seed

ROOT = Path(__file__).resolve().parents[1]


def test_item_seed_is_order_and_thread_independent():
    ids = list(range(200))
    serial = [item_seed(42, i, "simulate") for i in ids]
    with ThreadPoolExecutor(4) as pool:
        parallel = list(pool.map(lambda i: item_seed(42, i, "simulate"), reversed(ids)))
    assert serial == parallel[::-1]
    assert len(set(serial)) == len(serial)
    assert item_seed(42, 1, "a") != item_seed(42, 1, "b") != item_seed(43, 1, "b")
    assert item_rng(1, 2).normal() == item_rng(1, 2).normal()


def test_hash_unit_is_uniform_enough():
    u = [hash_unit(i) for i in range(5000)]
    assert min(u) >= 0 and max(u) < 1
    assert abs(sum(x < 0.8 for x in u) / len(u) - 0.8) < 0.03


def test_schema_inlines_every_section():
    schema = load_schema(DEFAULT_SCHEMA)
    for section in ("data", "simulate", "preprocess", "autoencoder", "flow", "sample", "metrics"):
        assert "$ref" not in schema["properties"][section]
        assert schema["properties"][section]["type"] == "object"


def test_default_config_validates_and_fills_defaults():
    config = load_config(ROOT / "config/config.yaml")
    assert config["seed"] == 42 and config["data"]["source"] == "simulate"
    config = fill_defaults({})
    assert config["mode"] == "images" and "simulate" in config


@pytest.mark.parametrize(
    "extra", ["test.yaml", "hdf.yaml", "cosmos.yaml", "particles.yaml", "smooth.yaml", "gpu.yaml", "groundbased.yaml"]
)
def test_shipped_configs_validate(extra):
    load_config(ROOT / "config/config.yaml", ROOT / "config" / extra)


def test_bad_config_names_the_key_path(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"data": {"source": "nowhere"}}))
    with pytest.raises(ConfigError, match=r"config key 'data.source'"):
        load_config(ROOT / "config/config.yaml", bad)
    bad.write_text(yaml.safe_dump({"data": {"sauce": "simulate"}}))
    with pytest.raises(ConfigError, match="sauce"):
        load_config(ROOT / "config/config.yaml", bad)


def test_overrides_merge_into_the_defaults():
    config = load_config(overrides={"autoencoder": {"latent_dim": 8, "train": {"lr": 0.01}}})
    assert config["autoencoder"]["latent_dim"] == 8 and config["autoencoder"]["train"]["lr"] == 0.01
    # the rest of the section keeps the schema's defaults
    assert config["autoencoder"]["train"]["batch_size"] == load_config()["autoencoder"]["train"]["batch_size"]
    with pytest.raises(ConfigError, match=r"autoencoder.latent_dim"):
        load_config(overrides={"autoencoder": {"latent_dim": 0}})


def test_schemas_are_package_data(tmp_path):
    # A non-editable install must carry the schemas: build the wheel and look inside.
    import shutil
    import subprocess
    import sys
    import zipfile

    src = tmp_path / "src"  # a copy, so the build leaves nothing in the repository
    shutil.copytree(ROOT / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(src),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("morphoflow-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for schema in SCHEMA_DIR.iterdir():
        assert f"morphoflow/schemas/{schema.name}" in names
