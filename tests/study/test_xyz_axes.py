"""The X/Y/Z axis types added for grid replay: each A1111 label mapped to its setting (or its special action), A1111's
"Prompt order" permutation rule, the axes inpaintlab refuses (named, with the reason), the seed axes with fixed
values, and A1111's checkpoint / VAE name lookup (`ModelDir`) on checkpoint- and VAE-named files (test_grid_models.py
loads real tiny ones)."""
from __future__ import annotations

import itertools
import logging
import re

import numpy as np
import pytest

from inpaintlab.checkpoint.read import file_sha256, legacy_model_hash
from inpaintlab.errors import FileError
from inpaintlab.study.models import ModelDir
from inpaintlab.study.xyz import (AXIS_TYPES, CHECKPOINT, REFUSED_AXES, SETTING_TO_LABEL, VAE, XYZError, apply_value,
                                  cells, grid_axes, grid_infotext, reorder_prompt, vary_seeds)

# A1111 v1.10.1 xyz_grid labels -> the setting they set (spec §4.5)
MAPPED = {"Hires steps": "hr_second_pass_steps", "Hires sampler": "hr_sampler", "Hires upscaler": "hr_upscaler",
          "Negative Guidance minimum sigma": "s_min_uncond", "Schedule min sigma": "sigma_min",
          "Schedule max sigma": "sigma_max", "Schedule rho": "rho", "Beta schedule alpha": "beta_dist_alpha",
          "Beta schedule beta": "beta_dist_beta", "Initial noise multiplier": "initial_noise_multiplier",
          "Extra noise": "img2img_extra_noise", "Token merging ratio": "token_merging_ratio",
          "Token merging ratio high-res": "token_merging_ratio_hr", "Var. seed": "subseed",
          "Var. strength": "subseed_strength", "Seed": "seed"}


def _grid(**axes):
    return {"Script": "X/Y/Z plot", **axes}


def test_each_new_label_sets_its_setting_and_sweeps_write_the_label():
    from inpaintlab import settings as registry

    for label, setting in MAPPED.items():
        assert AXIS_TYPES[label].setting == setting and SETTING_TO_LABEL[setting] == label
        assert setting in registry.SETTINGS, setting
    axes = grid_axes(_grid(**{"X Type": "Hires upscaler", "X Values": "Latent,\"R-ESRGAN 4x+\"",
                              "Y Type": "Schedule rho", "Y Values": "5-7 [3]",
                              "Z Type": "Token merging ratio high-res", "Z Values": "0.2, 0.4"}))
    assert [a.values for _, a in axes] == [("Latent", "R-ESRGAN 4x+"), (5.0, 6.0, 7.0), (0.2, 0.4)]
    got = cells({"steps": 3}, axes)
    assert len(got) == 12 and got[-1][1] == {"steps": 3, "hr_upscaler": "R-ESRGAN 4x+", "rho": 7.0,
                                              "token_merging_ratio_hr": 0.4}
    keys = grid_infotext([("X", "Hires upscaler", ["Latent", "R-ESRGAN 4x+"]), ("Y", "Seed", [4, 5])])
    assert keys == {"Script": "X/Y/Z plot", "X Type": "Hires upscaler", "X Values": "Latent,R-ESRGAN 4x+",
                    "Y Type": "Seed", "Y Values": "4, 5", "Fixed Y Values": "4, 5"}


def test_seed_axes_use_fixed_values_and_variation_axes_apply():
    axes = grid_axes(_grid(**{"X Type": "Var. seed", "X Values": "-1, -1", "Fixed X Values": "101, 102",
                              "Y Type": "Var. strength", "Y Values": "0-0.5 [2]", "Z Type": "Seed", "Z Values": "7"}))
    assert [a.values for _, a in axes] == [(101, 102), (0.0, 0.5), (7,)]
    assert cells({}, axes)[1] == ((1, 0, 0), {"subseed": 102, "subseed_strength": 0.0, "seed": 7})


def _a1111_apply_order(prompt, x):
    """A1111's apply_order, written out as in xyz_grid.py's description (spec §4.5)."""
    order = sorted([(prompt.find(t), t) for t in x], key=lambda t: t[0])
    parts = []
    for _, token in order:
        n = prompt.find(token)
        parts.append(prompt[0:n])
        prompt = prompt[n + len(token):]
    return "".join(part + x[i] for i, part in enumerate(parts)) + prompt


def test_prompt_order_runs_every_permutation():
    axis = grid_axes(_grid(**{"X Type": "Prompt order", "X Values": "red, big, cat"}))[0][1]
    assert axis.values == tuple(itertools.permutations(["red", "big", "cat"]))
    prompt = "a big red cat on a big mat"
    for value in axis.values:
        assert reorder_prompt(prompt, value) == _a1111_apply_order(prompt, value)
        assert apply_value({"prompt": prompt}, axis, value)["prompt"] == _a1111_apply_order(prompt, value)
    assert reorder_prompt(prompt, ("cat", "big", "red")) == "a cat big red on a big mat"


