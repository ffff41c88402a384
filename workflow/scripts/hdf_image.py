"""Adapter for rule hdf_image: scikit-image's hubble_deep_field() -> single-band FITS."""

from morphoflow.runtime import setup_rule
from morphoflow.stamps import write_hubble_deep_field

setup_rule(log=snakemake.log[0], threads=snakemake.threads)
write_hubble_deep_field(snakemake.output[0], pixel_scale=snakemake.params.pixel_scale_arcsec)
