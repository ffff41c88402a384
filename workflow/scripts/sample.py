"""Adapter for rule sample: test galaxies + autoencoder (+ flow) -> results/samples/{method}.h5."""

from morphoflow.runtime import setup_rule
from morphoflow.sampling import sample_galaxies

setup_rule(log=snakemake.log[0], threads=snakemake.threads)
sample_galaxies(
    snakemake.input.test,
    snakemake.input.autoencoder,
    snakemake.output[0],
    method=snakemake.wildcards.method,
    flow_path=snakemake.input.get("flow") or None,
    seed=snakemake.params.seed,
    batch_size=snakemake.params.sample["batch_size"],
    device=snakemake.params.sample["device"],
    on_out_of_range=snakemake.params.out_of_range,
)
