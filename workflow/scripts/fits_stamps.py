"""Adapter of rule fits_stamps: FITS cube of stamps + catalog + PSF -> data/raw.h5."""

from morphoflow.data.fits_stamps import run_fits_stamps
from morphoflow.runtime import setup_rule

setup_rule(snakemake.log[0], snakemake.threads)
run_fits_stamps(
    images=snakemake.input.images,
    catalog=snakemake.input.catalog,
    psf=snakemake.input.psf,
    raw=snakemake.output.raw,
    config={"fits": {**snakemake.params.config["fits"], "images": None, "catalog": None, "psf": None}},
)
