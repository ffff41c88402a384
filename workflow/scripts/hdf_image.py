"""Adapter of rule hdf_image: scikit-image's hubble_deep_field() -> single-band FITS."""

from morphoflow.data.stamps import run_hdf_image
from morphoflow.runtime import setup_rule

setup_rule(snakemake.log[0], snakemake.threads)
run_hdf_image(image=snakemake.output.image, config=snakemake.params.config)
