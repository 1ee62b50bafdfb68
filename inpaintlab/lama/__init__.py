"""big-LaMa (FFC ResNet generator) and Inpaint Anything's LaMa "Cleaner".

    load_lama(path_or_state_dict) -> FFCResNetGenerator   ControlNetLama.pth, best.ckpt (generator.), .safetensors
    clean(image, mask, lama) -> HxWx3 uint8                the Cleaner's padding, hole rule and soft blend
    make_tiny_lama_file(path)                              tiny random weights with big-lama's keys
"""
from .._lazy import lazy_package

# Imported on first use: the command line's parser needs none of them.
lazy_package(__name__, {
    **dict.fromkeys(("clean", "ia_auto_resize", "pad_to_modulo", "run_lama"), ".clean"),
    **dict.fromkeys(("generator_state_dict", "lama_config", "load_lama", "read_lama_state_dict"), ".load"),
    **dict.fromkeys(("BIG_LAMA", "TINY_LAMA", "FFCResNetGenerator", "LamaConfig", "LamaError"), ".model"),
    **dict.fromkeys(("make_tiny_lama_file", "randomize_lama", "tiny_lama_state_dict"), ".tiny"),
})

__all__ = ["BIG_LAMA", "FFCResNetGenerator", "LamaConfig", "LamaError", "TINY_LAMA", "clean", "generator_state_dict",
           "ia_auto_resize", "lama_config", "load_lama", "make_tiny_lama_file", "pad_to_modulo", "randomize_lama",
           "read_lama_state_dict", "run_lama", "tiny_lama_state_dict"]
