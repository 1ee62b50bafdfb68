"""The public contract researchers import: names, shapes and the textual-inversion path through `inpaintlab.load`."""
import pytest
import torch
from safetensors.torch import save_file

import inpaintlab
from inpaintlab.clip import Tokenizer, parse_prompt_attention


def test_pipeline_contract(tiny_checkpoint):
    pipe = inpaintlab.load(tiny_checkpoint, kernels="torch")
    assert pipe.config.scale_factor == 0.18215 and pipe.config.is_inpainting is False
    assert isinstance(pipe.tokenizer, Tokenizer)
    width = pipe.text_encoder.config.width
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 8, 8, generator=g)
    context = torch.randn(2, 77, width, generator=g)
    eps = pipe.unet(x, torch.tensor([999.0, 12.5]), context)
    assert eps.shape == x.shape and torch.isfinite(eps).all()
    image = torch.rand(1, 3, 32, 32, generator=g) * 2 - 1
    posterior = pipe.vae.encode(image)
    assert posterior.mean.shape == (1, 4, 4, 4)
    assert posterior.sample(generator=torch.Generator().manual_seed(1)).shape == (1, 4, 4, 4)
    assert pipe.vae.decode(posterior.mean).shape == (1, 3, 32, 32)
    tokens = torch.tensor([[49406] + [320] * 5 + [49407] * 71])
    hidden = pipe.text_encoder(tokens, clip_skip=1)
    assert hidden.shape == (1, 77, width)
    assert not torch.equal(hidden, pipe.text_encoder(tokens, clip_skip=2))
    assert pipe.encode_prompt("a photo of a cat").shape == (1, 77, width)
    long_prompt = ", ".join(["a red ball"] * 25)  # 99 tokens: two 75-token chunks
    assert pipe.encode_prompt(long_prompt).shape == (1, 154, width)
    assert parse_prompt_attention("(a:1.5) b") == [["a", 1.5], [" b", 1.0]]


def test_textual_inversion_from_a_directory(tiny_checkpoint, tmp_path):
    plain = inpaintlab.load(tiny_checkpoint, kernels="torch")
    width = plain.text_encoder.config.width
    vectors = torch.randn(2, width, generator=torch.Generator().manual_seed(3))
    save_file({"emb_params": vectors}, str(tmp_path / "mystyle.safetensors"))
    pipe = inpaintlab.load(tiny_checkpoint, kernels="torch", embeddings_dir=tmp_path)
    assert set(pipe.embeddings) == {"mystyle"}
    with_embedding = pipe.encode_prompt("a photo in mystyle")
    # Without the embedding loaded, "mystyle" is ordinary text (A1111 behaviour): the results differ.
    assert not torch.allclose(with_embedding, plain.encode_prompt("a photo in mystyle"))


def test_kernels_choice_reaches_every_module(tiny_checkpoint):
    from inpaintlab.kernels import GroupNorm

    pipe = inpaintlab.load(tiny_checkpoint, kernels="triton")
    norms = [m for model in (pipe.unet, pipe.vae) for m in model.modules() if isinstance(m, GroupNorm)]
    assert len(norms) > 10 and {m.kernels for m in norms} == {"triton"}
    attentions = [m for m in pipe.unet.modules() if type(m).__name__ == "CrossAttention"]
    assert attentions and all(m.kernels == "triton" for m in attentions)
    with pytest.raises(ValueError, match="unknown kernel backend"):
        inpaintlab.load(tiny_checkpoint, kernels="cuda")
