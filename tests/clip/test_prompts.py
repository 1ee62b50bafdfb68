"""parse_prompt_attention against A1111 v1.10's documented examples, the spec's examples, hand-derived quirks, and
a randomised comparison with an independent tree evaluation. Weights are compared with exact float equality: A1111
multiplies inner brackets first, and so must we."""
import random

import pytest

from inpaintlab.clip.prompts import parse_prompt_attention

R = 1.1
S = 1 / 1.1

A1111_DOCSTRING_EXAMPLES = [
    ("normal text", [["normal text", 1.0]]),
    ("an (important) word", [["an ", 1.0], ["important", 1.1], [" word", 1.0]]),
    ("(unbalanced", [["unbalanced", 1.1]]),
    ("\\(literal\\]", [["(literal]", 1.0]]),
    ("(unnecessary)(parens)", [["unnecessaryparens", 1.1]]),
    (
        "a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
        [["a ", 1.0], ["house", 1.5730000000000004], [" ", 1.1], ["on", 1.0], [" a ", 1.1], ["hill", 0.55],
         [", sun, ", 1.1], ["sky", 1.4641000000000006], [".", 1.1]],
    ),
]
SPEC_EXAMPLES = [
    ("a (red:1.3) door, [old]", [["a ", 1.0], ["red", 1.3], [" door, ", 1.0], ["old", 0.9090909090909091]]),
    ("((cat)) on a \\(mat\\)", [["cat", 1.2100000000000002], [" on a (mat)", 1.0]]),
]
HAND_DERIVED = [
    ("", [["", 1.0]]),
    ("[a]", [["a", S]]),
    ("[[a]]", [["a", S * S]]),
    ("([a])", [["a", S * R]]),  # inner first: (1.0 * S) * R
    ("[(a)]", [["a", R * S]]),
    ("(a:0.5)", [["a", 0.5]]),
    ("(a: 1.5 )", [["a", 1.5]]),  # spaces around the number are allowed
    ("(a:-1)", [["a", -1.0]]),
    ("(a:+.5)", [["a", 0.5]]),
    ("((a:1.3))", [["a", 1.3 * R]]),
    ("((a):1.3)", [["a", R * 1.3]]),
    ("a)", [["a)", 1.0]]),  # unmatched closers are text
    ("a]b)", [["a]b)", 1.0]]),
    ("x:1.2) y", [["x:1.2) y", 1.0]]),  # weight with no open "(" is text
    ("[a:1.2)]", [["a:1.2)", S]]),  # a ":w)" cannot close a square bracket
    ("(a:1.2", [["a:1.2", R]]),  # no ")": the colon is text, the bracket closes at the end
    ("[a:b:0.5]", [["a:b:0.5", S]]),  # scheduling syntax is plain text here
    ("a:b", [["a:b", 1.0]]),
    ("(a:-)", [["a:-", R]]),  # "-" alone is no number: colon and sign are text
    ("(a [b", [["a ", R], ["b", R * S]]),  # unclosed: round ones applied first, then square
    ("[a (b", [["a ", S], ["b", R * S]]),
    ("((a) b", [["a", R * R], [" b", R]]),
    ("a\\\\b", [["a\\b", 1.0]]),  # \\ -> backslash
    ("a\\b", [["ab", 1.0]]),  # lone backslash disappears
    ("(\\(x\\))", [["(x)", R]]),  # escapes inside brackets are still weighted
    ("a ( ) b", [["a ", 1.0], [" ", R], [" b", 1.0]]),
    ("()", [["", 1.0]]),
    ("(a)(b:1.1)", [["ab", 1.1]]),  # equal weights merge even from different brackets
    ("a\nb (c\n:1.2\n)", [["a\nb ", 1.0], ["c\n", 1.2]]),
]
BREAK_CASES = [
    ("a BREAK b", [["a", 1.0], ["BREAK", -1], ["b", 1.0]]),
    ("a, BREAK\n b", [["a,", 1.0], ["BREAK", -1], ["b", 1.0]]),
    ("BREAK", [["", 1.0], ["BREAK", -1], ["", 1.0]]),
    ("aBREAK b BREAKS BREAK_", [["aBREAK b BREAKS BREAK_", 1.0]]),  # only the whole word counts
    ("break a", [["break a", 1.0]]),  # case-sensitive
    ("a BREAK BREAK b", [["a", 1.0], ["BREAK", -1], ["", 1.0], ["BREAK", -1], ["b", 1.0]]),
    ("(a BREAK b)", [["a", R], ["BREAK", -1 * R], ["b", R]]),  # inside brackets: no longer a break marker
    ("x (a:1.2) BREAK [b]", [["x ", 1.0], ["a", 1.2], ["", 1.0], ["BREAK", -1], ["", 1.0], ["b", S]]),
]


