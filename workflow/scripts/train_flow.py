"""Adapter for rule train_flow: latents (train, val) -> results/flow/model.pt + history.csv."""

from morphoflow.flow import train_flow_from_files
from morphoflow.runtime import setup_rule

setup_rule(log=snakemake.log[0], threads=snakemake.threads)
train_flow_from_files(
    snakemake.input.train,
    snakemake.input.val,
    snakemake.output.model,
    snakemake.output.history,
    dict(snakemake.params.flow),
    seed=snakemake.params.seed,
    workdir=snakemake.params.workdir,
)
