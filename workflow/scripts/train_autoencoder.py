"""Adapter for rule train_autoencoder: data/{train,val}.h5 -> autoencoder/model.pt + history.csv."""

from morphoflow.models.train import train_autoencoder
from morphoflow.runtime import setup_rule

setup_rule(log=snakemake.log[0], threads=snakemake.threads)
train_autoencoder(
    snakemake.input.train,
    snakemake.input.val,
    snakemake.output.model,
    snakemake.output.history,
    snakemake.params.workdir,
    snakemake.params.autoencoder,
    seed=snakemake.params.seed,
)
