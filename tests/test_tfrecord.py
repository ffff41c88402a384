"""TFRecord export: written by preprocess, read back with tfrecord's own reader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tfrecord.reader import tfrecord_loader

from morphoflow.config import load_config
from morphoflow.contract import read_galaxies
from morphoflow.data.preprocess import run_preprocess
from morphoflow.data.simulate import run_simulate
from morphoflow.data.tfrecord import read_tfrecord

ROOT = Path(__file__).resolve().parents[1]
SPLITS = ("train", "val", "test")
torch.set_num_threads(1)


def test_tfrecord_round_trip_matches_hdf5(tmp_path):
    overrides = {"simulate": {"n_galaxies": 30}}
    config = load_config(ROOT / "config/config.yaml", ROOT / "config/test.yaml", overrides=overrides)
    raw = tmp_path / "raw.h5"
    run_simulate(raw=raw, config={"simulate": config["simulate"], "seed": config["seed"]}, threads=1)
    h5 = {s: tmp_path / f"{s}.h5" for s in SPLITS}
    tf = {s: tmp_path / f"{s}.tfrecord" for s in SPLITS}
    run_preprocess(
        raw=raw,
        **h5,
        cleaning=tmp_path / "cleaning.json",
        tfrecords=[tf[s] for s in SPLITS],
        config={"preprocess": config["preprocess"], "seed": 0},
    )

    for s in SPLITS:
        gs = read_galaxies(h5[s])
        records = list(tfrecord_loader(str(tf[s]), None))
        assert len(records) == len(gs)
        for i, rec in enumerate(records):
            shape = tuple(int(v) for v in rec["shape"])
            assert shape == gs.images.shape[1:]
            image = np.frombuffer(bytes(rec["image"]), dtype="<f4").reshape(shape)
            np.testing.assert_array_equal(image, gs.images[i])
            assert int(rec["id"][0]) == gs.ids[i]
            for key in ("mag", "hlr_arcsec", "redshift", "sersic_n", "flux"):
                np.testing.assert_allclose(rec[key][0], gs.catalog[key][i], rtol=1e-6)
        images, cols = read_tfrecord(tf[s])
        np.testing.assert_array_equal(images, gs.images)
        np.testing.assert_array_equal(cols["id"], gs.ids)
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temporary file
