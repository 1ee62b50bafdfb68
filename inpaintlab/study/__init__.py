"""Study inpaint settings in isolation: X/Y/Z sweeps with grids, intermediates and metrics (`inpaintlab sweep`).

Each name is imported on first use: the command line's parser takes `sweep --from-png`'s options from `replay`
without the sweep's torch modules.
"""
from .._lazy import lazy_package

lazy_package(__name__, {"compute_metrics": ".metrics", "latent_preview": ".preview", "SweepSpec": ".spec",
                        "load_spec": ".spec", "sweep": ".sweep"})

__all__ = ["SweepSpec", "compute_metrics", "latent_preview", "load_spec", "sweep"]
