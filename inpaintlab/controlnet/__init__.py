"""SD1.x ControlNet (sd-webui-controlnet semantics): the network, its injection into the UNet, inpaint preprocessors."""
from .load import load_controlnet
from .model import ControlNet, ControlNetConfig

__all__ = ["ControlNet", "ControlNetConfig", "load_controlnet"]
