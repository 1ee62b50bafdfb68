"""Every generation setting in one table: the Python keyword, the CLI flag, the infotext key and the sweep axis.

`SETTINGS` maps a `Pipeline` keyword name to a `Setting` row. Everything else derives from the rows:

* `Pipeline.txt2img` / `Pipeline.inpaint` coerce their keyword arguments through `coerce` (so A1111's labels such as
  "latent noise", "Only masked" or "Inpaint not masked" are accepted from Python as well);
* `inpaintlab.cli` adds one `--flag` per row whose `commands` name the subcommand, and validates every value with
  `validate` before a model is loaded;
* `infotext.settings_from_infotext` reads each row's `infotext` key back (`parse`, then `coerce`), fills A1111's
  parsing defaults (`infotext_default`) and reports every key no row or registered key applies;
* sweep specs (`inpaintlab.study.spec`) accept any row that `inpaint` takes as a base setting or an axis, and validate
  every cell before loading anything.

Adding a setting = one `register(Setting(...))` call (here, or in the technique's module under
`inpaintlab/techniques/`, imported by `inpaintlab`), plus the keyword in the pipeline function (or `keyword=False` for
a technique's row taken through `**settings`) and the infotext key it writes. The test suite checks that every
row's default equals the pipeline keyword's default and that a non-default `example` survives infotext write → read.

Infotext keys that inpaintlab reads without a row (model names and hashes, version) are in `INFOTEXT_KEYS`; a feature
that applies a key no row covers calls `register_infotext_key`, or registers an `INFOTEXT_READERS` entry when one
setting is read from many keys. Prompt tags such as `<lora:name:1>` are reported
by `prompt_problems` until the feature that handles their kind calls `register_extra_network`.
"""
from __future__ import annotations

import dataclasses
import functools
import inspect
import math
import re
from typing import Any, Callable, Mapping

from .errors import SettingsError
from .names import (INPAINT_AREAS, MASK_MODES, MASKED_CONTENT, SAMPLER_NAMES, SCHEDULERS,
                    resolve_sampler)

COMMANDS = ("txt2img", "img2img", "inpaint")
ALL = COMMANDS
IMAGE = ("img2img", "inpaint")
INPAINT = ("inpaint",)
MISSING = object()


@dataclasses.dataclass(frozen=True)
class Setting:
    """One generation setting.

    name: the `Pipeline` keyword (CLI flag `--name-with-dashes`). kind: int, float or str. default: the pipeline's
    default (A1111's UI default). help: one line for `--help`, without the default (added automatically).
    commands: the CLI subcommands that take it. infotext: the key A1111 writes for it (None: not recorded).
    choices: canonical values; aliases: other accepted spellings -> canonical value (matched ignoring case, '_',
    '-' and spaces), e.g. A1111's infotext labels. check(value) -> error text or None, for ranges.
    parse(text) -> value: reads the infotext text (default: `coerce`). infotext_default: the value A1111 assumes when
    the key is absent (a callable gets the parsed infotext fields and may return MISSING). example: a non-default
    value whose infotext must read back to itself (tested). parts: for kind tuple (a tuple of ints, e.g. a size), the
    name of each element; the CLI then has one flag per part (`--seed-resize-from-w`), and each replaces its element
    of a `--from-png` value. keyword: False for a technique's own setting, which the pipeline entry points take
    through `**settings` rather than a named keyword (`inpaintlab.pipeline.technique`).
    """

    name: str
    kind: type
    default: Any
    help: str
    commands: tuple[str, ...] = ALL
    infotext: str | None = None
    choices: tuple[Any, ...] = ()
    aliases: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    check: Callable[[Any], str | None] | None = None
    parse: Callable[[str], Any] | None = None
    infotext_default: Any = MISSING
    example: Any = MISSING
    parts: tuple[str, ...] = ()
    keyword: bool = True

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


