"""ControlNet units in a generation: what the caller sets per unit, and turning units into `ControlInput`s, the
final paste-back and the infotext entry the way sd-webui-controlnet does inside an A1111 job."""
from __future__ import annotations

import dataclasses
import logging
import re
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image

from ..checkpoint import legacy_model_hash
from ..errors import SettingsError
from . import preprocess as pp
from . import preprocessors as pure
from .inject import SD1_SCHEDULE, ControlInput, check_control_mode, check_unit_numbers, hires_soft_injection
from .load import load_controlnet
from .model import ControlNet

log = logging.getLogger(__name__)


@dataclasses.dataclass
class ControlNetUnit:
    """One ControlNet unit (the extension's defaults).

    model: a loaded `ControlNet` or the path of its file. preprocessor: inpaint_only | inpaint_global_harmonious |
    inpaint_only+lama, or for a ControlNet of another kind "none" (the image is the ready hint) or one of the
    pure-image preprocessors of `preprocessors.PREPROCESSORS` (name or UI label). image / mask: the unit's own image
    and mask (255 = repaint); without them the unit takes the job's init image and mask (img2img / inpaint).
    resize_mode: Just Resize | Crop and Resize | Resize and Fill; default "Crop and Resize" for the unit's own image,
    A1111's resize mode for the job's. lama: for inpaint_only+lama, a LaMa generator or its file
    (ControlNetLama.pth), the network as a function, or an already filled image (see `preprocess.lama_fill`).
    processor_res, threshold_a, threshold_b, pixel_perfect: the extension's Processor Res (default 512), Threshold
    A/B (None: the preprocessor's default) and Pixel Perfect (the resolution from the image and target sizes).
    """

    model: ControlNet | str | Path
    preprocessor: str = "inpaint_only"
    weight: float = 1.0
    control_mode: str = "Balanced"
    guidance_start: float = 0.0
    guidance_end: float = 1.0
    image: Image.Image | None = None
    mask: Image.Image | None = None
    resize_mode: str | None = None
    lama: Callable[[np.ndarray, np.ndarray], np.ndarray] | torch.nn.Module | str | Path | Image.Image | np.ndarray \
        | None = None
    processor_res: int = 512
    threshold_a: float | None = None
    threshold_b: float | None = None
    pixel_perfect: bool = False

    def __post_init__(self) -> None:
        if self.preprocessor not in pp.PREPROCESSORS:
            self.preprocessor = pure.resolve(self.preprocessor)
        self.control_mode = check_control_mode(self.control_mode)
        check_unit_numbers(self.weight, self.guidance_start, self.guidance_end)
        if self.resize_mode is not None and self.resize_mode not in pp.RESIZE_MODES:
            raise SettingsError(f"unknown ControlNet resize mode {self.resize_mode!r}; expected one of "
                             f"{', '.join(pp.RESIZE_MODES)}")
        if self.mask is not None and self.image is None:
            raise SettingsError("a ControlNet unit mask needs the unit's image too")
        if self.preprocessor == "inpaint_only+lama" and self.lama is None:
            raise SettingsError("inpaint_only+lama needs `lama`: a LaMa model or file, the network as a function, or "
                                "a LaMa-filled image")
        if self.preprocessor == "inpaint_only+lama" and isinstance(self.lama, (str, Path)):
            from ..lama import load_lama

            self.lama = load_lama(self.lama)  # loaded (and checked) once, when the unit is made


@dataclasses.dataclass
class PreparedUnits:
    """What a job needs from its units: the per-call inputs, the paste-backs ([raw RGB, weight] pairs at the final
    image's size), the latent the LaMa noise hack mixes into every draw (or None), the infotext entries and, with
    hires fix, the inputs of the second pass."""

    inputs: list[ControlInput]
    paste: list[tuple[torch.Tensor, torch.Tensor]]
    lama_latent: torch.Tensor | None
    infotext: dict[str, str]
    hr_inputs: list[ControlInput] | None = None  # the hires fix's second pass: the same units at its size

    def postprocess(self, x: torch.Tensor) -> torch.Tensor:
        """Decoded images [B,3,H,W] in [0,1] after each inpaint_only unit's paste-back, in unit order."""
        for raw, m in self.paste:
            x = pp.paste_back(x, raw, m)
        return x

    def noise(self, noise: torch.Tensor) -> torch.Tensor:
        """inpaint_only+lama's hack on a noise draw: q_sample(lama latent, t=999, noise) when the sizes match."""
        if self.lama_latent is None or noise.shape[-2:] != self.lama_latent.shape[-2:]:
            return noise
        return SD1_SCHEDULE.q_sample(self.lama_latent.to(noise), 999, noise)


