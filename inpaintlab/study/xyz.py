"""A1111 v1.10's X/Y/Z plot script: its axis value syntax, its axis types mapped to inpaintlab settings, and the
grid infotext keys (`Script: X/Y/Z plot`, `X Type`, `X Values`, `Fixed X Values`, … for Y and Z).

Value syntax (`xyz_grid.process_axis`): the text is read as CSV (`skipinitialspace`, items stripped, quotes allowed);
on int axes an item `a-b` is `range(a, b + 1)`, `a-b (+s)` / `a-b (-s)` `range(a, b + 1, s)` and `a-b [n]`
`int(v) for v in linspace(a, b, n)`; on float axes `a-b (+s)` is `numpy.arange(a, b + s, s)` (so `0.1-0.3 (+0.1)`
overshoots to four values, as in A1111) and `a-b [n]` `linspace(a, b, n)`; empty int items are dropped. Replaying a
grid: the base settings are the grid's own infotext (that of cell (0, 0, 0)), each cell applies its x, y and z values
in that order; seed axes use `Fixed * Values` (the seeds A1111 actually drew for `-1`). "Prompt order" runs every
permutation of its tokens; "Checkpoint name" and "VAE" set the cell keys `checkpoint` / `vae` (A1111 names, which
`inpaintlab.study.models.ModelDir` resolves to files). Axes A1111 has but inpaintlab cannot apply (`REFUSED_AXES`:
Styles, the refiner, face restoration, …) are refused with the reason.
"""
from __future__ import annotations

import csv
import io
import itertools
import re
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

SCRIPT_NAME = "X/Y/Z plot"
_INT = r"[+-]?\s*\d+"
_FLOAT = r"[+-]?\s*\d+(?:.\d*)?"  # A1111's unescaped "." kept: negative floats mis-parse there as well
RE_RANGE = re.compile(rf"\s*({_INT})\s*-\s*({_INT})(?:\s*\(([+-]\d+)\s*\))?\s*")
RE_RANGE_COUNT = re.compile(rf"\s*({_INT})\s*-\s*({_INT})(?:\s*\[(\d+)\s*])?\s*")
RE_RANGE_FLOAT = re.compile(rf"\s*({_FLOAT})\s*-\s*({_FLOAT})(?:\s*\(([+-]\d+(?:.\d*)?)\s*\))?\s*")
RE_RANGE_COUNT_FLOAT = re.compile(rf"\s*({_FLOAT})\s*-\s*({_FLOAT})(?:\s*\[(\d+(?:.\d*)?)\s*])?\s*")


class XYZError(ValueError):
    """An X/Y/Z axis or value that cannot be replayed; the message names the axis."""


@dataclass(frozen=True)
class AxisType:
    """An A1111 axis label: the value type and the inpaintlab setting it sets (None: a special action)."""

    label: str
    kind: type
    setting: str | None
    is_seed: bool = False


# Cell keys that are not settings: the checkpoint and VAE a cell runs with (A1111 names, resolved by the replay).
CHECKPOINT, VAE = "checkpoint", "vae"

# A1111 axis labels that inpaintlab applies, with the setting each one sets (None: a special action).
AXIS_TYPES: dict[str, AxisType] = {a.label: a for a in (
    AxisType("Nothing", str, None),
    AxisType("Seed", int, "seed", True),
    AxisType("Var. seed", int, "subseed", True),
    AxisType("Var. strength", float, "subseed_strength"),
    AxisType("Steps", int, "steps"),
    AxisType("Hires steps", int, "hr_second_pass_steps"),
    AxisType("CFG Scale", float, "cfg_scale"),
    AxisType("Prompt S/R", str, None),
    AxisType("Prompt order", str, None),
    AxisType("Sampler", str, "sampler"),
    AxisType("Hires sampler", str, "hr_sampler"),
    AxisType("Checkpoint name", str, None),
    AxisType("Negative Guidance minimum sigma", float, "s_min_uncond"),
    AxisType("Sigma Churn", float, "s_churn"),
    AxisType("Sigma min", float, "s_tmin"),
    AxisType("Sigma max", float, "s_tmax"),
    AxisType("Sigma noise", float, "s_noise"),
    AxisType("Schedule type", str, "scheduler"),
    AxisType("Schedule min sigma", float, "sigma_min"),
    AxisType("Schedule max sigma", float, "sigma_max"),
    AxisType("Schedule rho", float, "rho"),
    AxisType("Beta schedule alpha", float, "beta_dist_alpha"),
    AxisType("Beta schedule beta", float, "beta_dist_beta"),
    AxisType("Eta", float, "eta"),
    AxisType("Clip skip", int, "clip_skip"),
    AxisType("Denoising", float, "denoising_strength"),
    AxisType("Initial noise multiplier", float, "initial_noise_multiplier"),
    AxisType("Extra noise", float, "img2img_extra_noise"),
    AxisType("Hires upscaler", str, "hr_upscaler"),
    AxisType("Cond. Image Mask Weight", float, "inpainting_mask_weight"),
    AxisType("VAE", str, None),
    AxisType("Token merging ratio", float, "token_merging_ratio"),
    AxisType("Token merging ratio high-res", float, "token_merging_ratio_hr"),
    AxisType("Refiner switch at", float, "refiner_switch_at"),
    AxisType("RNG source", str, "rng_source"),
    AxisType("Size", str, None),
)}
# A1111 axis labels inpaintlab cannot apply, with the reason (named in the error).
REFUSED_AXES = {
    "Styles": "A1111's prompt styles (styles.csv) are not supported; a cell's infotext holds its prompts with the "
              "styles already applied",
    "Image CFG Scale": "instruct-pix2pix models are not supported",
    "UniPC Order": "UniPC's order option is not a setting",
    "Face restore": "face restoration (CodeFormer, GFPGAN) is not supported",
    "Always discard next-to-last sigma": "that option is not a setting",
    "SGM noise multiplier": "that option is not a setting",
    "Refiner checkpoint": "a refiner per cell is not supported (give the grid's refiner as refiner_checkpoint)",
    "FP8 mode": "FP8 weight storage is not supported",
}
SETTING_TO_LABEL = {a.setting: a.label for a in AXIS_TYPES.values() if a.setting}


