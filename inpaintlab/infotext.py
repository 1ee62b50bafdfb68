"""A1111 v1.10 "parameters" infotext: write it, parse it back, and save PNGs that carry it.

Format (what A1111's PNG Info reads):

    <prompt>
    Negative prompt: <negative>            (only when non-empty)
    Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1, Size: 512x512, ...

A value is JSON-quoted when its text contains ',', ':' or a newline; a pair whose value equals its key is written as the key
alone; None values are left out. Fixed keys come first in A1111's order, then the extra keys in insertion order.
"""
from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Any

from PIL import Image, PngImagePlugin

from .errors import InfotextError
from .files import write_atomic
from .settings import INFOTEXT_CHECKS, INFOTEXT_KEYS, INFOTEXT_READERS, MISSING, SETTINGS, coerce

log = logging.getLogger(__name__)

# A1111 v1.10.1 `create_infotext` order for the keys this library can produce.
FIXED_KEYS = (
    "Steps", "Sampler", "Schedule type", "CFG scale", "Image CFG scale", "Seed", "Size", "Model hash", "Model", "VAE hash",
    "VAE", "Variation seed", "Variation seed strength", "Seed resize from", "Denoising strength",
    "Conditional mask weight", "Clip skip", "ENSD", "Token merging ratio", "Token merging ratio hr", "RNG",
)

_PAIR = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')


def format_value(value: Any) -> str:
    """str() of the value, JSON-quoted (ensure_ascii=False) when it contains ',', ':' or a newline."""
    text = str(value)
    if any(c in text for c in ",:\n"):
        return json.dumps(text, ensure_ascii=False)
    return text


def build_infotext(prompt: str, negative_prompt: str, params: dict[str, Any], extra: dict[str, Any] | None = None,
                   version: str | None = None) -> str:
    """Assemble the infotext: fixed keys in A1111's order, then `extra` in insertion order, then Version."""
    pairs: dict[str, Any] = {}
    extra = extra or {}
    for key in FIXED_KEYS:
        # A1111 updates its fixed-slot dict with extra_generation_params: a fixed key set there keeps its slot.
        value = params.get(key)
        if value is None:
            value = extra.get(key)
        if value is not None:
            pairs[key] = value
    unknown = set(params) - set(FIXED_KEYS)
    if unknown:
        raise ValueError(f"not a fixed infotext key: {sorted(unknown)}; pass it in `extra`")
    for key, value in extra.items():
        if value is not None and key not in pairs:
            pairs[key] = value
    if version is not None:
        pairs["Version"] = version
    line = ", ".join(key if str(value) == key else f"{key}: {format_value(value)}" for key, value in pairs.items())
    negative = f"\nNegative prompt: {negative_prompt}" if negative_prompt else ""
    return f"{prompt}{negative}\n{line}".strip()


def parse_infotext(text: str) -> dict[str, str]:
    """Split an infotext into {"Prompt", "Negative prompt", key: value-as-text}.

    Like A1111's PNG Info: the last line holds the parameters only when it has at least three `key: value` pairs.
    """
    *lines, last = text.strip().split("\n")
    if len(_PAIR.findall(last)) < 3:
        lines.append(last)
        last = ""
    prompt, negative, in_negative = [], [], False
    for line in lines:
        line = line.strip()
        if line.startswith("Negative prompt:"):
            in_negative = True
            line = line[len("Negative prompt:"):].strip()
        (negative if in_negative else prompt).append(line)
    result = {"Prompt": "\n".join(prompt), "Negative prompt": "\n".join(negative)}
    for key, value in _PAIR.findall(last):
        value = value.strip()
        if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
            value = _unquote(value)
        result[key.strip()] = value
    return result


def _unquote(text: str) -> str:
    # A1111's unquote: the JSON string, or the text as it stands when it is not valid JSON.
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, str) else text


def save_png(image: Image.Image, path: str | os.PathLike, infotext: str | None, *, exclusive: bool = False) -> Path:
    """Write `image` as PNG with a `parameters` text chunk (tEXt if Latin-1, else iTXt), atomically.

    Written atomically with the usual file mode (`inpaintlab.files.write_atomic`); `exclusive`: FileExistsError
    instead of replacing an existing file.
    """
    path = Path(path)
    info = PngImagePlugin.PngInfo()
    if infotext is not None:
        try:
            infotext.encode("latin-1")
            info.add_text("parameters", infotext)
        except UnicodeEncodeError:
            info.add_itxt("parameters", infotext)
    return write_atomic(path, lambda handle: image.save(handle, format="PNG", pnginfo=info), exclusive=exclusive)


def read_png_infotext(path: str | os.PathLike) -> str:
    """The infotext of an image file: a PNG's `parameters` chunk, or the EXIF UserComment of a JPEG or WebP, as
    A1111's PNG Info reads them (`inpaintlab.imagemeta`). FileError / InfotextError name the file."""
    from .imagemeta import read_infotext

    return read_infotext(path)


read_image_infotext = read_png_infotext


