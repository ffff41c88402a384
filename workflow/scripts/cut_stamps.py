"""Adapter of rule cut_stamps: survey FITS image -> galaxy stamps in data/raw.h5."""

from morphoflow.data.stamps import run_cut_stamps
from morphoflow.runtime import setup_rule

setup_rule(snakemake.log[0], snakemake.threads)
run_cut_stamps(
    image=snakemake.input.image,
    weight=snakemake.input.get("weight"),
    psf=snakemake.input.get("psf"),
    raw=snakemake.output.raw,
    config=snakemake.params.config,
)