def _rgba_from_job(init: Image.Image, mask: Image.Image | None, *, mask_blur: int, invert: bool,
                   crop: tuple[int, int, int, int] | None, width: int, height: int) -> np.ndarray:
    """The job's image with the extension's reading of its mask as 4th channel; with "Only masked" both are cropped
    to A1111's crop region and resized to the processing size (Lanczos), channel by channel as the extension does."""
    from ..masking import resize_image

    ext_mask = None if mask is None else pp.extension_mask(mask, mask_blur, invert)
    rgba = pp.combine_image_and_mask(init, ext_mask)
    if crop is None:
        return rgba
    channels = [np.asarray(resize_image(2, Image.fromarray(rgba[:, :, i]).crop(crop), width, height).convert("L"))
                for i in range(4)]
    return np.stack(channels, axis=2)


def controlnet_model_label(model: ControlNet) -> str:
    """`name [hash]` as the extension writes it: A1111's legacy short model hash (sha256 of the 64 KiB at offset
    1 MiB, first 8 hex digits)."""
    name = getattr(model, "name", None) or "controlnet"
    digest = getattr(model, "legacy_hash", None)
    return f"{name} [{digest}]" if digest else name


def unit_infotext(unit: ControlNetUnit, module: str, model: ControlNet, resize_mode: str) -> str:
    """The extension's `ControlNet {i}` value (field order of ControlNetUnit.infotext_fields). Hidden sliders are
    written as 0.5 (the extension's bound check replaces them); the values are the unit's, before Pixel Perfect."""
    if module in pp.PREPROCESSORS:
        label, res, a, b = pp.MODULE_NAMES[module], "0.5", "0.5", "0.5"
    else:
        p = pure.PREPROCESSORS[module]
        label = p.label
        res = str(int(unit.processor_res)) if p.resolution else "0.5"
        a = str(float(p.threshold_a if unit.threshold_a is None else unit.threshold_a)) if p.threshold_a is not None \
            else "0.5"
        b = str(float(p.threshold_b if unit.threshold_b is None else unit.threshold_b)) if p.threshold_b is not None \
            else "0.5"
    return ", ".join([
        f"Module: {label}", f"Model: {controlnet_model_label(model)}", f"Weight: {float(unit.weight)}",
        f"Resize Mode: {resize_mode}", f"Processor Res: {res}", f"Threshold A: {a}", f"Threshold B: {b}",
        f"Guidance Start: {float(unit.guidance_start)}", f"Guidance End: {float(unit.guidance_end)}",
        f"Pixel Perfect: {bool(unit.pixel_perfect)}", f"Control Mode: {unit.control_mode}",
    ])


_FIELD = re.compile(r"\s*([^:,]+):\s*([^,]*)")
_MODULES = {v: k for k, v in pp.MODULE_NAMES.items()}


_RESIZE_ALIASES = {"Inner Fit (Scale to Fit)": "Crop and Resize", "Scale to Fit (Inner Fit)": "Crop and Resize",
                   "Outer Fit (Shrink to Fit)": "Resize and Fill", "Envelope (Outer Fit)": "Resize and Fill"}


def _number(fields: dict[str, str], key: str) -> float | None:
    if key not in fields or fields[key] in ("", "-1"):
        return None
    return float(fields[key])