@pytest.mark.parametrize("text,expected", A1111_DOCSTRING_EXAMPLES + SPEC_EXAMPLES + HAND_DERIVED + BREAK_CASES)
def test_examples(text, expected):
    assert parse_prompt_attention(text) == expected  # float == : exact, last bit included


@pytest.mark.parametrize("text", ["(a:1.2.3)", "(a:.)", "(a:1..)", "(a:..5)"])
def test_unparsable_weight_raises(text):
    with pytest.raises(ValueError, match="invalid attention weight"):
        parse_prompt_attention(text)


def test_rejects_non_string():
    with pytest.raises(TypeError):
        parse_prompt_attention(None)


# --- randomised: nested brackets rendered from a tree, weights evaluated on the tree -----------------------------

_WORDS = ["cat", "red dress", " on ", ", ", "a", "sky.", "x y z", "\\(", "\\]", "\\\\"]
_LITERAL = {"\\(": "(", "\\]": "]", "\\\\": "\\"}


def _random_tree(rng, depth):
    nodes = []
    for _ in range(rng.randint(1, 4)):
        kind = rng.random()
        if depth < 4 and kind < 0.25:
            nodes.append(("round", _random_tree(rng, depth + 1), None))
        elif depth < 4 and kind < 0.4:
            nodes.append(("round", _random_tree(rng, depth + 1), rng.choice([0.5, 1.3, 0.9, 2.0, 1.05, 0.0])))
        elif depth < 4 and kind < 0.55:
            nodes.append(("square", _random_tree(rng, depth + 1), None))
        else:
            nodes.append(("text", rng.choice(_WORDS), None))
    return nodes


def _render(nodes):
    out = []
    for kind, value, weight in nodes:
        if kind == "text":
            out.append(value)
        elif kind == "square":
            out.append("[" + _render(value) + "]")
        elif weight is None:
            out.append("(" + _render(value) + ")")
        else:
            out.append("(" + _render(value) + f":{weight})")
    return "".join(out)


def _evaluate(nodes, factors):
    """(literal text, weight) pairs; a bracket's factor applies after those of brackets inside it."""
    out = []
    for kind, value, weight in nodes:
        if kind == "text":
            w = 1.0
            for f in reversed(factors):  # innermost bracket first
                w *= f
            # an escape is its own fragment in A1111 but ends up merged with equal-weight neighbours
            out.append((_LITERAL.get(value, value), w))
        elif kind == "square":
            out += _evaluate(value, factors + [S])
        else:
            out += _evaluate(value, factors + [R if weight is None else float(weight)])
    return out


def _merge(pairs):
    merged = []
    for text, w in pairs:
        if merged and merged[-1][1] == w:
            merged[-1][0] += text
        else:
            merged.append([text, w])
    return merged or [["", 1.0]]


def test_random_nested_prompts_match_tree_evaluation():
    rng = random.Random(2024)
    for _ in range(500):
        tree = _random_tree(rng, 0)
        text = _render(tree)
        assert parse_prompt_attention(text) == _merge(_evaluate(tree, [])), text
