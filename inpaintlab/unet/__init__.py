"""SD1.x UNet (ldm openaimodel layout, checkpoint key names kept)."""
from .config import UNetConfig
from .model import UNetModel

__all__ = ["UNetConfig", "UNetModel"]
