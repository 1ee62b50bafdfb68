"""CLIP text transformer vs transformers 5.24 `CLIPTextModel` (flattened layout) on random re-initialised weights.

The oracle runs its eager attention path; ours uses torch SDPA. Tolerance: fp32 round-off,
max|Δ| <= 1e-5 * max|reference| (measured at most 5e-7 relative on outputs of magnitude about 5).
"""
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from inpaintlab.tiny import reinit_  # noqa: F401  (spec checkpoints.md §6.3 re-initialisation, shared)
from inpaintlab.clip.model import (
    CLIPAttention,
    CLIPEncoder,
    CLIPEncoderLayer,
    CLIPMLP,
    CLIPTextConfig,
    CLIPTextEmbeddings,
    CLIPTextTransformer,
)

transformers = pytest.importorskip("transformers")

REL_TOL = 1e-5
PREFIX = "cond_stage_model.transformer.text_model."
MANIFEST = Path(__file__).parents[1] / "data" / "sd15_clip_keys.txt"


def tiny_config() -> CLIPTextConfig:
    return CLIPTextConfig(vocab_size=1000, max_positions=77, width=128, layers=3, mlp_dim=512)  # 2 heads


def oracle(cfg: CLIPTextConfig, state_dict: dict):
    config = transformers.CLIPTextConfig(
        vocab_size=cfg.vocab_size, hidden_size=cfg.width, intermediate_size=cfg.mlp_dim,
        num_hidden_layers=cfg.layers, num_attention_heads=cfg.width // 64, max_position_embeddings=cfg.max_positions,
        hidden_act="quick_gelu", layer_norm_eps=1e-5, bos_token_id=0, eos_token_id=2, pad_token_id=1,
    )
    config._attn_implementation = "eager"
    model = transformers.CLIPTextModel(config).eval()
    model.load_state_dict(state_dict, strict=True)
    return model


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """Our tiny model and the oracle, both loaded strictly from one LDM-layout safetensors file."""
    cfg = tiny_config()
    source = reinit_(CLIPTextTransformer(cfg))
    ldm = {PREFIX + k: v.contiguous() for k, v in source.state_dict().items()}
    ldm[PREFIX + "embeddings.position_ids"] = torch.arange(77).unsqueeze(0)  # as stored in SD1 files
    path = tmp_path_factory.mktemp("clip") / "clip.safetensors"
    save_file(ldm, str(path))
    checkpoint = load_file(str(path))
    sd = {k[len(PREFIX):]: v for k, v in checkpoint.items() if k != PREFIX + "embeddings.position_ids"}
    ours = CLIPTextTransformer(CLIPTextConfig.from_state_dict(sd)).eval()
    ours.load_state_dict(sd, strict=True)
    return ours, oracle(cfg, sd)


def random_tokens(batch: int, length: int, vocab: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, vocab, (batch, length), generator=torch.Generator().manual_seed(seed))


def assert_close(a: torch.Tensor, b: torch.Tensor, what: str) -> float:
    assert a.shape == b.shape, what
    err, scale = (a - b).abs().max().item(), b.abs().max().item()
    assert scale > 0.5, f"{what}: reference too small for a meaningful comparison"
    assert err <= REL_TOL * scale, f"{what}: max|Δ| {err:.3g} > {REL_TOL} * {scale:.3g}"
    return err / scale


@pytest.mark.parametrize("length", [77, 20])
def test_every_clip_skip_matches_transformers(pair, length):
    ours, ref = pair
    tokens = random_tokens(2, length, ours.config.vocab_size, seed=length)
    with torch.no_grad():
        out = ref(input_ids=tokens, output_hidden_states=True)
        assert len(out.hidden_states) == ours.config.layers + 1
        assert_close(ours(tokens), out.last_hidden_state, "last_hidden_state")
        for n in range(1, ours.config.layers + 2):
            assert_close(ours(tokens, clip_skip=n), ref.final_layer_norm(out.hidden_states[-n]), f"clip_skip={n}")


