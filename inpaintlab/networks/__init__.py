"""LoRA and LyCORIS networks as A1111 v1.10's built-in Lora extension applies them to SD1.x models.

    read_network(path)                     the file's tensors, metadata and A1111 hash
    convert_kohya_name(key)                kohya `lora_unet_…`/`lora_te_…` key → compvis module name
    NetworkMerger(unet, text_encoder)      merge sets of networks into live weights from a kept copy
    parse_prompt / lora_tags               `<lora:name:te:unet:dyn>` prompt tags
"""
from .apply import ActiveNetwork, NetworkMerger
from .files import NetworkFile, NetworkLibrary, addnet_hash, network_hash, read_network
from .modules import NetworkError, calc_updown, detect_type
from .names import convert_kohya_name, module_names
from .prompt import (NetworkTag, lora_tags, parse_lora_hashes, parse_prompt, parse_prompts, rename_by_hashes,
                     set_lora_weight, strip_networks)

__all__ = [
    "ActiveNetwork", "NetworkError", "NetworkFile", "NetworkLibrary", "NetworkMerger", "NetworkTag", "addnet_hash",
    "calc_updown", "convert_kohya_name", "detect_type", "lora_tags", "module_names", "network_hash", "parse_prompt",
    "parse_lora_hashes", "parse_prompts", "read_network", "rename_by_hashes", "set_lora_weight", "strip_networks",
]
