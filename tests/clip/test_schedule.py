"""Prompt editing / alternation schedules and AND splitting against expectations derived by hand from the rules in
spec/a1111-inpaint.md §7 (A1111 v1.10, use_old_scheduling off). Each expected value below is worked out from those
rules, not read back from the code."""
import pytest

from inpaintlab.clip.schedule import get_prompt_schedule, split_and, uses_scheduling


@pytest.mark.parametrize("prompt, steps, expected", [
    # spec examples
    ("[a:b:0.5]", 20, [(10, "a"), (20, "b")]),
    ("a [{b|d{:.5] c", 10, [(10, "a [{b|d{:.5] c")]),  # stale docstring example: unparsable -> raw
    ("[fe|]male", 4, [(1, "female"), (2, "male"), (3, "female"), (4, "male")]),
    # fraction vs absolute step; int() truncation; cap at steps
    ("[a:b:0.33]", 20, [(6, "a"), (20, "b")]),      # 0.33 * 20 = 6.6 -> 6
    ("[a:b:7]", 20, [(7, "a"), (20, "b")]),
    ("[a:b:7.]", 20, [(20, "a")]),                  # "7." is a fraction: 7 * 20 = 140 -> capped at 20
    ("[a:b:.25]", 8, [(2, "a"), (8, "b")]),
    ("[a:b:1e1]", 20, [(10, "a"), (20, "b")]),      # no ".": absolute step 10
    ("[a:b:30]", 20, [(20, "a")]),                  # capped: the switch never happens
    ("[a:b:0.99]", 3, [(2, "a"), (3, "b")]),        # 2.97 -> 2
    # boundaries below 1 are dropped but still choose the text
    ("[a:b:0]", 5, [(5, "b")]),
    ("[a:b:0.01]", 20, [(20, "b")]),                # 0.2 -> 0
    ("[a:b:-3]", 5, [(5, "b")]),
    ("[a:b:1]", 5, [(1, "a"), (5, "b")]),
    ("[a:b:1e999]", 5, [(5, "a")]),                 # inf: capped at steps
    ("[a:b:-1e999]", 5, [(5, "b")]),
    # add / remove forms, whitespace around the number
    ("x [b:3]", 5, [(3, "x "), (5, "x b")]),
    ("x [a::3]", 5, [(3, "x a"), (5, "x ")]),
    ("[a:b: 2 ]", 4, [(2, "a"), (4, "b")]),
    ("[::2]", 4, [(2, ""), (4, "")]),
    # several edits, sorted and merged boundaries
    ("[a:b:2][c:d:3]", 4, [(2, "ac"), (3, "bc"), (4, "bd")]),
    ("[a:b:2] [c:d:2]", 4, [(2, "a c"), (4, "b d")]),
    # nesting
    ("[[a:b:1]:c:3]", 4, [(1, "a"), (3, "b"), (4, "c")]),
    ("[a:[b|c]:2] x", 4, [(1, "a x"), (2, "a x"), (3, "b x"), (4, "c x")]),
    ("[a|b|c]", 4, [(1, "a"), (2, "b"), (3, "c"), (4, "a")]),
    ("[|x]", 2, [(1, ""), (2, "x")]),
    ("[a|[b:c:2]]", 4, [(1, "a"), (2, "b"), (3, "a"), (4, "c")]),
    # emphasis is kept verbatim and may hold edits; edits may hold emphasis
    ("(a:1.2) [x:y:0.25]", 8, [(2, "(a:1.2) x"), (8, "(a:1.2) y")]),
    ("([cat:dog:2]:1.3)", 4, [(2, "(cat:1.3)"), (4, "(dog:1.3)")]),
    ("[(red:1.1) car:blue car:0.5]", 2, [(1, "(red:1.1) car"), (2, "blue car")]),
    ("[a] (b) [c:d:1]", 2, [(1, "[a] (b) c"), (2, "[a] (b) d")]),
    # escapes stay verbatim and are not brackets
    (r"\[a:b:1\]", 3, [(3, r"\[a:b:1\]")]),
    (r"[a\|b:c:1]", 3, [(1, r"a\|b"), (3, "c")]),
    # unbalanced brackets and stray colons outside constructs are text, the rest still schedules
    ("[[a:b:0.5]", 4, [(2, "[a"), (4, "[b")]),
    ("a) b: [c:d:1] (e", 2, [(1, "a) b: c (e"), (2, "a) b: d (e")]),
    ("[a:b:c:0.5]", 4, [(4, "[a:b:c:0.5]")]),        # too many colons: literal text
    ("[a (b:c:0.5]", 4, [(4, "[a (b:c:0.5]")]),
    ("[a:b]", 4, [(4, "[a:b]")]),                     # no number: not an edit
    # parse errors -> raw prompt for every step, even with a valid edit elsewhere
    ("a|b", 3, [(3, "a|b")]),
    ("[a:b:2] x|y", 3, [(3, "[a:b:2] x|y")]),
    ("[a|b", 3, [(3, "[a|b")]),
    ("(a|b)", 3, [(3, "(a|b)")]),
    ("[x|a:b]", 3, [(3, "[x|a:b]")]),
    ("trailing \\", 3, [(3, "trailing \\")]),
    # plain prompts
    ("", 5, [(5, "")]),
    ("a photo, (cat:1.2), BREAK dog", 7, [(7, "a photo, (cat:1.2), BREAK dog")]),
])
def test_get_prompt_schedule(prompt, steps, expected):
    assert get_prompt_schedule(prompt, steps) == expected


