"""Adapter for rule particles_import: a folder of GalacticFlow .npy galaxies -> results/particles/raw_stars.h5."""

from morphoflow.particles.pipeline import import_particles
from morphoflow.runtime import setup_rule

setup_rule(log=snakemake.log[0], threads=snakemake.threads)
import_particles(snakemake.input.folder, snakemake.output[0])