def read_settings(fields: dict[str, str], problems: list[str] | None = None) -> tuple[dict[str, Any], dict[str, str]]:
    """Settings stored in parsed infotext `fields`, plus A1111's parsing defaults for absent keys.

    Returns (settings, origin) where origin[name] is the infotext key the value came from, or "absent" when it is
    A1111's default for a missing key. Values are coerced as the pipeline would. A value that cannot be used raises
    InfotextError naming the key, or, when a `problems` list is given, is described there and leaves every setting
    read from that key at its default (as a failed paste leaves A1111's component unchanged).
    """
    settings: dict[str, Any] = {}
    origin: dict[str, str] = {}
    failed: set[str] = set()
    for name, setting in SETTINGS.items():
        if setting.infotext is None:
            continue
        if setting.infotext in fields:
            key, text = setting.infotext, fields[setting.infotext]
            if key in failed:
                continue
            try:
                value = setting.parse(text) if setting.parse else _number_text(setting.kind, text)
                settings[name] = coerce(name, value)
            except ValueError as error:
                shown = text if len(text) <= 60 else text[:57] + "..."
                message = f"{key}: {shown}: {error}"
                if problems is None:
                    raise InfotextError(f"infotext {message}") from None
                problems.append(message)
                failed.add(key)
                for other in [n for n, k in origin.items() if k == key]:
                    del settings[other], origin[other]
                continue
            origin[name] = key
        elif setting.infotext_default is not MISSING:
            default = setting.infotext_default
            try:  # a default read from another key ("Eta DDIM") can meet a value it cannot use
                value = default(fields) if callable(default) else default
                if value is not MISSING:
                    settings[name] = coerce(name, value)
                    origin[name] = "absent"
            except ValueError as error:
                if problems is None:
                    raise InfotextError(f"infotext: {error}") from None
                problems.append(f"{name}: {error}")
    for reader in INFOTEXT_READERS.values():
        keys, values, bad = reader(fields)
        if bad and problems is None:
            raise InfotextError(f"infotext {bad[0]}")
        if bad:
            problems.extend(bad)
        for name, value in values.items():
            settings[name], origin[name] = coerce(name, value), keys[0]
    return settings, origin


def _number_text(kind: type, text: str) -> Any:
    # A1111's paste gives integer sliders float(text): "20.0" is 20 steps.
    if kind is int and re.fullmatch(r"\s*-?\d+\.0*\s*", text):
        return int(float(text))
    return text


def unapplied(fields: dict[str, str]) -> list[str]:
    """What in parsed infotext `fields` inpaintlab does not apply: unknown keys, values it cannot reproduce, and
    whatever the registered whole-infotext checks report (e.g. `<lora:...>` prompt tags)."""
    by_key = {s.infotext for s in SETTINGS.values() if s.infotext}
    for reader in INFOTEXT_READERS.values():  # what a reader cannot use it reports through read_settings
        by_key |= set(reader(fields)[0])
    problems = []
    for key, text in fields.items():
        if key in by_key:
            continue
        if key in INFOTEXT_KEYS:
            applies = INFOTEXT_KEYS[key]
            if applies is None or applies(text):
                continue
            problems.append(f"{key}: {text}")
        else:
            problems.append(key)
    for check in INFOTEXT_CHECKS.values():
        problems.extend(check(fields))
    return problems


def settings_from_infotext(text: str, *, strict: bool = False) -> dict[str, Any]:
    """Turn an infotext back into `Pipeline` keyword arguments (with prompt / negative_prompt).

    Read as A1111 v1.10's paste reads it (`inpaintlab.replay`): missing keys take A1111's parsing defaults (masked,
    original, whole picture, padding 32, clip skip 1, schedule Automatic, RNG "GPU"; no "Mask blur" in an img2img
    infotext means 0), old spellings and folded sampler names are understood. Whatever inpaintlab does not apply
    (keys such as "Hires upscale", `<lora:...>` prompt tags, unknown samplers, values it cannot use) is named in one
    logged warning, or raises InfotextError when `strict`. Without `strict` it never raises for what the infotext
    holds, except for an infotext that cannot be replayed at all (e.g. only a prompt). "GPU" noise is replayed
    with "NV" where CUDA is absent (`replay_noise`, one logged line).
    """
    from .replay import read_replay

    if not isinstance(text, str):
        raise InfotextError(f"an infotext is text, got {type(text).__name__}")
    replay = read_replay(text)
    if replay.problems:
        message = ("infotext settings inpaintlab does not apply (the replay will differ): "
                   + "; ".join(map(str, replay.problems)))
        if strict:
            raise InfotextError(message)
        log.warning("%s", message)
    if replay.refused:
        raise InfotextError(f"infotext cannot be replayed: {replay.refused}")
    for note in replay.notes:
        log.warning("%s", note)
    return replay.settings


def replay_noise(settings: dict[str, Any], origin: dict[str, str]) -> tuple[dict[str, Any], str | None]:
    """Settings read from an infotext with the noise source the replay can use here: "GPU" (stored, or A1111's
    default for an absent `RNG` key) becomes "NV" where CUDA is absent, with a one-line note saying so."""
    if settings.get("rng_source") != "GPU":
        return settings, None
    from .samplers.rng import replay_rng_source

    source, note = replay_rng_source("GPU", stored=origin.get("rng_source") == "RNG")
    return {**settings, "rng_source": source}, note
