"""CLIP text side: tokenizers, A1111 prompt syntax and conditioning, the SD1 CLIP ViT-L/14 and the OpenCLIP
ViT-H/14 (SD 2.x) / ViT-bigG/14 (SDXL) text encoders."""
from .conditioning import encode_prompt, encode_prompts, load_embeddings, tokenize_prompt
from .model import CLIPTextConfig, CLIPTextTransformer
from .openclip import OpenCLIPTextConfig, OpenCLIPTextTransformer
from .prompts import parse_prompt_attention
from .sd2_sdxl import encode_prompts_sd2, encode_prompts_sdxl, load_sdxl_embeddings
from .tokenizer import OpenCLIPTokenizer, Tokenizer

__all__ = [
    "CLIPTextConfig",
    "CLIPTextTransformer",
    "OpenCLIPTextConfig",
    "OpenCLIPTextTransformer",
    "OpenCLIPTokenizer",
    "Tokenizer",
    "encode_prompt",
    "encode_prompts",
    "encode_prompts_sd2",
    "encode_prompts_sdxl",
    "load_embeddings",
    "load_sdxl_embeddings",
    "parse_prompt_attention",
    "tokenize_prompt",
]
