"""ControlNet units (sd-webui-controlnet semantics): the units' hints are prepared with the job's image and mask,
the ControlNets act where the UNet is called, inpaint_only+lama mixes its latent into every noise draw, and
inpaint_only pastes its image back before the uint8 truncation. With hires fix every unit also gets its hint at the
second pass's size (`hires_size`), the pass's wrapper counts its own steps, and each UNet call picks its hints by
size. The networks and preprocessors are in `inpaintlab.controlnet`."""
from __future__ import annotations

from typing import Any, Callable

from PIL import Image

from ..checkpoint import FAMILY_LABELS
from ..controlnet.inject import ControlledUNet
from ..controlnet.preprocessors import numpy_seed
from ..controlnet.unit import ControlNetUnit, PreparedUnits, get_model, prepare_units
from ..errors import SettingsError
from ..pipeline.job import Job
from ..pipeline.latents import posterior_generator
from ..pipeline.technique import Technique
from ..prepare import flatten
from ..settings import CROSS_CHECKS, Setting, register
from ..settings import between as _between
from . import controlnet_rows  # noqa: F401  (Processor Res, Threshold A/B, Pixel Perfect)

# --- ControlNet (sd-webui-controlnet's unit 0; more units from Python with `controlnets=[ControlNetUnit(...)]`) ------

def _controlnet_field(field: str) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        from ..controlnet.unit import parse_unit_infotext

        return parse_unit_infotext(text)[field]
    return parse


def _controlnet_model(value: Any) -> str | None:
    from pathlib import Path

    from ..controlnet import ControlNet as ControlNetModel

    if isinstance(value, (str, Path, ControlNetModel)):
        return None
    return "must be a ControlNet file path or a loaded ControlNet"


def _guidance_window(s: dict[str, Any]) -> str | None:
    start, end = s.get("guidance_start", 0.0), s.get("guidance_end", 1.0)
    return None if start <= end else f"guidance_start {start} is after guidance_end {end}"


def _register_controlnet_rows() -> None:
    from ..controlnet.inject import CONTROL_MODES
    from ..controlnet.preprocess import PREPROCESSORS
    from ..controlnet.preprocessors import PREPROCESSORS as PURE

    unit0 = "ControlNet 0"
    for row in (
        # The infotext names the model (`name [hash]`); read back, the name is looked up as <name>.safetensors in the
        # working directory unless --controlnet gives the file.
        Setting("controlnet", object, None, "ControlNet model file, e.g. control_v11p_sd15_inpaint.safetensors",
                infotext=unit0, parse=_controlnet_field("model"), check=_controlnet_model),
        Setting("controlnet_preprocessor", str, "inpaint_only", "ControlNet preprocessor (inpaint ones, 'none' with a "
                "ready hint image, or a pure-image one)", infotext=unit0, choices=PREPROCESSORS + tuple(PURE),
                aliases={"inpaint": "inpaint_global_harmonious", **{p.label: n for n, p in PURE.items()}},
                parse=_controlnet_field("preprocessor")),
        Setting("control_weight", float, 1.0, "ControlNet weight, 0-2", infotext=unit0, check=_between(0, 2),
                parse=_controlnet_field("weight")),
        Setting("control_mode", str, "Balanced", "ControlNet control mode", infotext=unit0, choices=CONTROL_MODES,
                aliases={"prompt": CONTROL_MODES[1], "controlnet": CONTROL_MODES[2]},
                parse=_controlnet_field("control_mode")),
        Setting("guidance_start", float, 0.0, "ControlNet starting control step, a fraction of the steps run",
                infotext=unit0, check=_between(0, 1), parse=_controlnet_field("guidance_start")),
        Setting("guidance_end", float, 1.0, "ControlNet ending control step, a fraction of the steps run",
                infotext=unit0, check=_between(0, 1), parse=_controlnet_field("guidance_end")),
    ):
        register(row)
    CROSS_CHECKS["ControlNet guidance window"] = _guidance_window


_register_controlnet_rows()


def check_family(model: Any, family: str) -> None:
    """A ControlNet acts only with a checkpoint of its own family (SD1 ControlNets with SD 1.x, SDXL ones with SDXL):
    SettingsError naming both otherwise."""
    own = model.config.family
    if own != family:
        name = getattr(model, "name", None) or "controlnet"
        raise SettingsError(f"ControlNet {name!r} is an {FAMILY_LABELS[own]} ControlNet and cannot be used with this "
                            f"{FAMILY_LABELS[family]} checkpoint")


# The single-unit keywords of `Pipeline.txt2img` / `inpaint` -> ControlNetUnit fields.
UNIT_KEYWORDS = {"controlnet_preprocessor": "preprocessor", "control_weight": "weight", "control_mode": "control_mode",
                 "guidance_start": "guidance_start", "guidance_end": "guidance_end", "controlnet_image": "image",
                 "controlnet_mask": "mask", "controlnet_lama": "lama", "controlnet_processor_res": "processor_res",
                 "controlnet_threshold_a": "threshold_a", "controlnet_threshold_b": "threshold_b",
                 "controlnet_pixel_perfect": "pixel_perfect"}