def test_img2img_truncation_never_switches():
    # spec §7: [a:b:0.5] at 20 steps, d = 0.5 -> 11 calls (counter 0..10) all pick the first entry
    schedule = get_prompt_schedule("[a:b:0.5]", 20)
    picks = [next(text for end, text in schedule if call <= end) for call in range(11)]
    assert picks == ["a"] * 11
    txt2img = [next(text for end, text in schedule if call <= end) for call in range(20)]
    assert txt2img == ["a"] * 11 + ["b"] * 9


def test_deep_nesting_is_parsed_or_left_raw():
    deep = "[" * 30 + "a" + "]" * 30
    assert get_prompt_schedule(deep, 3) == [(3, deep)]
    prompt = "[" * 5000 + "a"
    assert get_prompt_schedule(prompt, 3) == [(3, prompt)]


def test_uses_scheduling_and_bad_input():
    assert uses_scheduling("[a:b:2]", 4) and uses_scheduling("[a|b]", 4)
    assert not uses_scheduling("plain (text:1.1) [x]", 4) and not uses_scheduling("a|b", 4)
    with pytest.raises(TypeError, match="prompt"):
        get_prompt_schedule(None, 4)
    for steps in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="steps"):
            get_prompt_schedule("a", steps)


@pytest.mark.parametrize("prompt, expected", [
    ("a cat AND a dog", [("a cat", 1.0), (" a dog", 1.0)]),
    ("a cat AND a dog:0.5", [("a cat", 1.0), (" a dog", 0.5)]),
    ("a cat :1.5 AND dog : -2.  ", [("a cat", 1.5), (" dog", -2.0)]),
    ("cat:.25", [("cat", 0.25)]),
    ("cat:1.5", [("cat", 1.5)]),                    # applies without AND too
    ("cat  ", [("cat", 1.0)]),                      # trailing whitespace dropped, leading kept
    ("  cat", [("  cat", 1.0)]),
    ("ANDROID and ANDY", [("ANDROID and ANDY", 1.0)]),  # whole word, case-sensitive
    ("a AND", [("a", 1.0), ("", 1.0)]),
    ("AND", [("", 1.0), ("", 1.0)]),
    ("x ANDAND y", [("x ANDAND y", 1.0)]),
    ("a,AND(b)", [("a,", 1.0), ("(b)", 1.0)]),
    ("(cat:1.2)", [("(cat:1.2)", 1.0)]),            # an emphasis weight is not a sub-prompt weight
    ("cat:1.2.3", [("cat:1.2.3", 1.0)]),            # no valid number at the end: text
    ("[a:b:0.5]", [("[a:b:0.5]", 1.0)]),            # the number is not at the end ("]" is): no weight
    ("[a:b:5] AND c:3", [("[a:b:5]", 1.0), (" c", 3.0)]),
    ("x:\n2\n", [("x", 2.0)]),
    ("", [("", 1.0)]),
])
def test_split_and(prompt, expected):
    assert split_and(prompt) == expected
