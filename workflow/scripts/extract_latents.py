"""Adapter of rule extract_latents: model + data/{split}.h5 -> latents/{split}.h5."""

from morphoflow.autoencoder.latents import run_extract_latents
from morphoflow.runtime import setup_rule

setup_rule(snakemake.log[0], snakemake.threads)
run_extract_latents(
    model=snakemake.input.model,
    galaxies=snakemake.input.galaxies,
    latents=snakemake.output.latents,
    config=snakemake.params.config,
)
