"""CLIP text side of SD1: tokenizer, A1111 prompt syntax and conditioning, text encoder."""
from .conditioning import encode_prompt, encode_prompts, load_embeddings, tokenize_prompt
from .model import CLIPTextConfig, CLIPTextTransformer
from .prompts import parse_prompt_attention
from .tokenizer import Tokenizer

__all__ = [
    "CLIPTextConfig",
    "CLIPTextTransformer",
    "Tokenizer",
    "encode_prompt",
    "encode_prompts",
    "load_embeddings",
    "parse_prompt_attention",
    "tokenize_prompt",
]
