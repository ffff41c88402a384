r"""morphoflow: galaxy images (and stellar particle sets) drawn on demand for given physical properties.

Stage 1 is an autoencoder on galaxy stamps; stage 2 a conditional normalizing flow on its latents,
conditioned on physical parameters (magnitude, size, redshift, ...). See README.md.
"""

import os as _os

# OpenMP threads that busy-wait starve each other on shared or oversubscribed cores (measured: 2 torch
# threads fell from 109 to 9 images/s under load). Set before torch loads; an explicit setting wins.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"

__all__ = ["GeneratedGalaxies", "Generator", "__version__"]

_LAZY = {"Generator": "morphoflow.generator", "GeneratedGalaxies": "morphoflow.generator"}


def __getattr__(name: str):
    # Lazy: `import morphoflow` stays light (no torch/zuko) until `morphoflow.Generator` is used.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'morphoflow' has no attribute '{name}'")
