"""The LaMa generator against spandrel==0.4.2 on random weights (BatchNorm statistics re-drawn), and its loaders.

Tolerance: outputs atol 1e-5 and pre-sigmoid logits rtol/atol 1e-5 (fp32, the same operations; measured 0).
"""
import zipfile

import numpy as np
import pytest
import torch
from shims import use_torchvision_shim

use_torchvision_shim()

from lama_reference import spandrel_generator, spandrel_lama  # noqa: E402

from inpaintlab.lama import (BIG_LAMA, FFCResNetGenerator, LamaConfig, LamaError, load_lama,  # noqa: E402
                             make_tiny_lama_file, run_lama, tiny_lama_state_dict)


def _inputs(h, w, batch=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(batch, 3, h, w, generator=g)
    mask = (torch.rand(batch, 1, h, w, generator=g) > 0.6).float()
    return image, mask


def _logits(model, x):
    """Output of the last conv (before the sigmoid), where saturation cannot hide a difference."""
    seen = {}
    handle = model.model[34 if len(model.model) == 36 else -2].register_forward_hook(
        lambda m, i, o: seen.__setitem__("logits", o.clone()))
    out = model(*x) if isinstance(x, tuple) else model(x)
    handle.remove()
    return out, seen["logits"]


@torch.no_grad()
def test_big_lama_matches_spandrel_non_square():
    ref = spandrel_lama(seed=3)
    sd = {k[len("model."):]: v for k, v in ref.state_dict().items()}  # spandrel prefixes the generator with model.
    assert len(sd) == 989 and sum(v.numel() for k, v in sd.items() if ".running_" not in k
                                  and "num_batches" not in k) == 50_975_875
    ours = load_lama(sd)
    assert ours.config == BIG_LAMA
    image, mask = _inputs(32, 48)
    ref_out, ref_logits = _logits(ref.model, (image * (1 - mask), mask))
    out, logits = _logits(ours, torch.cat([image * (1 - mask), mask], dim=1))
    assert ref_logits.abs().max() > 1 and ref_out.std() > 0.1
    torch.testing.assert_close(logits, ref_logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out, ref_out, rtol=0, atol=1e-5)


@torch.no_grad()
def test_inpainting_wrapper_matches_spandrel():
    """spandrel's LaMa.forward is LaMa's inpainting wrapper: hole zeroed, generator, composite with known pixels."""
    ref = spandrel_generator(ngf=8, n_blocks=2, seed=6)
    ours = load_lama(ref.state_dict())
    image, mask = _inputs(32, 48, seed=6)
    img_u8 = (image[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    x = torch.from_numpy(img_u8).permute(2, 0, 1)[None].float() / 255
    wrapper = type("Wrapper", (), {"model": ref})()
    from spandrel.architectures.LaMa.__arch.LaMa import LaMa

    expected = LaMa.forward(wrapper, x, mask)[0].permute(1, 2, 0).numpy()
    ours_u8 = run_lama(ours, img_u8, mask[0, 0].numpy())
    assert np.array_equal(ours_u8, (expected * 255).clip(0, 255).astype(np.uint8))


@torch.no_grad()
@pytest.mark.parametrize("batch", [1, 2])
def test_tiny_generator_matches_spandrel(batch):
    ref = spandrel_generator(ngf=8, n_blocks=2, seed=batch)
    ours = load_lama(ref.state_dict())
    assert ours.config == LamaConfig(ngf=8, n_blocks=2)
    image, mask = _inputs(40, 56, batch, seed=batch)
    ref_out, ref_logits = _logits(ref, (image * (1 - mask), mask))
    out, logits = _logits(ours, torch.cat([image * (1 - mask), mask], dim=1))
    assert ref_logits.abs().max() > 0.1
    torch.testing.assert_close(logits, ref_logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out, ref_out, rtol=0, atol=1e-5)


@pytest.mark.parametrize("layout", ["pth", "best.ckpt", "safetensors", "generator.safetensors"])
def test_file_layouts_load_strictly(tmp_path, layout):
    sd = tiny_lama_state_dict(seed=4)
    if layout == "pth":
        path = make_tiny_lama_file(tmp_path / "ControlNetLama.pth", seed=4)
    elif layout == "safetensors":
        path = make_tiny_lama_file(tmp_path / "lama.safetensors", seed=4)
    elif layout == "generator.safetensors":
        from safetensors.torch import save_file

        path = tmp_path / "lama.safetensors"
        save_file({"generator." + k: v for k, v in sd.items()}, str(path))
    else:  # Lightning: state_dict with generator. / discriminator. prefixes, hyper-parameters as foreign objects
        path = tmp_path / "best.ckpt"
        torch.save({"state_dict": {**{"generator." + k: v for k, v in sd.items()},
                                   "discriminator.model0.0.weight": torch.ones(2, 2)},
                    "hyper_parameters": {"config": _ForeignConfig()}, "epoch": 3}, path)
    model = load_lama(path)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in sd.items())


class _ForeignConfig:
    """Stands for an object of another library pickled into a Lightning checkpoint."""

    def __reduce__(self):
        # Unpickling this for real would run print(); the loader must only record it.
        return (print, ("UNPICKLED-CODE-RAN",))


def test_foreign_objects_never_run(tmp_path, capsys):
    sd = tiny_lama_state_dict(seed=5)
    path = tmp_path / "best.ckpt"
    torch.save({"state_dict": {"generator." + k: v for k, v in sd.items()}, "cfg": _ForeignConfig()}, path)
    load_lama(path)
    assert "UNPICKLED-CODE-RAN" not in capsys.readouterr().out


def test_bad_files(tmp_path):
    with pytest.raises(LamaError, match="not found"):
        load_lama(tmp_path / "missing.pth")
    other = tmp_path / "other.pth"
    torch.save({"encoder.weight": torch.ones(2)}, other)
    with pytest.raises(LamaError, match="not a LaMa generator"):
        load_lama(other)
    sd = tiny_lama_state_dict()
    del sd["model.5.conv1.ffc.convg2g.fu.bn.running_var"]
    with pytest.raises(LamaError, match=r"does not match the file: 1 missing \(model.5.conv1.ffc.convg2g.fu.bn"):
        load_lama(sd)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a pickle at all")
    with pytest.raises(LamaError, match="not a readable LaMa checkpoint"):
        load_lama(junk)
    script = tmp_path / "big-lama.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(script))
    assert zipfile.is_zipfile(script)
    with pytest.raises(LamaError, match="TorchScript"):
        load_lama(script)


def test_generator_refuses_sizes_not_multiple_of_8():
    model = load_lama(tiny_lama_state_dict())
    with pytest.raises(LamaError, match=r"input size 60x42 is not a multiple of 8"):
        model(torch.zeros(1, 4, 42, 60))
    with pytest.raises(LamaError, match=r"must be \[B, 4, H, W\]"):
        model(torch.zeros(1, 3, 40, 40))


def test_meta_big_lama_keys():
    with torch.device("meta"):
        model = FFCResNetGenerator(BIG_LAMA)
    keys = model.state_dict()
    assert "model.22.conv2.ffc.convg2g.fu.conv_layer.weight" in keys and "model.34.bias" in keys
    assert tuple(keys["model.4.ffc.convl2g.weight"].shape) == (384, 256, 3, 3)
    assert tuple(keys["model.5.conv1.ffc.convg2g.conv1.0.weight"].shape) == (192, 384, 1, 1)


def test_bfloat16_generator_runs():
    """Reduced precision: the Fourier units still transform in fp32; the result stays close to fp32's."""
    sd = tiny_lama_state_dict(seed=9)
    image, mask = _inputs(32, 40, seed=9)
    x = torch.cat([image * (1 - mask), mask], dim=1)
    with torch.no_grad():
        full = load_lama(sd)(x)
        half = load_lama(sd, dtype=torch.bfloat16)(x.bfloat16())
    assert half.dtype == torch.bfloat16 and (half.float() - full).abs().max() < 0.02
