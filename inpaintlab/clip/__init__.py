"""CLIP text side of SD1: tokenizer, A1111 prompt syntax and conditioning, text encoder."""
from .conditioning import encode_prompt, encode_prompts, load_embeddings, tokenize_prompt
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


def __getattr__(name: str):
    # The text encoder is imported on first use (it lives in .model).
    if name in ("CLIPTextConfig", "CLIPTextTransformer"):
        from . import model

        return getattr(model, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
