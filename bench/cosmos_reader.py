"""Benchmark of the real-data readers: COSMOS reader throughput (galaxies/s) on the test fixture,
and the SEP stamp cutter on the Hubble Deep Field image. Prints one JSON object.

Run from the repository root: .venv/bin/python bench/cosmos_reader.py [--galaxies 40] [--stamp 128]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from _cosmos_fixture import make_cosmos_sample
from morphoflow.config import load_config
from morphoflow.data.cosmos import read_cosmos
from morphoflow.data.stamps import cut_stamps, rgb_to_band


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--galaxies", type=int, default=40)
    parser.add_argument("--stamp", type=int, default=128)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()

    out: dict[str, object] = {"cosmos_fixture_galaxies": args.galaxies, "cosmos_stamp_size": args.stamp}
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        make_cosmos_sample(tmp, n=args.galaxies)
        out["fixture_build_s"] = round(time.perf_counter() - t, 3)
        reference = None
        config = load_config(overrides={"cosmos": {"stamp_size": args.stamp, "exclusion_level": "none"}})
        for threads in args.threads:
            t = time.perf_counter()
            gs = read_cosmos(
                tmp,
                config["cosmos"],
                sample=config["download"]["sample"],
                seed=config["seed"],
                threads=threads,
                progress=False,
            )
            dt = time.perf_counter() - t
            out[f"cosmos_galaxies_per_s_threads{threads}"] = round(len(gs) / dt, 2)
            out[f"cosmos_wall_s_threads{threads}"] = round(dt, 3)
            if reference is None:
                reference = gs.images
            out[f"cosmos_identical_threads{threads}"] = bool(np.array_equal(reference, gs.images))

    from skimage import data

    image = rgb_to_band(data.hubble_deep_field())[::-1]
    # the schema's stamps section is the HDF's (0.138 arcsec/pixel, zero point 36, 32-pixel stamps)
    config = load_config(overrides={"stamps": {"stamp_size": 32, "saturation": 760}})
    t = time.perf_counter()
    gs = cut_stamps(image, config["stamps"], seed=config["seed"])
    dt = time.perf_counter() - t
    out["hdf_stamps"] = len(gs)
    out["hdf_detections"] = gs.attrs["n_detections"]
    out["hdf_cut_wall_s"] = round(dt, 3)
    out["hdf_stamps_per_s"] = round(len(gs) / dt, 1)
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
