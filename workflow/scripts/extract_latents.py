"""Adapter for rule extract_latents: model + data/{split}.h5 -> latents/{split}.h5."""

from morphoflow.latents import extract_latents
from morphoflow.runtime import setup_rule

setup_rule(log=snakemake.log[0], threads=snakemake.threads)
extract_latents(snakemake.input.model, snakemake.input.galaxies, snakemake.output[0], snakemake.params.batch_size)