@pytest.mark.parametrize("label", sorted(REFUSED_AXES))
def test_refused_axes_name_themselves_and_the_reason(label):
    with pytest.raises(XYZError, match=re.escape(f"X Type '{label}': this X/Y/Z axis cannot be replayed: "
                                                 f"{REFUSED_AXES[label]}")):
        grid_axes(_grid(**{"X Type": label, "X Values": "a"}))


def test_checkpoint_and_vae_axes_set_cell_keys():
    axes = grid_axes(_grid(**{"X Type": "Checkpoint name", "X Values": "\"a.safetensors [0123456789]\",b",
                              "Y Type": "VAE", "Y Values": "Automatic,v.pt"}))
    got = cells({"steps": 2}, axes)
    assert got[3][1] == {"steps": 2, CHECKPOINT: "b", VAE: "v.pt"}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    # ModelDir only lists and hashes files: distinct random bytes past 1 MiB + 64 KiB (the legacy hash's window) do
    root = tmp_path_factory.mktemp("models")
    paths = []
    for i, rel in enumerate(("Stable-diffusion/sd15/tiny-a.safetensors", "Stable-diffusion/tiny-b.safetensors",
                             "VAE/Tiny-VAE.safetensors")):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(np.random.default_rng(i).bytes(0x110000))
        paths.append(path)
    return (root, *paths)


def test_model_dir_resolves_a1111_names(models, caplog):
    root, a, b, v = models
    d = ModelDir(root)
    sha_a = file_sha256(a)
    assert d.name(a) == "sd15/tiny-a.safetensors" and set(d.checkpoints) == {a, b}
    for text in (f"sd15/tiny-a.safetensors [{sha_a[:10]}]", "sd15/tiny-a.safetensors", "tiny-a", "sd15/tiny-a",
                 "sd15_tiny-a", sha_a[:10], sha_a, legacy_model_hash(a), f"tiny-a [{sha_a[:10]}]", "sd15/tiny"):
        assert d.checkpoint(text) == a, text
    assert d.checkpoint("tiny-b.safetensors") == b and d.checkpoint("tiny") == b   # shortest title containing it
    with caplog.at_level(logging.WARNING):
        assert d.checkpoint("tiny-a [0000000000]", "X Values") == a
    assert "another hash" in caplog.text
    with pytest.raises(FileError, match="X Values.*no checkpoint 'tiny-c'.*sd15/tiny-a.safetensors"):
        d.checkpoint("tiny-c", "X Values")
    assert d.vae("tiny-vae.SAFETENSORS") == v and d.vae("Automatic") is None and d.vae("None") is None
    with pytest.raises(FileError, match="no VAE file 'other.pt'"):
        d.vae("other.pt")
    with pytest.raises(FileError, match="models folder not found"):
        ModelDir(root / "missing")


def test_vary_seeds_offsets_as_a1111():
    axes = grid_axes(_grid(**{"X Type": "CFG Scale", "X Values": "3, 5, 7", "Y Type": "Steps", "Y Values": "2, 4",
                              "Z Type": "Eta", "Z Values": "0, 1"}))
    base = cells({"seed": 100}, axes)
    for letters in ("X", "Y", "Z", "XY", "XZ", "YZ", "xyz"):
        xdim = 3 if "x" in letters.lower() else 1
        ydim = 2 if "y" in letters.lower() else 1
        for (index, s), (_, plain) in zip(vary_seeds(base, axes, letters), base):
            ix, iy, iz = index
            want = 100 + ("x" in letters.lower()) * ix + ("y" in letters.lower()) * iy * xdim \
                + ("z" in letters.lower()) * iz * xdim * ydim
            assert s["seed"] == want and {**s, "seed": 100} == plain
    with pytest.raises(XYZError, match="'W' is not an axis letter"):
        vary_seeds(base, axes, "XW")


def test_seed_minus_one_without_fixed_values_is_named(caplog):
    from inpaintlab.study.replay import _check_axes

    fields = _grid(**{"X Type": "Seed", "X Values": "-1, 5", "Y Type": "Initial noise multiplier", "Y Values": "1"})
    with caplog.at_level(logging.WARNING):
        _check_axes(grid_axes(fields), fields, {"seed"}, "txt2img")
    assert "X Values '-1, 5': -1 without Fixed X Values" in caplog.text
    assert "Y Type 'Initial noise multiplier': initial_noise_multiplier does not apply to txt2img" in caplog.text
