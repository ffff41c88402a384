"""Adapter of rule particles_import: a folder of GalacticFlow .npy galaxies -> particles/raw_stars.h5."""

from morphoflow.particles.pipeline import run_particles_import
from morphoflow.runtime import setup_rule

setup_rule(snakemake.log[0], snakemake.threads)
run_particles_import(folder=snakemake.input.folder, raw_stars=snakemake.output.raw_stars)