SETTINGS: dict[str, Setting] = {}
# Infotext keys applied or deliberately informational without a row of their own: key -> predicate on the stored
# text (None: any value), True when inpaintlab reproduces that value.
INFOTEXT_KEYS: dict[str, Callable[[str], bool] | None] = {}
# Whole-infotext checks (name -> fields -> descriptions of what is not applied); a feature replaces its check by name.
INFOTEXT_CHECKS: dict[str, Callable[[dict[str, str]], list[str]]] = {}
# Keys inpaintlab writes that A1111 does not (their parsing default is inpaintlab's, not A1111's).
OWN_INFOTEXT_KEYS = ("Fill space", "Differential diffusion")
# Whole-infotext readers for a setting spread over keys no row names (ADetailer's " 2nd", " 3rd" … tabs):
# name -> fields -> (the keys it reads, the first naming the setting's origin; {setting: value}; descriptions of the
# values it cannot use, each "key: ...").
INFOTEXT_READERS: dict[str, Callable[[dict[str, str]], tuple[list[str], dict[str, Any], list[str]]]] = {}
# Extra-network kinds (`<kind:name:weight>` prompt tags) that some feature applies.
EXTRA_NETWORKS: set[str] = set()
# Checks over several settings at once (name -> settings -> error text or None).
CROSS_CHECKS: dict[str, Callable[[dict[str, Any]], str | None]] = {}


def register(setting: Setting) -> Setting:
    if setting.name in SETTINGS:
        raise SettingsError(f"setting {setting.name!r} is registered twice")
    SETTINGS[setting.name] = setting
    return setting


def register_infotext_key(key: str, applies: Callable[[str], bool] | None = None) -> None:
    """Mark an infotext key as applied by inpaintlab (optionally only for values where `applies(text)` is true)."""
    INFOTEXT_KEYS[key] = applies


def register_extra_network(kind: str) -> None:
    """Mark `<kind:...>` prompt tags as applied (e.g. "lora"), so they no longer warn."""
    EXTRA_NETWORKS.add(kind.lower())


# --- coercion and validation --------------------------------------------------------------------------------------

def _key(text: str) -> str:
    return re.sub(r"[\s_\-]+", " ", text.strip().lower())


def _match(setting: Setting, value: Any) -> Any:
    """Canonical choice for `value` (a canonical value or an alias, any case), or MISSING."""
    if isinstance(value, str):
        wanted = _key(value)
        for choice in setting.choices:
            if _key(str(choice)) == wanted:
                return choice
        for alias, canonical in setting.aliases.items():
            if _key(alias) == wanted:
                return canonical
    elif value in setting.choices and not isinstance(value, bool):
        return value
    return MISSING


def _choices_text(setting: Setting) -> str:
    text = ", ".join(str(c) for c in setting.choices)
    labels = [a for a in setting.aliases if _key(a) not in {_key(str(c)) for c in setting.choices}]
    return text + (f" (or A1111's {', '.join(repr(a) for a in labels)})" if labels else "")


def coerce(name: str, value: Any) -> Any:
    """The canonical, checked value of setting `name`; ValueError naming the setting and the accepted values."""
    setting = SETTINGS.get(name)
    if setting is None:
        raise SettingsError(f"unknown setting {name!r}; known: {', '.join(SETTINGS)}")
    if value is None and setting.default is None:
        return None
    if setting.choices or setting.aliases:
        matched = _match(setting, value)
        if matched is MISSING and setting.kind is str and setting.check is None:
            raise SettingsError(f"unknown {name} {value!r}; expected one of {_choices_text(setting)}")
        if matched is not MISSING:
            value = matched
    value = _convert(setting, value)
    if setting.choices and setting.kind is not str and value not in setting.choices:
        raise SettingsError(f"{name} must be one of {_choices_text(setting)}, got {value!r}")
    problem = setting.check(value) if setting.check else None
    if problem:
        raise SettingsError(f"{name} {problem}, got {value!r}")
    return value


_BOOLEANS = {"true": True, "yes": True, "on": True, "1": True, "false": False, "no": False, "off": False, "0": False}


