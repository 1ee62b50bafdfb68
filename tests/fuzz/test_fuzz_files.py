"""Byte flips and truncations of small .safetensors, .pt and PNG files: reading them (state dicts, infotexts,
images) succeeds or ends in an InpaintlabError naming the file, never another exception, a hang or a huge
allocation (inputs are a few KB; a declared size larger than the file is refused before anything is allocated)."""
import io

import pytest
import torch
from fuzzing import budget, outcome
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from inpaintlab.checkpoint import read_state_dict
from inpaintlab.cli import open_image
from inpaintlab.infotext import read_png_infotext, save_png


def _safetensors_bytes():
    from safetensors.torch import save

    return save({"a.weight": torch.randn(3, 4), "b.bias": torch.arange(5, dtype=torch.int64),
                 "c": torch.randn(2, dtype=torch.float16)}, metadata={"format": "pt"})


def _pt_bytes():
    buffer = io.BytesIO()
    torch.save({"state_dict": {"a.weight": torch.randn(3, 4), "b": torch.ones(2, dtype=torch.bfloat16)}}, buffer)
    return buffer.getvalue()


def _png_bytes(tmp_path):
    path = save_png(Image.new("RGB", (12, 10), (30, 60, 90)), tmp_path / "seed.png",
                    "a cat\nNegative prompt: dog\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 3, Size: 512x512")
    return path.read_bytes()


ORIGINALS = {}


def damaged(data: bytes):
    """Strategy: the file with some bytes flipped and/or cut at some length."""
    n = len(data)
    flips = st.lists(st.tuples(st.integers(0, n - 1), st.integers(1, 255)), max_size=6)
    return st.tuples(flips, st.one_of(st.none(), st.integers(0, n))).map(lambda fc: _apply(data, *fc))


def _apply(data, flips, cut):
    out = bytearray(data)
    for index, mask in flips:
        out[index] ^= mask
    return bytes(out if cut is None else out[:cut])


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("damaged")


# Header-length and tensor-offset bytes are where damage matters most: flip them more often.
SAFETENSORS = _safetensors_bytes()
PT = _pt_bytes()


@budget(200)
@given(st.one_of(damaged(SAFETENSORS), damaged(SAFETENSORS[:120]) .map(lambda head: head + SAFETENSORS[120:])))
def test_safetensors(folder, data):
    path = folder / "x.safetensors"
    path.write_bytes(data)
    result = outcome(read_state_dict, path)
    if not isinstance(result, Exception):
        assert all(isinstance(t, torch.Tensor) for t in result.values())


@budget(150)
@given(damaged(PT))
def test_pickle(folder, data):
    path = folder / "x.pt"
    path.write_bytes(data)
    outcome(read_state_dict, path, allow_pickle=True)


@budget(150)
@given(st.data())
def test_png(folder, data):
    original = ORIGINALS.setdefault("png", _png_bytes(folder))
    path = folder / "x.png"
    path.write_bytes(data.draw(damaged(original)))
    outcome(read_png_infotext, path)
    outcome(open_image, str(path))


# Crashes the fuzzing found, kept as plain tests.
@pytest.mark.parametrize("shape, offsets", [([-1], [4, 0]), ([2, -2], [0, 16]), ([2 ** 62, 2 ** 62], [0, 0])])
def test_forged_safetensors_shapes(folder, shape, offsets):
    import json
    import struct

    header = json.dumps({"a": {"dtype": "F32", "shape": shape, "data_offsets": offsets}}).encode()
    path = folder / "forged.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + bytes(16))
    error = outcome(read_state_dict, path)
    assert isinstance(error, Exception) and "forged.safetensors: not a valid safetensors file" in str(error)


def test_damaged_pickle_message_is_one_line(folder):
    data = bytearray(PT)
    data[PT.index(b"OrderedDict") + 2] ^= 0x01
    path = folder / "bad.pt"
    path.write_bytes(bytes(data))
    error = outcome(read_state_dict, path, allow_pickle=True)
    assert isinstance(error, Exception) and "bad.pt: could not be read by torch.load" in str(error)
    assert "PyTorch 2.6" not in str(error)


def test_png_with_a_damaged_header_is_a_file_error(folder):
    # Found by the long run: PIL's "Truncated IHDR chunk" ValueError.
    data = bytearray(ORIGINALS.setdefault("png", _png_bytes(folder)))
    data[11] ^= 1
    (folder / "ihdr.png").write_bytes(bytes(data))
    error = outcome(open_image, str(folder / "ihdr.png"))
    assert isinstance(error, Exception) and "ihdr.png: damaged image" in str(error)
