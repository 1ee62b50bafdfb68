"""A1111 prompt-attention syntax: ``(text)``, ``(text:1.3)``, ``[text]``, escapes and ``BREAK``.

Behaviour of A1111 v1.10 ``prompt_parser.parse_prompt_attention``, reproduced down to
the order of the float multiplications, so nested weights come out bit-identical (``((a))`` is ``1.1 * 1.1``, not
``1.21``). Prompt scheduling (``[a:b:0.5]``, ``[a|b]``) and ``AND`` composition are applied before this step and are
not handled here.
"""
from __future__ import annotations

import re
from ..errors import SettingsError

ROUND_MULTIPLIER = 1.1
SQUARE_MULTIPLIER = 1 / 1.1
BREAK_WEIGHT = -1.0  # marker weight of a BREAK fragment, as A1111 uses it

# One alternative per kind of token; every character of a prompt belongs to exactly one match. Stdlib `re` on
# purpose: its \d and \s (Unicode-aware) are the classes A1111 uses, and float() accepts any Unicode digit.
_TOKEN_RE = re.compile(
    r"""
      (?P<escape>\\[()\[\]\\]?)              # \( \) \[ \] \\ -> the character; a lone \ -> nothing
    | (?P<open>[(\[])
    | :\s*(?P<weight>[+-]?[.\d]+)\s*\)       # ":1.3)" closes a round bracket with an explicit weight
    | (?P<close>[)\]])
    | [^\\()\[\]:]+                          # ordinary text
    | :                                      # a colon that does not start a weight
    """,
    re.VERBOSE,
)
_BREAK_RE = re.compile(r"\s*\bBREAK\b\s*", re.DOTALL)


def parse_prompt_attention(text: str) -> list[list[str | float]]:
    """Split ``text`` into ``[fragment, weight]`` pairs.

    ``(x)`` multiplies the weight of everything inside by 1.1, ``(x:w)`` by ``w``, ``[x]`` by 1/1.1; brackets nest.
    ``\\(``, ``\\)``, ``\\[``, ``\\]``, ``\\\\`` give the literal character. A ``)`` or ``]`` with nothing to close
    is plain text; brackets still open at the end are applied there. Each ``BREAK`` (a whole word, outside any
    bracket) becomes ``["BREAK", -1.0]``. Adjacent fragments of equal weight are merged; an empty prompt gives
    ``[["", 1.0]]``.

    >>> parse_prompt_attention("an (important) word")
    [['an ', 1.0], ['important', 1.1], [' word', 1.0]]

    Raises ValueError for an unparsable explicit weight such as ``(a:1.2.3)`` (A1111 fails there too).
    """
    if not isinstance(text, str):
        raise TypeError(f"prompt must be a str, got {type(text).__name__}")
    fragments: list[list] = []
    open_round: list[int] = []  # index into `fragments` where each open bracket starts
    open_square: list[int] = []

    def scale_from(start: int, factor: float) -> None:
        for fragment in fragments[start:]:
            fragment[1] *= factor

    for match in _TOKEN_RE.finditer(text):
        token = match.group(0)
        weight = match.group("weight")
        if match.group("escape") is not None:
            fragments.append([token[1:], 1.0])
        elif match.group("open") is not None:
            (open_round if token == "(" else open_square).append(len(fragments))
        elif weight is not None and open_round:
            try:
                factor = float(weight)
            except ValueError:
                raise SettingsError(f"invalid attention weight {weight!r} in prompt {text!r}") from None
            scale_from(open_round.pop(), factor)
        elif token == ")" and open_round:
            scale_from(open_round.pop(), ROUND_MULTIPLIER)
        elif token == "]" and open_square:
            scale_from(open_square.pop(), SQUARE_MULTIPLIER)
        else:
            # Plain text, including unmatched closers and a ":w)" with no open "(".
            for i, part in enumerate(_BREAK_RE.split(token)):
                if i:
                    fragments.append(["BREAK", BREAK_WEIGHT])
                fragments.append([part, 1.0])

    # Unclosed brackets act as if closed at the end: round ones first, each in opening order, then square ones.
    for start in open_round:
        scale_from(start, ROUND_MULTIPLIER)
    for start in open_square:
        scale_from(start, SQUARE_MULTIPLIER)

    if not fragments:
        return [["", 1.0]]
    merged = [fragments[0]]
    for fragment in fragments[1:]:
        if fragment[1] == merged[-1][1]:
            merged[-1][0] += fragment[0]
        else:
            merged.append(fragment)
    return merged