def _convert(setting: Setting, value: Any) -> Any:
    name, kind = setting.name, setting.kind
    if kind is object:  # a file path or an already loaded model (Python); its own `check` judges it
        return value
    if kind is str:
        if not isinstance(value, str):
            raise SettingsError(f"{name} must be a string, got {value!r}")
        return value
    if kind is bool:
        if isinstance(value, str) and value.strip().lower() in _BOOLEANS:
            return _BOOLEANS[value.strip().lower()]
        if isinstance(value, bool) or (isinstance(value, int) and value in (0, 1)):
            return bool(value)
        raise SettingsError(f"{name} must be true or false, got {value!r}")
    if isinstance(value, bool):
        raise SettingsError(f"{name} must be a number, got {value!r}")
    if kind is int:
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                raise SettingsError(f"{name} must be an integer, got {value!r}") from None
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if not isinstance(value, int):
            raise SettingsError(f"{name} must be an integer, got {value!r}")
        return value
    if kind is tuple:
        if isinstance(value, str):
            value = value.lower().replace(",", "x").split("x")
        if not isinstance(value, (list, tuple)) or len(value) != len(setting.parts):
            raise SettingsError(f"{name} must be {len(setting.parts)} integers ({', '.join(setting.parts)}), got {value!r}")
        converted = []
        for part in value:
            if isinstance(part, str) and part.strip().lstrip("-").isdigit():
                part = int(part)
            if isinstance(part, bool) or not isinstance(part, int):
                raise SettingsError(f"{name} must be integers ({', '.join(setting.parts)}), got {value!r}")
            converted.append(part)
        return tuple(converted)
    if kind is float:
        try:
            number = float(value.strip() if isinstance(value, str) else value)
        except (TypeError, ValueError):
            raise SettingsError(f"{name} must be a number, got {value!r}") from None
        if not math.isfinite(number):
            raise SettingsError(f"{name} must be a finite number, got {value!r}")
        return number
    raise TypeError(f"setting {name!r} has unsupported kind {kind!r}")


def validate(settings: Mapping[str, Any], command: str | None = None) -> dict[str, Any]:
    """Coerce every setting, refuse ones the command does not take, run the cross-setting checks."""
    out: dict[str, Any] = {}
    for name, value in settings.items():
        out[name] = coerce(name, value)
        if command is not None and command not in SETTINGS[name].commands:
            raise SettingsError(f"{name} does not apply to {command}")
    for check in CROSS_CHECKS.values():
        problem = check(out)
        if problem:
            raise SettingsError(problem)
    return out


def validated(function: Callable) -> Callable:
    """Decorator for pipeline entry points: every argument named like a setting is coerced and checked first."""
    signature = inspect.signature(function)

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(*args, **kwargs)
        given = {name: value for name, value in bound.arguments.items() if name in SETTINGS}
        bound.arguments.update(validate(given))
        for name, parameter in signature.parameters.items():
            if parameter.kind is inspect.Parameter.VAR_KEYWORD and name in bound.arguments:
                extra = bound.arguments[name]
                extra.update(validate({k: v for k, v in extra.items() if k in SETTINGS}))
        return function(*bound.args, **bound.kwargs)

    return wrapper


def for_command(command: str) -> tuple[str, ...]:
    return tuple(name for name, s in SETTINGS.items() if command in s.commands)


def cli_help(setting: Setting) -> str:
    text = setting.help
    if setting.choices and setting.kind is str:
        text += f"; one of {_choices_text(setting)}"
    if setting.default not in (None, ""):
        text += f" (default: {setting.default})"
    return text


# --- prompt tags ----------------------------------------------------------------------------------------------------

_EXTRA_NETWORK = re.compile(r"<(\w+):([^>]*)>")


def prompt_problems(prompt: str) -> list[str]:
    """Extra-network tags (`<lora:name:1>`) whose kind no feature applies: they would reach the text encoder as text."""
    return [f"prompt tag {m.group(0)}" for m in _EXTRA_NETWORK.finditer(prompt or "")
            if m.group(1).lower() not in EXTRA_NETWORKS]


# --- the rows -------------------------------------------------------------------------------------------------------

def _at_least(low: float) -> Callable[[Any], str | None]:
    return lambda v: None if v >= low else f"must be >= {low:g}"


def _between(low: float, high: float) -> Callable[[Any], str | None]:
    return lambda v: None if low <= v <= high else f"must be in [{low:g}, {high:g}]"


at_least, between = _at_least, _between  # range checks for the rows techniques declare in their own modules


def _size(v: int) -> str | None:
    return None if v >= 8 and v % 8 == 0 else "must be a positive multiple of 8"


def _sampler(v: str) -> str | None:
    resolve_sampler(v, "Automatic")  # raises with the valid names
    return None


