"""SD1.x KL autoencoder (ldm key names)."""
from .config import VAEConfig
from .model import AutoencoderKL, DiagonalGaussian, conv_attention_weights

__all__ = ["AutoencoderKL", "DiagonalGaussian", "VAEConfig", "conv_attention_weights"]