def test_swapped_query_key_is_detected(pair):
    """Negative control: a q/k swap in one layer is far outside the tolerance."""
    ours, ref = pair
    broken = CLIPTextTransformer(ours.config).eval()
    sd = dict(ours.state_dict())
    for kind in ("weight", "bias"):
        q, k = f"encoder.layers.1.self_attn.q_proj.{kind}", f"encoder.layers.1.self_attn.k_proj.{kind}"
        sd[q], sd[k] = sd[k], sd[q]
    broken.load_state_dict(sd, strict=True)
    tokens = random_tokens(2, 77, ours.config.vocab_size)
    with torch.no_grad():
        expected = ref(input_ids=tokens).last_hidden_state
        err = (broken(tokens) - expected).abs().max().item()
    assert err > 1000 * REL_TOL * expected.abs().max().item()


def test_inputs_embeds_equals_token_path(pair):
    ours, _ = pair
    tokens = random_tokens(2, 77, ours.config.vocab_size, seed=5)
    with torch.no_grad():
        embeds = ours.embeddings.token_embedding(tokens)
        for n in (1, 2):
            assert torch.equal(ours(None, clip_skip=n, inputs_embeds=embeds), ours(tokens, clip_skip=n))
            assert torch.equal(ours(tokens, clip_skip=n, inputs_embeds=embeds), ours(tokens, clip_skip=n))


def test_inputs_embeds_with_a_new_vector_matches_a_table_entry(pair):
    """A textual-inversion style vector spliced in equals the oracle run with that vector placed in its table."""
    ours, ref = pair
    tokens = random_tokens(1, 77, ours.config.vocab_size, seed=6)
    vector = torch.randn(ours.config.width, generator=torch.Generator().manual_seed(9))
    tokens[0, 5] = 999
    with torch.no_grad():
        embeds = ours.embeddings.token_embedding(tokens)
        embeds[0, 5] = vector
        patched = oracle(ours.config, ours.state_dict())
        patched.embeddings.token_embedding.weight[999] = vector
        assert_close(ours(None, inputs_embeds=embeds), patched(input_ids=tokens).last_hidden_state, "embeds")
        assert (ours(tokens) - ours(None, inputs_embeds=embeds)).abs().max() > 1e-2  # the vector mattered


def test_materialised_from_meta_device(pair):
    """Built on meta, materialised with to_empty and loaded strictly: positions still come out right."""
    ours, _ = pair
    with torch.device("meta"):
        model = CLIPTextTransformer(ours.config)
    model = model.to_empty(device="cpu").eval()
    model.load_state_dict(ours.state_dict(), strict=True)
    tokens = random_tokens(2, 77, ours.config.vocab_size, seed=7)
    with torch.no_grad():
        assert torch.equal(model(tokens), ours(tokens))


