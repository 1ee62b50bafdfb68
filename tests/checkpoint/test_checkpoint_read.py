"""Reading checkpoint files: safetensors, refused and allowed pickles, and every kind of bad file."""
from __future__ import annotations

import hashlib
import json
import shutil

import pytest
import torch
from safetensors.torch import save_file

from inpaintlab.checkpoint import CheckpointError, file_sha256, read_state_dict, short_hash


def tensors() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {"a.weight": torch.randn(3, 5, generator=g), "b": torch.arange(4), "c": torch.randn(2, generator=g).half()}


def assert_same(sd: dict[str, torch.Tensor], ref: dict[str, torch.Tensor]) -> None:
    assert sd.keys() == ref.keys()
    for k in ref:
        assert sd[k].dtype == ref[k].dtype and torch.equal(sd[k], ref[k]), k


def test_safetensors_round_trip(tmp_path):
    path = tmp_path / "m.safetensors"
    save_file(tensors(), path)
    assert_same(read_state_dict(path), tensors())
    assert_same(read_state_dict(str(path)), tensors())


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint file not found: .*nope.safetensors"):
        read_state_dict(tmp_path / "nope.safetensors")


def test_truncated_safetensors(tmp_path):
    good = tmp_path / "good.safetensors"
    save_file(tensors(), good)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(good.read_bytes()[:-7])
    with pytest.raises(CheckpointError, match=r"bad.safetensors: not a valid safetensors file"):
        read_state_dict(bad)


@pytest.mark.parametrize("content", [b"", b"\x00" * 3, bytes(range(256)) * 4, json.dumps({"a": [1, 2]}).encode()],
                         ids=["empty", "short", "garbage", "json"])
def test_corrupt_safetensors(tmp_path, content):
    path = tmp_path / "x.safetensors"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=r"x.safetensors: not a valid safetensors file"):
        read_state_dict(path)


def test_json_file_has_unknown_extension(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"_class_name": "UNet2DConditionModel"}))
    with pytest.raises(CheckpointError, match=r"unknown checkpoint extension '.json'"):
        read_state_dict(path)


def test_empty_safetensors_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "e.safetensors"
    save_file({}, path)
    with pytest.raises(CheckpointError, match="holds no tensors"):
        read_state_dict(path)


def test_directories(tmp_path):
    diffusers_dir = tmp_path / "sd15"
    (diffusers_dir / "unet").mkdir(parents=True)
    (diffusers_dir / "model_index.json").write_text("{}")
    with pytest.raises(CheckpointError, match="diffusers-format folders are not supported"):
        read_state_dict(diffusers_dir)
    (tmp_path / "plain").mkdir()
    with pytest.raises(CheckpointError, match="is a directory"):
        read_state_dict(tmp_path / "plain")


@pytest.mark.parametrize("suffix", [".ckpt", ".pt", ".pth", ".bin"])
def test_pickles_are_refused_by_default(tmp_path, suffix):
    path = tmp_path / f"m{suffix}"
    torch.save({"state_dict": tensors()}, path)
    with pytest.raises(CheckpointError, match=r"refusing to read a pickle checkpoint.*allow_pickle=True"):
        read_state_dict(path)


def test_pickle_allowed_unwraps_nested_state_dict(tmp_path):
    path = tmp_path / "m.ckpt"
    torch.save({"state_dict": {"state_dict": tensors()}, "global_step": 470000, "epoch": 6}, path)
    assert_same(read_state_dict(path, allow_pickle=True), tensors())
    flat = tmp_path / "flat.pt"
    torch.save(tensors(), flat)
    assert_same(read_state_dict(flat, allow_pickle=True), tensors())


class NotAllowed:
    """A class that torch.load(weights_only=True) must refuse to unpickle."""


def test_pickle_is_read_with_weights_only(tmp_path):
    path = tmp_path / "m.ckpt"
    torch.save({"state_dict": tensors(), "callback": NotAllowed()}, path)
    torch.load(path, weights_only=False)  # the file itself is fine for an unrestricted unpickler
    with pytest.raises(CheckpointError, match=r"could not be read by torch.load\(weights_only=True\)"):
        read_state_dict(path, allow_pickle=True)


def test_pickle_that_is_not_a_state_dict(tmp_path):
    path = tmp_path / "m.pt"
    torch.save([torch.zeros(1)], path)
    with pytest.raises(CheckpointError, match="holds a list, not a state dict"):
        read_state_dict(path, allow_pickle=True)
    torch.save({"state_dict": {"w": torch.zeros(1), "step": 3}}, path)
    with pytest.raises(CheckpointError, match=r"non-tensor entries: 'step'"):
        read_state_dict(path, allow_pickle=True)
    path.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="could not be read"):
        read_state_dict(path, allow_pickle=True)


def test_hashes_match_hashlib_over_the_whole_file(tmp_path):
    path = tmp_path / "m.safetensors"
    save_file(tensors(), path)
    expected = hashlib.sha256(path.read_bytes()).hexdigest()
    assert file_sha256(path, chunk_size=7) == expected  # streaming in odd chunks changes nothing
    assert short_hash(path) == expected[:10]


def test_reading_never_touches_files(tmp_path):
    src = tmp_path / "m.safetensors"
    save_file(tensors(), src)
    ckpt = tmp_path / "m.ckpt"
    torch.save({"state_dict": tensors()}, ckpt)
    bad = tmp_path / "bad.safetensors"
    shutil.copyfile(src, bad)
    with open(bad, "r+b") as f:
        f.truncate(bad.stat().st_size - 3)
    snapshot = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in tmp_path.iterdir()}
    read_state_dict(src)
    read_state_dict(ckpt, allow_pickle=True)
    for path, kwargs in ((bad, {}), (ckpt, {})):
        with pytest.raises(CheckpointError):
            read_state_dict(path, **kwargs)
    short_hash(src)
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in tmp_path.iterdir()} == snapshot