def _scheduler(v: str) -> str | None:
    resolve_sampler(SAMPLER_NAMES[0], v)
    return None


def _sampler_and_scheduler(s: dict[str, Any]) -> str | None:
    if "sampler" in s or "scheduler" in s:
        resolve_sampler(s.get("sampler", SETTINGS["sampler"].default), s.get("scheduler", "Automatic"))
    return None


def _eta_ddim(fields: dict[str, str]) -> Any:
    # DDIM and DDIM CFG++ record their eta as "Eta DDIM" (default 0); the k-diffusion samplers as "Eta" (default 1)
    return float(fields["Eta DDIM"]) if "Eta DDIM" in fields else MISSING


def _non_negative_pair(v: tuple[int, ...]) -> str | None:
    return None if all(part >= 0 for part in v) else "must not be negative"


def _mask_blur_default(fields: dict[str, str]) -> Any:
    # A1111 (>= 1.8) records "Mask blur" whenever the blur is > 0, so an img2img/inpaint infotext without it had none.
    return 0 if "Denoising strength" in fields else MISSING


def _size_part(index: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        parts = text.lower().split("x")
        if len(parts) != 2:
            raise SettingsError(f"Size must look like 512x512, got {text!r}")
        return int(parts[index])
    return parse


for _row in (
    Setting("prompt", str, "", "prompt (A1111 attention syntax)", infotext="Prompt", example="a red ball"),
    Setting("negative_prompt", str, "", "negative prompt", infotext="Negative prompt", example="blurry"),
    Setting("steps", int, 20, "sampling steps", infotext="Steps", check=_at_least(1), example=3),
    Setting("sampler", str, "DPM++ 2M", f"sampler: {', '.join(SAMPLER_NAMES)}", infotext="Sampler", check=_sampler,
            example="Euler a"),
    Setting("scheduler", str, "Automatic", f"schedule type: {', '.join(SCHEDULERS.values())}",
            infotext="Schedule type", check=_scheduler, infotext_default="Automatic", example="Exponential"),
    Setting("eta", float, None, "eta of the ancestral and SDE samplers, DPM fast/adaptive (A1111 default 1) and DDIM "
            "(default 0); empty = the sampler's default", infotext="Eta", check=_at_least(0),
            infotext_default=_eta_ddim, example=0.5),
    Setting("s_churn", float, 0.0, "sigma churn (Euler, Heun, DPM2)", infotext="Sigma churn", check=_at_least(0)),
    Setting("s_tmin", float, 0.0, "sigma tmin (Euler, Heun, DPM2)", infotext="Sigma tmin", check=_at_least(0)),
    Setting("s_tmax", float, 0.0, "sigma tmax, 0 = infinity (Euler, Heun, DPM2)", infotext="Sigma tmax",
            check=_at_least(0)),
    Setting("s_noise", float, 1.0, "sigma noise (Euler, Heun, DPM2, DPM2 a, DPM++ 2S a, the DPM++ SDE samplers, "
            "DPM fast)", infotext="Sigma noise", check=_at_least(0)),
    Setting("cfg_scale", float, 7.0, "classifier-free guidance scale", infotext="CFG scale", example=4.5),
    Setting("seed", int, -1, "seed (-1 = random)", infotext="Seed", check=_at_least(-1), example=42),
    Setting("width", int, None, "processing width, a multiple of 8 (default: the image's, 512 for txt2img)",
            infotext="Size", check=_size, parse=_size_part(0), example=48),
    Setting("height", int, None, "processing height, a multiple of 8 (default: the image's, 512 for txt2img)",
            infotext="Size", check=_size, parse=_size_part(1), example=32),
    Setting("batch_size", int, 1, "images per run (seeds seed, seed+1, ...)", check=_at_least(1)),
    Setting("clip_skip", int, 1, "CLIP layers to skip, counted as in A1111 (1 = last layer)", infotext="Clip skip",
            check=_at_least(1), infotext_default=1, example=2),
    Setting("rng_source", str, "CPU", "noise source: CPU (the same noise on every device), NV (A1111's emulation of "
            "CUDA noise, any device) or GPU (torch's CUDA generator, A1111's default)", infotext="RNG",
            choices=("CPU", "GPU", "NV"), infotext_default="GPU", example="NV"),
    Setting("subseed", int, -1, "variation seed (-1 = random)", infotext="Variation seed", check=_at_least(-1),
            example=7),
    Setting("subseed_strength", float, 0.0, "variation strength (0 = off, 1 = the variation seed's noise)",
            infotext="Variation seed strength", check=_between(0, 1), example=0.25),
    Setting("seed_resize_from", tuple, None, "resize seed from, in pixels (used when both sides are > 0)",
            infotext="Seed resize from", check=_non_negative_pair, example=(40, 24), parts=("w", "h")),
    Setting("ensd", int, 0, "eta noise seed delta: sampler noise after the initial noise comes from seed + ENSD "
            "(recorded for ancestral samplers)", infotext="ENSD", example=31337),
    Setting("denoising_strength", float, 0.75, "denoising strength, 0-1 (txt2img: of the hires fix pass)", ALL,
            infotext="Denoising strength",
            check=_between(0, 1), example=0.5),
    Setting("resize_mode", int, 0, "resize mode: 0 just resize, 1 crop and resize, 2 resize and fill", IMAGE,
            choices=(0, 1, 2), aliases={"Just resize": 0, "Crop and resize": 1, "Resize and fill": 2}),
    Setting("mask_blur", int, 4, "mask blur sigma in pixels", INPAINT, infotext="Mask blur", check=_at_least(0),
            infotext_default=_mask_blur_default, example=2),
    Setting("mask_mode", str, "masked", "which part is repainted", INPAINT, infotext="Mask mode", choices=MASK_MODES,
            aliases={"Inpaint masked": "masked", "Inpaint not masked": "not_masked"}, infotext_default="masked",
            example="not_masked"),
    Setting("masked_content", str, "original", "what the masked area starts from", INPAINT,
            infotext="Masked content", choices=MASKED_CONTENT, infotext_default="original", example="latent_noise"),
    Setting("inpaint_area", str, "whole", "area processed", INPAINT, infotext="Inpaint area", choices=INPAINT_AREAS,
            aliases={"Whole picture": "whole", "Only masked": "only_masked"}, infotext_default="whole",
            example="only_masked"),
    Setting("padding", int, 32, "only-masked padding in pixels", INPAINT, infotext="Masked area padding",
            check=_at_least(0), infotext_default=32, example=8),
    Setting("fill_space", str, "pixel", "where masked content 'fill' runs: pixel (A1111) or latent", INPAINT,
            infotext="Fill space", choices=("pixel", "latent"), infotext_default="pixel"),
    # txt2img: A1111's option of the same name, used by the hires fix's second pass on 9-channel models.
    Setting("inpainting_mask_weight", float, 1.0, "conditional mask weight (9-channel inpainting models)", ALL,
            infotext="Conditional mask weight", check=_between(0, 1)),
):
    register(_row)

CROSS_CHECKS["sampler and scheduler"] = _sampler_and_scheduler


def _gpu_noise_needs_cuda(s: dict[str, Any]) -> str | None:
    from .samplers.rng import gpu_source_problem

    return gpu_source_problem(s.get("rng_source"))


CROSS_CHECKS["GPU noise needs CUDA"] = _gpu_noise_needs_cuda



# Stored to identify the files and program that made an image; replay uses --model/--vae/--embeddings-dir, so they are
# reported by `inpaintlab info` but not applied.
# `Hashes` (a JSON object of file hashes, written by some A1111 setups and Forge) and `Init image hash` identify
# files too; `User` names who submitted the job.
for _key_name in ("Model", "Model hash", "VAE", "VAE hash", "TI hashes", "Version", "Hashes", "Init image hash", "User"):
    register_infotext_key(_key_name)
# A grid's X/Y/Z plot axes (A1111's script and `inpaintlab sweep`): a replay makes the first cell, which the rest of
# the infotext describes.
for _letter in "XYZ":
    register_infotext_key(f"{_letter} Type")
    register_infotext_key(f"{_letter} Values")
register_infotext_key("Eta DDIM")  # read into `eta` (see _eta_ddim)
INFOTEXT_CHECKS["prompt tags"] = lambda fields: prompt_problems(fields.get("Prompt", "")) + prompt_problems(
    fields.get("Negative prompt", ""))
