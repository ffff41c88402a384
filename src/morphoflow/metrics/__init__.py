r"""Metrics of the generated galaxies against real ones, each beside a real-vs-real floor.

Modules: :mod:`.morphology` (batched flux, r50, Gini, M20, C, A, S; statmorph engine),
:mod:`.moments` (HSM size and ellipticity), :mod:`.power_spectrum`, :mod:`.distances`
(W1, Fréchet, halves), :mod:`.c2st` (classifier two-sample test), :mod:`.collect`
(``metrics.json``), :mod:`.summary` (``summary.md``), :mod:`.plots`.
"""

from __future__ import annotations

__all__: list[str] = []