def csv_items(text: str) -> list[str]:
    """A1111's `csv_string_to_list_strip`."""
    return [item.strip() for row in csv.reader(io.StringIO(text), skipinitialspace=True) for item in row]


def parse_values(text: str, kind: type) -> list[Any]:
    """An axis's values from its text, with A1111's range syntax (see the module docstring)."""
    try:
        return _parse_values(text, kind)
    except ValueError as e:
        raise XYZError(f"X/Y/Z values {text!r}: {e}") from None


def _parse_values(text: str, kind: type) -> list[Any]:
    items = csv_items(text)
    out: list[Any] = []
    if kind is int:
        for item in items:
            if not item.strip():
                continue
            if m := RE_RANGE.fullmatch(item):
                step = int(m.group(3)) if m.group(3) is not None else 1
                out += list(range(_int(m.group(1)), _int(m.group(2)) + 1, step))
            elif m := RE_RANGE_COUNT.fullmatch(item):
                n = int(m.group(3)) if m.group(3) is not None else 1
                out += [int(v) for v in np.linspace(_int(m.group(1)), _int(m.group(2)), n).tolist()]
            else:
                out.append(item)
    elif kind is float:
        for item in items:
            if m := RE_RANGE_FLOAT.fullmatch(item):
                step = float(m.group(3)) if m.group(3) is not None else 1.0
                start, end = float(_nospace(m.group(1))), float(_nospace(m.group(2)))
                out += np.arange(start, end + step, step).tolist()
            elif m := RE_RANGE_COUNT_FLOAT.fullmatch(item):
                n = int(float(m.group(3))) if m.group(3) is not None else 1
                out += np.linspace(float(_nospace(m.group(1))), float(_nospace(m.group(2))), n).tolist()
            else:
                out.append(item)
    else:
        out = items
    return [kind(v) for v in out]


def _nospace(s: str) -> str:
    return s.replace(" ", "")


def _int(s: str) -> int:
    return int(_nospace(s))


@dataclass(frozen=True)
class Axis:
    label: str
    text: str                  # the values as written in the infotext (`X Values`)
    values: tuple[Any, ...]    # parsed (seed axes: the fixed values when the infotext has them)

    @property
    def type(self) -> AxisType:
        return AXIS_TYPES[self.label]


def axis_from_fields(fields: Mapping[str, str], letter: str) -> Axis | None:
    """The X, Y or Z axis of a grid infotext (None when absent or "Nothing")."""
    label = fields.get(f"{letter} Type")
    if label is None or label == "Nothing":
        return None
    if label in REFUSED_AXES:
        raise XYZError(f"{letter} Type {label!r}: this X/Y/Z axis cannot be replayed: {REFUSED_AXES[label]}")
    if label not in AXIS_TYPES:
        raise XYZError(f"{letter} Type {label!r}: this X/Y/Z axis is not supported; supported: "
                       f"{', '.join(a for a in AXIS_TYPES if a != 'Nothing')}")
    kind = AXIS_TYPES[label].kind
    text = fields.get(f"{letter} Values", "")
    fixed = fields.get(f"Fixed {letter} Values")
    if label == "Prompt order":  # every permutation of the listed tokens
        values: list[Any] = list(itertools.permutations(csv_items(text)))
    elif fixed and AXIS_TYPES[label].is_seed:
        values = parse_values(fixed, kind)
    else:
        values = parse_values(text, kind)
    if not values:
        raise XYZError(f"{letter} Values {text!r}: no values")
    return Axis(label, text, tuple(values))


def grid_axes(fields: Mapping[str, str]) -> list[tuple[str, Axis]]:
    """[(letter, axis)] of a grid infotext whose `Script` is the X/Y/Z plot; XYZError otherwise."""
    if fields.get("Script") != SCRIPT_NAME:
        raise XYZError(f"not an X/Y/Z plot grid (Script: {fields.get('Script', 'missing')!r})")
    return [(letter, a) for letter in "XYZ" if (a := axis_from_fields(fields, letter)) is not None]


