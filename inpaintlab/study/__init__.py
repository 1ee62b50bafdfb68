"""Study inpaint settings in isolation: X/Y/Z sweeps with grids, intermediates and metrics (`inpaintlab sweep`)."""
from .metrics import compute_metrics
from .preview import latent_preview
from .spec import SweepSpec, load_spec
from .sweep import sweep

__all__ = ["SweepSpec", "compute_metrics", "latent_preview", "load_spec", "sweep"]