def test_full_size_keys_shapes_and_parameter_count():
    with torch.device("meta"):
        model = CLIPTextTransformer()
        reference = transformers.CLIPTextModel(transformers.CLIPTextConfig(  # openai/clip-vit-large-patch14 text tower
            vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
            max_position_embeddings=77, hidden_act="quick_gelu"))
    sd = model.state_dict()
    assert len(sd) == 196 and "embeddings.position_ids" not in sd
    assert sum(p.numel() for p in model.parameters()) == 123_060_480
    assert {k: tuple(v.shape) for k, v in sd.items()} == {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    assert CLIPTextConfig.from_state_dict(sd) == CLIPTextConfig()
    assert model.config.heads == 12 and reference.config.num_attention_heads == 12

    manifest = {}
    for line in MANIFEST.read_text().splitlines():
        if line and not line.startswith("#"):
            key, shape = line.split(" ")
            manifest[key] = tuple(int(s) for s in shape.strip("[]").split(","))
    assert len(manifest) == 197
    assert manifest.pop(PREFIX + "embeddings.position_ids") == tuple(model.embeddings.position_ids.shape) == (1, 77)
    assert manifest == {PREFIX + k: tuple(v.shape) for k, v in sd.items()}


def test_position_ids_buffer_is_not_persistent():
    model = CLIPTextTransformer(tiny_config())
    assert torch.equal(model.embeddings.position_ids, torch.arange(77).unsqueeze(0))
    assert "embeddings.position_ids" not in model.state_dict()


def test_construct_and_repr_every_module():
    cfg = tiny_config()
    model = CLIPTextTransformer(cfg)
    text = repr(model)
    for cls in (CLIPTextTransformer, CLIPTextEmbeddings, CLIPEncoder, CLIPEncoderLayer, CLIPAttention, CLIPMLP):
        assert cls.__name__ in text
        assert any(type(m) is cls for m in model.modules())
    assert "heads=2" in text and "kernels='torch'" in text
    for module in model.modules():
        assert isinstance(repr(module), str)
    assert all(m.eps == 1e-5 for m in model.modules() if isinstance(m, nn.LayerNorm))


@pytest.mark.parametrize("clip_skip", [0, 5, -1, True, 1.0, "2", None])
def test_clip_skip_out_of_range_is_rejected(clip_skip):
    model = CLIPTextTransformer(tiny_config())
    with pytest.raises(ValueError, match=r"clip_skip must be an int in 1\.\.4"):
        model(torch.zeros(1, 4, dtype=torch.long), clip_skip=clip_skip)


def test_bad_tokens_and_embeddings_are_named():
    model = CLIPTextTransformer(tiny_config())
    with pytest.raises(ValueError, match="integer ids"):
        model(torch.zeros(1, 4))
    with pytest.raises(ValueError, match="integer ids"):
        model(torch.zeros(1, 1, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"sequence length must be 1\.\.77"):
        model(torch.zeros(1, 78, dtype=torch.long))
    with pytest.raises(ValueError, match=r"token ids must lie in 0\.\.999"):
        model(torch.tensor([[1, 1000]]))
    with pytest.raises(ValueError, match="give tokens or inputs_embeds"):
        model(None)
    with pytest.raises(ValueError, match=r"inputs_embeds must be \[B,L,128\]"):
        model(None, inputs_embeds=torch.zeros(1, 4, 64))
    with pytest.raises(ValueError, match="does not match inputs_embeds"):
        model(torch.zeros(1, 5, dtype=torch.long), inputs_embeds=torch.zeros(1, 4, 128))
    with pytest.raises(ValueError, match="unknown kernel backend"):
        CLIPTextTransformer(tiny_config(), kernels="fast")


def test_config_validation_and_inference():
    with pytest.raises(ValueError, match="multiple of the head dim 64"):
        CLIPTextConfig(width=100)
    with pytest.raises(ValueError, match="layers must be >= 1"):
        CLIPTextConfig(layers=0)
    with pytest.raises(AttributeError):
        CLIPTextConfig().width = 64  # frozen
    cfg = CLIPTextConfig(vocab_size=300, max_positions=40, width=192, layers=2, mlp_dim=100)
    sd = CLIPTextTransformer(cfg).state_dict()
    assert CLIPTextConfig.from_state_dict(sd) == cfg and cfg.heads == 3
    with pytest.raises(ValueError, match="drop 'embeddings.position_ids'"):
        CLIPTextConfig.from_state_dict({**sd, "embeddings.position_ids": torch.arange(40)[None]})
    with pytest.raises(KeyError, match="relative to 'text_model.'"):
        CLIPTextConfig.from_state_dict({"text_model." + k: v for k, v in sd.items()})
    with pytest.raises(ValueError, match=r"indices are \[1\]"):
        CLIPTextConfig.from_state_dict({k: v for k, v in sd.items() if not k.startswith("encoder.layers.0.")})
