"""A1111's X/Y/Z plot value syntax, axis mapping and grid keys, against the spec's examples and NumPy.

Float ranges are compared exactly with numpy.arange / linspace (A1111 calls them with the same arguments).
"""
from __future__ import annotations

import numpy as np
import pytest

from inpaintlab.infotext import parse_infotext
from inpaintlab.study.xyz import (XYZError, apply_value, cells, csv_items, grid_axes, grid_infotext, parse_values)


@pytest.mark.parametrize("text,expected", [
    ("1-5", [1, 2, 3, 4, 5]),
    ("1-5 (+2)", [1, 3, 5]),
    ("5-1 (-2)", [5, 3]),                          # end + 1 with a negative step
    ("1-5 [3]", [1, 3, 5]),
    ("1-10 [4]", [1, 4, 7, 10]),
    ("0-10 [4]", [0, 3, 6, 10]),                   # int(linspace) truncates
    ("7, 9, 1-2", [7, 9, 1, 2]),
    ("3,,4", [3, 4]),                              # empty items dropped on int axes
])
def test_int_ranges(text, expected):
    assert parse_values(text, int) == expected


def test_float_ranges_match_numpy():
    assert parse_values("0.1-0.3 (+0.1)", float) == [0.1, 0.2, 0.30000000000000004, 0.4]
    assert parse_values("0.1-0.3 (+0.1)", float) == np.arange(0.1, 0.3 + 0.1, 0.1).tolist()
    assert parse_values("1-2 [3]", float) == [1.0, 1.5, 2.0]
    assert parse_values("5, 7.5, 2-4", float) == [5.0, 7.5, 2.0, 3.0, 4.0]
    with pytest.raises(XYZError):
        parse_values("-1--3", float)               # A1111's unescaped '.' mis-parses negative floats too


def test_text_axes_csv_quoting():
    assert csv_items('"a, b", c ,  d') == ["a, b", "c", "d"]
    assert parse_values('Euler a,"DPM++ 2M"', str) == ["Euler a", "DPM++ 2M"]


def _fields(**extra):
    line = ", ".join(f"{k}: {v}" for k, v in extra.items())
    return parse_infotext(f"a cat on a sofa\nNegative prompt: dog\nSteps: 20, Sampler: Euler a, CFG scale: 7, "
                          f"Seed: 5, Size: 64x64, {line}")


def test_grid_replay_cells():
    keys = grid_infotext([("X", "Seed", [5, 6]), ("Y", "Prompt S/R", ["cat", "dog, small", "bird"]),
                          ("Z", "CFG Scale", [7.0, 3.5])])
    assert keys == {"Script": "X/Y/Z plot", "X Type": "Seed", "X Values": "5, 6", "Fixed X Values": "5, 6",
                    "Y Type": "Prompt S/R", "Y Values": 'cat,"dog, small",bird', "Z Type": "CFG Scale",
                    "Z Values": "7.0, 3.5"}
    quoted = {k: (f'"{v}"' if "," in v or ":" in v else v) for k, v in keys.items()}
    quoted["Y Values"] = '"cat,\\"dog, small\\",bird"'
    fields = _fields(**quoted)
    axes = grid_axes(fields)
    assert [(k, a.values) for k, a in axes] == [("X", (5, 6)), ("Y", ("cat", "dog, small", "bird")), ("Z", (7.0, 3.5))]
    base = {"prompt": "a cat on a sofa", "negative_prompt": "cat", "seed": 5, "cfg_scale": 7.0}
    got = cells(base, axes)
    assert len(got) == 12 and [idx for idx, _ in got[:3]] == [(0, 0, 0), (1, 0, 0), (0, 1, 0)]
    (idx, s), = [c for c in got if c[0] == (1, 1, 1)]
    assert s == {"prompt": "a dog, small on a sofa", "negative_prompt": "dog, small", "seed": 6, "cfg_scale": 3.5}


def test_fixed_seed_values_win_and_errors():
    fields = {"Script": "X/Y/Z plot", "X Type": "Seed", "X Values": "-1, -1", "Fixed X Values": "11, 12",
              "Y Type": "Size", "Y Values": "64x64, 96x64"}
    axes = grid_axes(fields)
    assert axes[0][1].values == (11, 12)
    assert apply_value({}, axes[1][1], "96x64") == {"width": 96, "height": 64}
    with pytest.raises(XYZError, match="not an X/Y/Z plot"):
        grid_axes({"Script": "Loopback"})
    with pytest.raises(XYZError, match="Styles.*styles.csv"):
        grid_axes({"Script": "X/Y/Z plot", "X Type": "Styles", "X Values": "a"})
    sr = grid_axes({"Script": "X/Y/Z plot", "X Type": "Prompt S/R", "X Values": "horse, cow"})[0][1]
    with pytest.raises(XYZError, match="did not find 'horse'"):
        apply_value({"prompt": "a cat"}, sr, "cow")
