r"""Star-particle mode (after GalacticFlow, Wolf & Buck 2023): a conditional flow over a galaxy's stars.

Each galaxy is a set of star particles with columns :data:`~morphoflow.particles.io.STAR_COLUMNS`
(x, y, z in kpc; vx, vy, vz in km/s; total metallicity Z; [Fe/H], [O/Fe] in dex; age in Gyr).
A normalizing flow learns :math:`p(\text{star} \mid \text{global parameters}, \text{image latent})`.
Modules: :mod:`.io` (files), :mod:`.simulate` (analytic galaxies), :mod:`.clean` (GalacticFlow cleaning),
:mod:`.render` (images for stage 1), :mod:`.dataset` (flow tables), :mod:`.metrics`, :mod:`.plots`,
:mod:`.pipeline` (one entry point per Snakemake rule).
"""

from __future__ import annotations

__all__: list[str] = []