def parse_unit_infotext(text: str) -> dict[str, Any]:
    """A `ControlNet {i}` value (current or 2023-08..2024-05 format) -> {model (name), model_hash, preprocessor,
    weight, resize_mode, guidance_start, guidance_end, control_mode, processor_res, threshold_a, threshold_b,
    pixel_perfect}. Raises ValueError naming a module inpaintlab cannot run (annotator networks)."""
    fields = {k.strip(): v.strip() for k, v in _FIELD.findall(text)}
    module = fields.get("Module", "")
    preprocessor = _MODULES[module] if module in _MODULES else pure.resolve(module)
    match = re.match(r"^(.*?)\s*\[([0-9a-fA-F]+)\]$", fields.get("Model", ""))
    model, model_hash = (match.group(1), match.group(2)) if match else (fields.get("Model", ""), None)
    resize_mode = fields.get("Resize Mode", "Crop and Resize")
    res = _number(fields, "Processor Res")
    extra: dict[str, Any] = {}
    if preprocessor not in _MODULES.values():
        p = pure.PREPROCESSORS[preprocessor]
        extra = {"processor_res": int(res) if res is not None and p.resolution and res >= 64 else 512,
                 "threshold_a": _number(fields, "Threshold A") if p.threshold_a is not None else None,
                 "threshold_b": _number(fields, "Threshold B") if p.threshold_b is not None else None,
                 "pixel_perfect": fields.get("Pixel Perfect", "False") == "True"}
    return {
        "model": model, "model_hash": model_hash, "preprocessor": preprocessor,
        "weight": float(fields.get("Weight", 1.0)), **extra,
        "resize_mode": _RESIZE_ALIASES.get(resize_mode, resize_mode),
        "guidance_start": float(fields.get("Guidance Start", 0.0)),
        "guidance_end": float(fields.get("Guidance End", 1.0)),
        "control_mode": check_control_mode(fields.get("Control Mode", "Balanced")),
    }


def controlnet_path(model: str | Path) -> Path:
    """The file a ControlNet path or model name refers to: a name as the infotext records it (no suffix) is looked
    up as `<name>.safetensors`."""
    path = Path(model)
    if not path.exists() and not path.suffix:
        path = path.with_name(path.name + ".safetensors")
    return path


def _cropped_channels(image: Image.Image, crop: tuple[int, int, int, int], width: int, height: int) -> np.ndarray:
    """The extension's "Only masked" crop of the job's image: each channel as an L image, cropped to A1111's crop
    region and resized to the processing size with A1111's resize mode 2 (Lanczos)."""
    from ..masking import resize_image

    return np.stack([np.asarray(resize_image(2, Image.fromarray(np.asarray(image)[:, :, i]).crop(crop), width,
                                             height).convert("L")) for i in range(np.asarray(image).shape[2])], axis=2)


