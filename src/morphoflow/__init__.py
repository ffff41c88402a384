r"""morphoflow: galaxy images (and stellar particle sets) drawn on demand for given physical properties.

Stage 1 is an autoencoder on galaxy stamps; stage 2 a conditional normalizing flow on its latents,
conditioned on physical parameters (magnitude, size, redshift, ...). See README.md.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
