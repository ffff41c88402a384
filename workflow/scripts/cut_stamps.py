"""Adapter for rule cut_stamps: survey FITS image -> galaxy stamps in results/data/raw.h5."""

from morphoflow.runtime import setup_rule
from morphoflow.stamps import run_cut_stamps

setup_rule(log=snakemake.log[0], threads=snakemake.threads)
run_cut_stamps(
    snakemake.input.image,
    snakemake.output[0],
    snakemake.params.stamps,
    weight_path=snakemake.input.get("weight"),
    psf_path=snakemake.input.get("psf"),
    seed=snakemake.params.seed,
)