def _plain_unit_input(unit: ControlNetUnit, model: ControlNet, module: str, init: Image.Image | None, width: int,
                      height: int, a1111_resize_mode: int, index: int, seed: int | None = None,
                      encode: Callable[[torch.Tensor], torch.Tensor] | None = None,
                      crop: tuple[int, int, int, int] | None = None,
                      sizes: tuple[tuple[int, int], ...] = ()) -> ControlInput | list[ControlInput]:
    """The extension's unit pipeline for a non-inpaint module: HWC3 (RGBA over white), the "Only masked" crop of the
    job's image (`crop`), Pixel Perfect, the preprocessor at the processing resolution (seed: the numpy seed, see
    `preprocessors.numpy_seed`), `detectmap_proc` on the uint8 map, hint / 255; tile_colorfix also encodes the hint
    (`encode`).

    sizes: further (width, height) targets (the hires pass). The extension runs the preprocessor once, with Pixel
    Perfect's resolution from the first pass's size, and `detectmap_proc`s that one map to each target; with sizes
    the result is the list of inputs, first pass first."""
    source = unit.image if unit.image is not None else init
    if source is None:
        raise ValueError(f"ControlNet unit {index} has no image: pass the unit's image for txt2img")
    resize_mode = unit.resize_mode or ("Crop and Resize" if unit.image is not None
                                       else pp.A1111_RESIZE_MODES[a1111_resize_mode])
    rgb = pure.hwc3(np.asarray(source.convert("RGBA") if source.mode in ("RGBA", "LA", "P") else source.convert("RGB")))
    if unit.image is None and crop is not None:  # try_crop_image_with_a1111_mask: the job's image, "Only masked"
        rgb = _cropped_channels(Image.fromarray(rgb), crop, width, height)
    h, w = height // 8 * 8, width // 8 * 8
    res = pure.pixel_perfect_resolution(rgb.shape[:2], (h, w), resize_mode) if unit.pixel_perfect \
        else unit.processor_res
    detected = pure.run_preprocessor(module, rgb, res, unit.threshold_a, unit.threshold_b, seed=seed)
    rgba = np.concatenate([detected, np.zeros_like(detected[:, :, :1])], axis=2)
    device = next(model.parameters()).device
    p = pure.PREPROCESSORS[module]
    out = []
    for tw, th in ((width, height), *sizes):
        hint = pp.detectmap(rgba, tw, th, resize_mode, inpaint=False)[:, :, :3]
        hint = torch.from_numpy(np.ascontiguousarray(hint)).permute(2, 0, 1)[None] / 255.0
        ci = ControlInput(model, hint.to(device), unit.weight, unit.control_mode, unit.guidance_start,
                          unit.guidance_end, hires_soft=hires_soft_injection(module))
        if p.colorfix:
            if encode is None:
                raise ValueError(f"{module} needs the VAE to encode its hint (pass `encode`)")
            a = p.threshold_a if unit.threshold_a is None else unit.threshold_a
            b = None if p.threshold_b is None else (p.threshold_b if unit.threshold_b is None else unit.threshold_b)
            ci.colorfix, ci.colorfix_latent = (int(a), b), encode(hint * 2 - 1)
        out.append(ci)
    return out if sizes else out[0]


def get_model(model: ControlNet | str | Path, cache: dict, device: torch.device, dtype: torch.dtype,
              kernels: str, unet: torch.nn.Module | None = None) -> ControlNet:
    """The loaded ControlNet of a unit: files are read once per (path, device, dtype, kernels), except control-LoRA
    files, which are merged with `unet`'s weights as they are at every job (as the extension binds to the live UNet,
    so a LoRA merged into it counts)."""
    if isinstance(model, ControlNet):
        return model
    path = controlnet_path(model)
    key = (str(path.resolve()), str(device), dtype, kernels)
    if key in cache:
        return cache[key]
    loaded = load_controlnet(path, device=device, dtype=dtype, kernels=kernels, unet=unet)
    loaded.legacy_hash = legacy_model_hash(path)
    if not loaded.control_lora:
        cache[key] = loaded
    return loaded


def _inpaint_unit_input(unit: ControlNetUnit, model: ControlNet, module: str, hint4: torch.Tensor,
                        encode: Callable[[torch.Tensor], torch.Tensor], unet_channels: int) -> ControlInput:
    """An inpaint module's input from its hint [1,4,H,W]: the −1 protocol hint, inpaint_only's restore latent and
    mask, and a 9-channel UNet's replacement conditioning."""
    device = next(model.parameters()).device
    ci = ControlInput(model, pp.control_input(hint4).to(device), unit.weight, unit.control_mode,
                      unit.guidance_start, unit.guidance_end)
    if pp.restores_latent(module):
        ci.x0_origin = encode(hint4[:, :3] * 2 - 1)
        ci.restore_mask = pp.restore_mask(hint4).to(ci.x0_origin)
    if unet_channels == 9:
        m = (hint4[:, 3:4] > 0.5).to(hint4.dtype)
        masked = encode((hint4[:, :3] * 2 - 1) * (1 - m))
        ci.inpaint_cond = torch.cat([pp.inpaint_model_mask(hint4).to(masked), masked], dim=1)
    return ci