def apply_value(settings: dict[str, Any], axis: Axis, value: Any) -> dict[str, Any]:
    """A copy of `settings` with one axis value applied, as A1111's axis action does."""
    out = dict(settings)
    t = axis.type
    if t.setting is not None:
        out[t.setting] = value
    elif t.label == "Prompt S/R":
        old = axis.values[0]
        prompt, negative = out.get("prompt", ""), out.get("negative_prompt", "")
        if old not in prompt and old not in negative:
            raise XYZError(f"Prompt S/R did not find {old!r} in prompt or negative prompt")
        out["prompt"], out["negative_prompt"] = prompt.replace(old, value), negative.replace(old, value)
    elif t.label == "Prompt order":
        out["prompt"] = reorder_prompt(out.get("prompt", ""), value)
    elif t.label == "Checkpoint name":
        out[CHECKPOINT] = value
    elif t.label == "VAE":
        out[VAE] = value
    elif t.label == "Size":
        try:
            out["width"], out["height"] = (int(v) for v in str(value).split("x"))
        except ValueError:
            raise XYZError(f"Size value {value!r} is not WIDTHxHEIGHT") from None
    return out


def reorder_prompt(prompt: str, tokens: tuple[str, ...]) -> str:
    """A1111's "Prompt order": the tokens, found in the prompt by first occurrence, put back in the order given."""
    found = sorted(((prompt.find(token), token) for token in tokens), key=lambda t: t[0])
    parts, rest = [], prompt
    for _, token in found:
        n = rest.find(token)
        parts.append(rest[:n])
        rest = rest[n + len(token):]
    return "".join(part + token for part, token in zip(parts, tokens)) + rest


def cells(base: Mapping[str, Any], axes: list[tuple[str, Axis]]) -> list[tuple[tuple[int, ...], dict[str, Any]]]:
    """Every cell's settings, indexed (ix, iy, iz) with x fastest (A1111's cell index ix + iy·nx + iz·nx·ny)."""
    out: list[tuple[tuple[int, ...], dict[str, Any]]] = [((), dict(base))]
    for _, axis in axes:
        out = [(idx + (i,), apply_value(s, axis, v)) for i, v in enumerate(axis.values) for idx, s in out]
    return sorted(out, key=lambda c: c[0][::-1])


def vary_seeds(cell_list: list[tuple[tuple[int, ...], dict[str, Any]]], axes: list[tuple[str, Axis]],
               letters: str) -> list[tuple[tuple[int, ...], dict[str, Any]]]:
    """A1111's "Vary seeds for X/Y/Z" on the cells of `cells` (not recorded in a grid's infotext, so the caller says
    which `letters` were ticked): `seed += ix`, `+= iy · xdim`, `+= iz · xdim · ydim`, with `xdim` = the number of X
    values if X varies, else 1 (likewise `ydim`)."""
    letters = letters.upper()
    bad = set(letters) - set("XYZ")
    if bad:
        raise XYZError(f"vary seeds: {''.join(sorted(bad))!r} is not an axis letter (X, Y, Z)")
    sizes = {letter: len(axis.values) for letter, axis in axes}
    order = [letter for letter, _ in axes]
    xdim = sizes.get("X", 1) if "X" in letters else 1
    ydim = sizes.get("Y", 1) if "Y" in letters else 1
    steps = {"X": 1, "Y": xdim, "Z": xdim * ydim}
    out = []
    for index, settings in cell_list:
        pos = dict(zip(order, index))
        offset = sum(pos.get(letter, 0) * steps[letter] for letter in "XYZ" if letter in letters)
        out.append((index, {**settings, "seed": settings["seed"] + offset} if offset else settings))
    return out


def _format_values(values: list[Any]) -> str:
    return ", ".join(str(v) for v in values)


def values_text(label: str, values: list[Any]) -> str:
    """An axis's values as A1111 writes a dropdown selection (`csv.writer`, quoting items with commas or quotes) for
    text axes, comma-separated otherwise; `parse_values` reads either back to the same list."""
    if AXIS_TYPES[label].kind is str:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="").writerow([str(v) for v in values])
        return buf.getvalue()
    return _format_values(values)


def grid_infotext(axes: list[tuple[str, str, list[Any]]]) -> dict[str, str]:
    """The keys A1111 adds to a grid's infotext for axes [(letter, label, values)], in its order (`Fixed … Values`
    only on seed axes)."""
    out = {"Script": SCRIPT_NAME}
    for letter, label, values in axes:
        if label not in AXIS_TYPES:
            raise XYZError(f"{label!r} is not an X/Y/Z axis type inpaintlab writes")
        out[f"{letter} Type"] = label
        out[f"{letter} Values"] = values_text(label, values)
        if AXIS_TYPES[label].is_seed:
            out[f"Fixed {letter} Values"] = _format_values(values)
    return out
