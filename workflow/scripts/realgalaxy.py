"""Adapter of rule realgalaxy: a GalSim RealGalaxyCatalog -> data/raw.h5."""

from morphoflow.data.realgalaxy import run_realgalaxy
from morphoflow.runtime import setup_rule

setup_rule(snakemake.log[0], snakemake.threads)
run_realgalaxy(
    catalog=snakemake.input.catalog,
    raw=snakemake.output.raw,
    config={**snakemake.params.config, "realgalaxy": {**snakemake.params.config["realgalaxy"], "catalog": None}},
)