def prepare_units(units: list[ControlNetUnit], *, width: int, height: int, encode: Callable[[torch.Tensor], torch.Tensor],
                  load: Callable[[ControlNet | str | Path], ControlNet], unet_channels: int,
                  init: Image.Image | None = None, mask: Image.Image | None = None, mask_blur: int = 0,
                  invert: bool = False, crop: tuple[int, int, int, int] | None = None,
                  a1111_resize_mode: int = 0, seed: int | None = None,
                  hr_size: tuple[int, int] | None = None) -> PreparedUnits:
    """Build every unit's hint and per-call inputs for one job at width x height.

    encode: [1,3,H,W] in [-1,1] -> VAE latent (posterior sample x scale factor). init / mask: the job's init image
    and its A1111 mask (None for txt2img / img2img); mask_blur / invert / crop: the job's mask blur, mask mode and
    "Only masked" crop box. seed: the numpy seed of shuffle's flow field (`preprocessors.numpy_seed`), given
    afresh to each unit as the extension reseeds numpy per unit. With an A1111 mask (the inpaint tab), inpaint_only
    falls back to inpaint_global_harmonious, as the extension does; inpaint_only+lama is kept.
    hr_size: (width, height) of a hires fix's second pass: each unit also gets its hint at that size (the same
    preprocessed map, `detectmap_proc`ed to it, as the extension's `hr_hint_cond`), and inpaint_only pastes back the
    hires hint; the LaMa noise latent stays the first pass's (the extension's noise hack only acts at its size).
    """
    inputs, hr_inputs, paste, lama_latent, infotext = [], [], [], None, {}
    for i, unit in enumerate(units):
        model = load(unit.model)
        module = unit.preprocessor
        if module == "inpaint_only" and mask is not None:
            log.warning("A1111 inpaint and ControlNet inpaint duplicated: unit %d falls back to "
                        "inpaint_global_harmonious", i)
            module = "inpaint_global_harmonious"
        if module not in pp.PREPROCESSORS:  # a ControlNet of another kind: "none" or a pure-image preprocessor
            made = _plain_unit_input(unit, model, module, init, width, height, a1111_resize_mode, i, seed, encode,
                                     crop=crop if mask is not None else None,
                                     sizes=() if hr_size is None else (hr_size,))
            if hr_size is None:
                inputs.append(made)
            else:
                inputs.append(made[0])
                hr_inputs.append(made[1])
            resize_mode = unit.resize_mode or ("Crop and Resize" if unit.image is not None
                                               else pp.A1111_RESIZE_MODES[a1111_resize_mode])
            infotext[f"ControlNet {i}"] = unit_infotext(unit, module, model, resize_mode)
            continue
        if unit.image is not None:
            rgba = pp.combine_image_and_mask(unit.image, unit.mask)
            resize_mode = unit.resize_mode or "Crop and Resize"
        elif init is not None:
            rgba = _rgba_from_job(init, mask, mask_blur=mask_blur, invert=invert, crop=crop, width=width,
                                  height=height)
            resize_mode = unit.resize_mode or pp.A1111_RESIZE_MODES[a1111_resize_mode]
        else:
            raise SettingsError(f"ControlNet unit {i} has no image: pass the unit's image (and mask) for txt2img")
        if module == "inpaint_only+lama":
            if resize_mode == "Resize and Fill":  # the extension pads to the target first, so LaMa fills the bars
                rgba = pp.detectmap(rgba, width, height, resize_mode).astype(np.uint8)
            if callable(unit.lama) or pp.is_lama_source(unit.lama):
                rgba = pp.lama_fill(rgba, lama=unit.lama)
            else:
                rgba = pp.lama_fill(rgba, filled=unit.lama)
        hint4 = pp.make_hint(rgba, width, height, resize_mode)
        ci = _inpaint_unit_input(unit, model, module, hint4, encode, unet_channels)
        inputs.append(ci)
        final = hint4
        if hr_size is not None:
            final = pp.make_hint(rgba, hr_size[0], hr_size[1], resize_mode)
            hr_inputs.append(_inpaint_unit_input(unit, model, module, final, encode, unet_channels))
        if pp.restores_latent(module):
            paste.append((final[:, :3], pp.paste_back_mask(final)))  # the final image's size: the hires one
            if module == "inpaint_only+lama":
                lama_latent = ci.x0_origin
        infotext[f"ControlNet {i}"] = unit_infotext(unit, module, model, resize_mode)
    return PreparedUnits(inputs, paste, lama_latent, infotext, hr_inputs if hr_size is not None else None)