def controlnet_units(controlnet: Any = None, *, controlnets: list[ControlNetUnit] | None = None,
                     controlnet_preprocessor: str = "inpaint_only", control_weight: float = 1.0,
                     control_mode: str = "Balanced", guidance_start: float = 0.0, guidance_end: float = 1.0,
                     controlnet_image: Image.Image | None = None, controlnet_mask: Image.Image | None = None,
                     controlnet_lama: Any = None, controlnet_processor_res: int = 512,
                     controlnet_threshold_a: float | None = None, controlnet_threshold_b: float | None = None,
                     controlnet_pixel_perfect: bool = False) -> list[ControlNetUnit]:
    """The ControlNet units of a call: `controlnets`, or one unit from the single-unit keywords."""
    single = dict(preprocessor=controlnet_preprocessor, weight=control_weight, control_mode=control_mode,
                  guidance_start=guidance_start, guidance_end=guidance_end, image=controlnet_image,
                  mask=controlnet_mask, lama=controlnet_lama, processor_res=controlnet_processor_res,
                  threshold_a=controlnet_threshold_a, threshold_b=controlnet_threshold_b,
                  pixel_perfect=controlnet_pixel_perfect)
    if controlnets is not None:
        if controlnet is not None:
            raise ValueError("pass either `controlnet` (one unit) or `controlnets` (a list of units), not both")
        bad = [u for u in controlnets if not isinstance(u, ControlNetUnit)]
        if bad:
            raise TypeError(f"controlnets must hold ControlNetUnit objects, got {type(bad[0]).__name__}")
        return list(controlnets)
    if controlnet is None:
        return []
    return [ControlNetUnit(controlnet, **single)]


def hires_size(job: Job) -> tuple[int, int] | None:
    """(width, height) of a hires fix's second pass, or None without one.

    The extension targets `int(height · hr_scale)` (or `hr_resize_x/y`) floored to a multiple of 8, which is the
    second pass's image size whenever the extension runs; the size used here is always that image's (8 × the
    cropped latent), so a one-sided `Hires resize` (where the extension's target has a 0 side) and a cover-and-crop
    resize that floors one latent row differently also work."""
    s = job.settings
    if job.kind != "txt2img" or not s.get("enable_hr"):
        return None
    from ..hires import target_size

    return target_size(s["width"], s["height"], s["hr_scale"], s["hr_resize_x"], s["hr_resize_y"]).image_size


class ControlNet(Technique):
    name = "ControlNet"
    order = 20

    def __init__(self, units: list[ControlNetUnit]) -> None:
        self.units = units
        self.prepared: PreparedUnits | None = None
        self.unet: ControlledUNet | None = None

    @classmethod
    def for_job(cls, job: Job) -> "ControlNet | None":
        s = job.settings
        units = controlnet_units(s.get("controlnet"), controlnets=s.get("controlnets"),
                                 **{k: s[k] for k in UNIT_KEYWORDS if k in s})
        return cls(units) if units else None

    def latents(self, job: Job) -> None:
        """Prepare the units (after masked content: their keys follow "Masked content" in the infotext)."""
        pipe, s = job.pipe, job.settings
        dtype = next(pipe.unet.parameters()).dtype

        def load(model):
            loaded = get_model(model, pipe._controlnets, pipe.device, dtype, pipe.unet.kernels, unet=pipe.unet)
            check_family(loaded, pipe.config.family)
            return loaded

        def encode(x):
            # A1111 samples these posteriors from its global generator; see posterior_generator for our choice.
            return pipe.encode_image(x.to(pipe.device, pipe._vae_dtype()), posterior_generator(job.seeds))

        job_args: dict[str, Any] = {}
        if job.image is not None:
            prep = job.prep
            crop = None if prep.paste_to is None else (prep.paste_to[0], prep.paste_to[1],
                                                       prep.paste_to[0] + prep.paste_to[2],
                                                       prep.paste_to[1] + prep.paste_to[3])
            job_mask = None
            if job.image_mask is not None:  # the extension reads A1111's mask itself (at the image's size)
                mask = job.mask
                job_mask = mask if mask.size == job.image.size else mask.resize(job.image.size,
                                                                                Image.Resampling.LANCZOS)
            job_args = dict(init=flatten(job.image), mask=job_mask, mask_blur=s["mask_blur"],
                            invert=s["mask_mode"] == "not_masked", crop=crop, a1111_resize_mode=s["resize_mode"])
        self.prepared = prepare_units(self.units, width=job.width, height=job.height, encode=encode, load=load,
                                      unet_channels=pipe.unet.config.in_channels,
                                      seed=numpy_seed(job.seeds[0], s.get("subseed", -1)), hr_size=hires_size(job),
                                      **job_args)
        job.extra.update(self.prepared.infotext)

    def noise(self, job: Job, noise):
        return self.prepared.noise(noise)  # inpaint_only+lama; unchanged otherwise

    def sampler_noise(self, job: Job, noise):
        return self.prepared.noise(noise)  # every draw, as the extension patches the sampler's noise

    def wrap_unet(self, job: Job, unet):
        # The units act where the UNet is called; the step counter follows the sampler's callback.
        # With hires fix each sample() builds its own wrapper, so the second pass counts its own steps from 0 (A1111's
        # launch_sampling resets the counter); every call picks the first or second pass's hints by size.
        self.unet = ControlledUNet(unet, self.prepared.inputs, sampling_steps=job.sampling_steps,
                                   hr_units=self.prepared.hr_inputs)
        return self.unet

    def on_step(self, job: Job, d: dict) -> None:
        self.unet.step_callback(d)

    def decode(self, job: Job, x):
        return self.prepared.postprocess(x) if self.prepared.paste else x
