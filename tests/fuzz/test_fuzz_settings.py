"""Property-based tests of settings coercion (every setting, any Python value) and sweep specs (any JSON/TOML
structure, any file bytes): each succeeds or ends in an InpaintlabError with a one-line message."""
import json

from fuzzing import budget, outcome
from hypothesis import given
from hypothesis import strategies as st

from inpaintlab import SettingsError
from inpaintlab.settings import SETTINGS, coerce, validate
from inpaintlab.study.spec import load_spec

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
                    st.text(max_size=20), st.sampled_from(["7", " 20 ", "1e400", "nan", "-1", "512x512", "8,8", "x",
                                                           "Euler a", "DPM++ 2M Karras", "Only masked", "latent noise",
                                                           "true", "Balanced", "inpaint_only", "0.5"]))
values = st.one_of(scalars, st.lists(scalars, max_size=3), st.tuples(scalars, scalars), st.dictionaries(
    st.text(max_size=5), scalars, max_size=2))
json_values = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                                     st.text(max_size=12)),
                           lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                   st.dictionaries(st.text(max_size=10), inner, max_size=4)),
                           max_leaves=12)
NAMES = sorted(SETTINGS)


@budget(300)
@given(st.sampled_from(NAMES), values)
def test_coerce(name, value):
    result = outcome(coerce, name, value)
    if isinstance(result, Exception):
        assert isinstance(result, SettingsError)


@budget(100)
@given(st.dictionaries(st.sampled_from(NAMES), values, max_size=5), st.sampled_from([None, "txt2img", "inpaint"]))
def test_validate(settings, command):
    outcome(validate, settings, command)


spec_parts = st.fixed_dictionaries({}, optional={
    "model": st.one_of(st.just("m.safetensors"), json_values), "image": st.one_of(st.just("i.png"), json_values),
    "mask": st.one_of(st.just("k.png"), json_values), "vae": json_values, "lora_dir": json_values,
    "seeds": st.one_of(st.lists(st.integers(-2, 5), max_size=3), json_values),
    "base": st.one_of(st.dictionaries(st.sampled_from(NAMES + ["seed", "nope"]), scalars, max_size=3), json_values),
    "x": st.one_of(st.dictionaries(st.sampled_from(NAMES + ["lora:x", "lora:"]), st.lists(scalars, max_size=3),
                                   max_size=2), json_values),
    "y": st.one_of(st.dictionaries(st.sampled_from(NAMES), st.lists(st.one_of(scalars, st.dictionaries(
        st.sampled_from(NAMES + ["label"]), scalars, max_size=2)), max_size=3), max_size=1), json_values),
    "z": json_values, "intermediates": json_values, "device": json_values, "kernels": json_values,
    "extra": json_values})


@budget(80)
@given(st.one_of(spec_parts, json_values))
def test_sweep_spec_structures(raw):
    outcome(load_spec, raw) if isinstance(raw, dict) else None
    result = outcome(load_spec, {"model": "m", "image": "i", "mask": "k", "x": {"steps": [1]}, "y": raw})
    assert not isinstance(result, Exception) or isinstance(result, SettingsError)


@budget(100)
@given(st.one_of(st.binary(max_size=200), json_values.map(lambda v: json.dumps(v).encode()),
                 st.text(max_size=200).map(str.encode)), st.sampled_from([".json", ".toml"]))
def test_sweep_spec_files(tmp_path_factory, data, suffix):
    path = tmp_path_factory.mktemp("spec") / f"spec{suffix}"
    path.write_bytes(data)
    outcome(load_spec, path)


def test_found_sweep_spec_crashes_are_settings_errors(tmp_path):
    for raw in ({"model": "m", "image": "i", "mask": "k", "base": None, "x": {}, "y": {}},
                {"model": "m", "image": "i", "mask": "k", "seeds": 3, "x": {"steps": [1]}, "y": {"cfg_scale": [1]}},
                [1, 2], {"model": 1, "image": "i", "mask": "k"}):
        assert isinstance(outcome(load_spec, raw), SettingsError)
    for name, data in (("a.json", b"\x00\x00\x00{"), ("a.toml", b'a = "\\UFFFFFFFF"'), ("b.json", b"[1, 2]")):
        (tmp_path / name).write_bytes(data)
        assert isinstance(outcome(load_spec, tmp_path / name), SettingsError)
