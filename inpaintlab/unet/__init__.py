"""SD UNet (ldm/sgm openaimodel layout for SD1.x, SD2.x and SDXL; checkpoint key names kept)."""
from .config import SD2_UNET, SDXL_UNET, UNetConfig
from .model import UNetModel
from .sdxl import sdxl_adm_vector, size_embedding

__all__ = ["SD2_UNET", "SDXL_UNET", "UNetConfig", "UNetModel", "sdxl_adm_vector", "size_embedding"]
