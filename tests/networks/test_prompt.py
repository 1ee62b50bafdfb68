"""A1111 v1.10 extra-network prompt tags, case by case (hand-derived from the parsing rules)."""
from __future__ import annotations

import pytest

from inpaintlab.networks import NetworkTag, lora_tags, parse_prompt, parse_prompts, set_lora_weight, strip_networks
from inpaintlab.networks.prompt import other_tags


def tags(prompt):
    return lora_tags(parse_prompt(prompt)[1])


def test_every_tag_is_cut_and_unknown_kinds_are_not_networks():
    text, data = parse_prompt("a <lora:x:0.5:0.2> b <hypernet:y> c")
    assert text == "a  b  c"
    assert lora_tags(data) == [NetworkTag("x", 0.5, 0.2)]
    assert other_tags(data) == ["hypernet"]


@pytest.mark.parametrize("prompt,expected", [
    ("<lora:x:0.7>", NetworkTag("x", 0.7, 0.7)),               # unet defaults to te
    ("<lora:x>", None),                                         # a tag of kind "lora" whose one item is "x" …
    ("<lora:x:1>", NetworkTag("x", 1.0, 1.0)),
    ("<lora:x:0.5:1.5:8>", NetworkTag("x", 0.5, 1.5, 8)),
    ("<lora:x:te=0.3:unet=0.9:dyn=4>", NetworkTag("x", 0.3, 0.9, 4)),
    ("<lora:x:0.5:unet=1>", NetworkTag("x", 0.5, 1.0)),
    ("<lora:x:unet=2>", NetworkTag("x", 1.0, 2.0)),
    ("<lora:x:0.4:te=0.6>", NetworkTag("x", 0.6, 0.6)),         # unet defaults to te after te= has applied
    ("<lyco:x:0.25>", NetworkTag("x", 0.25, 0.25)),
    ("<lora:x: 0.5>", NetworkTag("x", 0.5, 0.5)),               # float() accepts the space
])
def test_arguments(prompt, expected):
    found = tags(prompt)
    if expected is None:
        # … so the name is "x" and both multipliers are 1
        assert found == [NetworkTag("x", 1.0, 1.0)] and parse_prompt(prompt)[0] == ""
    else:
        assert found == [expected]


def test_item_with_two_equals_signs_is_positional():
    _, data = parse_prompt("<lora:x:a=b=c:unet=2>")
    assert data["lora"][0].positional == ["x", "a=b=c"] and data["lora"][0].named == {"unet": "2"}
    with pytest.raises(ValueError, match="te multiplier 'a=b=c' is not a number"):
        lora_tags(data)


def test_non_numeric_multiplier_is_an_error():
    with pytest.raises(ValueError, match=r"<lora:x:strong>: the te multiplier 'strong'"):
        tags("<lora:x:strong>")


def test_order_groups_by_tag_kind_in_first_appearance_order():
    assert [t.name for t in tags("<lyco:a:1> <lora:b:1> <lyco:c:1>")] == ["a", "c", "b"]


def test_a_name_given_twice_takes_the_last_values_twice():
    assert tags("<lora:a:0.2> <lora:b:1> <lora:a:0.9:0.1>") == [
        NetworkTag("a", 0.9, 0.1), NetworkTag("b", 1.0, 1.0), NetworkTag("a", 0.9, 0.1)]


def test_the_first_prompt_of_a_batch_decides():
    texts, data = parse_prompts(["x <lora:a:0.5>", "y <lora:b:1>"])
    assert texts == ["x ", "y "]
    assert lora_tags(data) == [NetworkTag("a", 0.5, 0.5)]


def test_strip_keeps_spaces_and_commas():
    assert strip_networks("a cat <lora:x:0.8>, red") == "a cat , red"


def test_set_lora_weight():
    assert set_lora_weight("a <lora:x:0.8:0.2> b", "x", 0.5) == "a <lora:x:0.5> b"
    assert set_lora_weight("a <lyco:x> b", "x", 1.25) == "a <lyco:x:1.25> b"
    assert set_lora_weight("a b", "x", 0.3) == "a b <lora:x:0.3>"
    assert set_lora_weight("a <lora:xy:1>", "x", 0.3) == "a <lora:xy:1> <lora:x:0.3>"


def test_lora_hashes_round_trip_and_paste_rename():
    from inpaintlab.networks import parse_lora_hashes, rename_by_hashes

    hashes = parse_lora_hashes("detail: 1a2b3c4d5e6f, my style: 0f9e8d7c6b5a")
    assert hashes == {"detail": "1a2b3c4d5e6f", "my style": "0f9e8d7c6b5a"}
    local = {"0f9e8d7c6b5a": "style_v3"}
    prompt = "a <lora:detail:0.5> b <lora:my style:1:0.5> <lora:other:1>"
    assert rename_by_hashes(prompt, hashes, local.get) == "a <lora:detail:0.5> b <lora:style_v3:1:0.5> <lora:other:1>"
