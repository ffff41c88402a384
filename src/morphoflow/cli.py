r"""Command line: ``morphoflow sample`` draws galaxies for given conditions into a FITS file.

Example::

    morphoflow sample --model results --mag 23.5 --hlr-arcsec 0.4 --redshift 0.8 -n 16 -o out.fits
    morphoflow sample --model results --conditions table.csv -n 4 --seed 7 -o out.fits

The condition flags are derived from the model's context columns (``_`` → ``-``); each takes one
or more values (scalars broadcast). ``--conditions`` reads a CSV with those columns instead.
The FITS file holds a primary HDU with the image cube (N, H, W) — or (N, C, H, W) for several
channels — in counts (PSF-free, noiseless), header ``PIXSCALE`` [arcsec], ``BUNIT``, ``BAND``,
``ZP_AB``; then a binary table ``CONDITIONS`` with the conditions and the seed of each image.
"""

from __future__ import annotations

__all__ = ["main", "write_fits"]

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .generator import GeneratedGalaxies


def _base_parser(add_help: bool) -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    r"""The top-level parser and its ``sample`` sub-parser (condition flags are added once the model is known)."""

    parser = argparse.ArgumentParser(
        prog="morphoflow", description="morphoflow: galaxy images on demand.", add_help=add_help, allow_abbrev=False
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser(
        "sample", help="draw galaxies for given conditions into a FITS file", add_help=add_help, allow_abbrev=False
    )
    p.add_argument("--model", default=None, help="results directory holding autoencoder/model.pt and flow/model.pt")
    p.add_argument("--autoencoder", default=None, help="autoencoder model file (overrides --model)")
    p.add_argument("--flow", default=None, help="flow model file (overrides --model)")
    p.add_argument("--conditions", default=None, help="CSV table of conditions (one row per condition)")
    p.add_argument("-n", type=int, default=1, help="draws per condition row (default 1)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("-o", "--output", default=None, help="output FITS file")
    p.add_argument(
        "--out-of-range",
        choices=["warn", "error"],
        default=None,
        help="conditions outside the training range: warn or error (default: the model's setting)",
    )
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    return parser, p


def _flow_path(args: argparse.Namespace) -> Path | None:
    if args.flow:
        return Path(args.flow)
    if args.model:
        return Path(args.model) / "flow" / "model.pt"
    return None


def write_fits(path: str | os.PathLike, gen: GeneratedGalaxies, *, overwrite: bool = False, model: str = "") -> None:
    r"""Write generated galaxies as a FITS image cube (counts) plus a conditions table, atomically."""

    from astropy.io import fits
    from astropy.table import Table

    from .atomic import atomic_path

    if Path(path).exists() and not overwrite:
        raise FileExistsError(f"{path}: exists (pass --overwrite to replace it)")
    cube = gen.images[:, 0] if gen.images.shape[1] == 1 else gen.images
    primary = fits.PrimaryHDU(np.ascontiguousarray(cube, dtype=np.float32))
    hdr = primary.header
    hdr["PIXSCALE"] = (float(gen.pixel_scale_arcsec), "pixel scale [arcsec/pixel]")
    hdr["BUNIT"] = ("counts", "PSF-free noiseless surface brightness per pixel")
    hdr["BAND"] = (gen.band, "filter")
    if np.isfinite(gen.zeropoint_ab):
        hdr["ZP_AB"] = (float(gen.zeropoint_ab), "mag = ZP_AB - 2.5 log10(sum of counts)")
    hdr["NGAL"] = (len(gen), "number of images")
    hdr["ORIGIN"] = "morphoflow"
    if model:
        hdr["MODEL"] = model[-68:]
    table = Table.from_pandas(gen.conditions)
    table["seed"] = gen.seeds
    thdu = fits.BinTableHDU(table, name="CONDITIONS")
    with atomic_path(path, size=cube.nbytes + 2**16) as tmp:
        fits.HDUList([primary, thdu]).writeto(tmp)


def _sample(argv: Sequence[str]) -> int:
    import pandas as pd

    pre, _ = _base_parser(add_help=False)[0].parse_known_args(argv)
    columns: list[str] = []
    flow_path = _flow_path(pre)
    if flow_path is not None and flow_path.exists():
        from .checkpoint import load_torch_file
        from .flow.io import FLOW_FORMAT, FLOW_WHAT

        columns = list(load_torch_file(flow_path, FLOW_FORMAT, what=FLOW_WHAT).get("context_columns", []))

    parser, sample_parser = _base_parser(add_help=True)
    group = sample_parser.add_argument_group("conditions (from the model's context columns)")
    for col in columns:
        group.add_argument(
            f"--{col.replace('_', '-')}",
            dest=f"cond_{col}",
            type=float,
            nargs="+",
            default=None,
            metavar="VALUE",
            help=f"condition '{col}' (one or more values)",
        )
    args = parser.parse_args(argv)

    if flow_path is None or (args.autoencoder is None and args.model is None):
        sample_parser.error("pass --model DIR (or both --autoencoder and --flow)")
    if not flow_path.exists():
        sample_parser.error(f"{flow_path}: flow model file not found")
    if args.output is None:
        sample_parser.error("pass -o/--output FILE.fits")
    if Path(args.output).exists() and not args.overwrite:
        raise FileExistsError(f"{args.output}: exists (pass --overwrite to replace it)")

    given = {c: getattr(args, f"cond_{c}") for c in columns if getattr(args, f"cond_{c}") is not None}
    if args.conditions:
        if given:
            sample_parser.error("pass either --conditions or condition flags, not both")
        if not Path(args.conditions).exists():
            sample_parser.error(f"{args.conditions}: conditions file not found")
        conditions = pd.read_csv(args.conditions)
    else:
        missing = [f"--{c.replace('_', '-')}" for c in columns if c not in given]
        if missing:
            sample_parser.error(f"missing condition(s) {' '.join(missing)} (or pass --conditions table.csv)")
        conditions = given

    from .generator import Generator

    gen = Generator.load(
        args.model, autoencoder=args.autoencoder, flow=args.flow, device=args.device, on_out_of_range=args.out_of_range
    )
    out = gen.sample(conditions, n=args.n, seed=args.seed)
    write_fits(args.output, out, overwrite=args.overwrite, model=str(args.model or args.flow))
    print(f"wrote {len(out)} galaxies {out.images.shape[1:]} to {args.output}", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    r"""Entry point of the ``morphoflow`` console script."""

    import warnings

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        _base_parser(add_help=True)[0].print_help()
        return 0
    if argv[0] != "sample":
        _base_parser(add_help=True)[0].parse_args(argv)  # prints the usage error
        return 2
    warnings.simplefilter("default")
    try:
        return _sample(argv)
    except (ValueError, KeyError, OSError, ArithmeticError) as err:
        # the project's errors (ContractError, ModelFileError, OutOfRangeError, ... are ValueErrors;
        # DiskFullError is an OSError) name their file; a plain OSError names it in its text
        print(f"morphoflow sample: error: {_one_line(err)}", file=sys.stderr)
        return 1


def _one_line(err: BaseException) -> str:
    r"""``err`` as one line, naming the file of an ``OSError`` when its text does not."""

    text = " ".join(str(err).split()) or type(err).__name__
    if isinstance(err, OSError) and err.filename and str(err.filename) not in text:
        text = f"{err.filename}: {text}"
    return text


if __name__ == "__main__":
    sys.exit(main())
