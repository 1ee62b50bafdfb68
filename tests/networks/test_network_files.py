"""Network files: A1111's hash (addnet hash, metadata hash, whole-file SHA-256), the directory listing with aliases."""
from __future__ import annotations

import hashlib
import struct

import pytest
import torch
from safetensors.torch import save_file

from inpaintlab.networks import NetworkError, NetworkLibrary, network_hash, read_network


def make(path, seed=0, metadata=None):
    save_file({"lora_unet_x.lora_down.weight": torch.randn(2, 3, generator=torch.Generator().manual_seed(seed))},
              str(path), metadata=metadata)
    return path


def test_addnet_hash_skips_the_header(tmp_path):
    a = make(tmp_path / "a.safetensors", metadata={"ss_output_name": "one"})
    b = make(tmp_path / "b.safetensors", metadata={"ss_output_name": "a different, longer header"})
    data = a.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    assert network_hash(a) == hashlib.sha256(data[8 + n:]).hexdigest()
    assert network_hash(a) == network_hash(b)  # same tensors, different metadata: same addnet hash
    assert hashlib.sha256(a.read_bytes()).hexdigest() != hashlib.sha256(b.read_bytes()).hexdigest()


def test_metadata_hash_and_pickle_hash(tmp_path):
    a = make(tmp_path / "a.safetensors", metadata={"sshs_model_hash": "abcdef0123456789"})
    assert network_hash(a) == "abcdef0123456789"
    p = tmp_path / "old.pt"
    torch.save({"x": torch.zeros(2)}, p)
    assert network_hash(p) == hashlib.sha256(p.read_bytes()).hexdigest()
    assert read_network(p, allow_pickle=True).shorthash == network_hash(p)[:12]


def test_library_names_aliases_and_errors(tmp_path):
    (tmp_path / "deep").mkdir()
    make(tmp_path / "deep" / "file_a.safetensors", metadata={"ss_output_name": "pretty"})
    make(tmp_path / "b1.safetensors", 1, metadata={"ss_output_name": "shared"})
    make(tmp_path / "b2.safetensors", 2, metadata={"ss_output_name": "shared"})
    make(tmp_path / "c.safetensors", 3, metadata={"ss_output_name": "None"})
    (tmp_path / "notes.txt").write_text("not a network")
    lib = NetworkLibrary(tmp_path)
    assert lib.find("file_a").name == "file_a.safetensors"
    assert lib.find("pretty") == lib.find("file_a")           # alias
    assert lib.names() == ["b1", "b2", "c", "file_a", "pretty"]  # a shared alias and "None" do not name a file
    with pytest.raises(NetworkError, match="'shared' not found .* available: b1, b2, c, file_a, pretty"):
        lib.find("shared")
    assert lib.name_for_hash(network_hash(tmp_path / "deep" / "file_a.safetensors")[:12]) == "pretty"
    assert lib.name_for_hash(network_hash(tmp_path / "b1.safetensors")[:12]) == "b1"
    assert lib.name_for_hash("000000000000") is None
    with pytest.raises(NetworkError, match="network directory not found"):
        NetworkLibrary(tmp_path / "missing")
