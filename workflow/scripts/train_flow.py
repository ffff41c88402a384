"""Adapter of rule train_flow: latents/{train,val}.h5 -> flow/model.pt + history.csv."""

from morphoflow.flow.train import run_train_flow
from morphoflow.runtime import setup_rule

setup_rule(snakemake.log[0], snakemake.threads)
run_train_flow(
    train=snakemake.input.train,
    val=snakemake.input.val,
    model=snakemake.output.model,
    history=snakemake.output.history,
    checkpoints=snakemake.params.checkpoints,
    config=snakemake.params.config,
)
