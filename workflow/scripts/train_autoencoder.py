"""Adapter of rule train_autoencoder: data/{train,val}.h5 -> autoencoder/model.pt + history.csv."""

from morphoflow.autoencoder.train import run_train_autoencoder
from morphoflow.runtime import setup_rule

setup_rule(snakemake.log[0], snakemake.threads)
run_train_autoencoder(
    train=snakemake.input.train,
    val=snakemake.input.val,
    model=snakemake.output.model,
    history=snakemake.output.history,
    checkpoints=snakemake.params.checkpoints,
    config=snakemake.params.config,
)
