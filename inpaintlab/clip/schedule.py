"""A1111 prompt editing, alternation and ``AND`` composition (A1111 v1.10 ``prompt_parser``, new scheduling).

Prompt editing ``[from:to:when]``, ``[to:when]`` (add at ``when``), ``[from::when]`` (remove at ``when``) and
alternation ``[a|b|...]`` turn one prompt into a list of ``(end_at_step, text)`` pairs; at denoiser call ``k``
(counted from 0) the first pair with ``k <= end_at_step`` is used. Behaviour of A1111 v1.10 with
``use_old_scheduling`` off, for one prompt:

* ``when`` containing ``.`` is a fraction of ``steps``, otherwise an absolute step; the value is truncated with
  ``int()`` and capped at ``steps``. Boundaries below 1 add no entry, but still decide the text (``[a:b:0]`` is
  always ``b``).
* An alternation adds an entry for every step ``1..steps``; entry ``s`` takes option ``(s - 1) % n``, so calls 0
  and 1 both see the first option (A1111's counter starts at 0, its entries at 1).
* Outside brackets the characters ``[ ] ( ) :`` may appear unbalanced (they stay text), but inside a bracket
  construct everything must nest, and ``|`` is only valid directly inside an alternation. Anything else is a
  parse error, and then the raw prompt is used for every step.
* ``\\x`` is kept verbatim (the attention parser resolves escapes later), so ``\\[`` and ``\\|`` are text.

The grammar is small enough for a hand-written recursive-descent parser; where the same text could be read as a
construct or as literal brackets, the construct wins. A1111 agrees except for an edit followed directly by a top-level
literal (``[a:b:2]:`` or ``[a:b:2](``): its Earley parser (lark 1.1.2) then picks either reading depending on the
process's string-hash seed, so the edit reading taken here is one of its two outcomes. A ``when`` that overflows to
infinity (``1e999``) is capped here; A1111 raises ``OverflowError`` on it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["get_prompt_schedule", "split_and", "uses_scheduling"]

# A signed number as the scheduling grammar accepts it: ASCII digits, optional fraction and exponent.
_NUMBER_RE = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_SPACE_RE = re.compile(r"\s+")
# Plain text inside the grammar: anything but the bracket characters, ':' and '|'; a backslash takes the next
# character (not a newline) with it.
_PLAIN_RE = re.compile(r"(?:[^\\\[\]():|]|\\.)+")
_TOP_LEVEL_LITERALS = "[]():"

_AND_RE = re.compile(r"\bAND\b")
# A sub-prompt: text, then an optional ":weight", then trailing whitespace (dropped). The text part is lazy, so
# the weight and trailing whitespace are taken off whenever they are there.
_WEIGHTED_RE = re.compile(r"(.*?)(?:\s*:\s*([-+]?(?:\d+\.?|\d*\.\d+)))?\s*", re.DOTALL)


class _ParseError(Exception):
    pass


@dataclass
class _Edit:
    """``[before:after:when]``; ``before`` is None for ``[after:when]``."""

    before: list | None
    after: list
    when: str
    boundary: int = 0  # set by _collect_boundaries


@dataclass
class _Alternate:
    options: list[list]


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text

    def top(self) -> list:
        """The whole prompt: items, plus unbalanced ``[ ] ( ) :`` as literal text."""
        items: list = []
        pos = 0
        while pos < len(self.text):
            char = self.text[pos]
            if char in "([":
                try:
                    node, pos = self.construct(pos)
                    items.append(node)
                    continue
                except _ParseError:
                    pass
            if char in _TOP_LEVEL_LITERALS:
                items.append(char)
                pos += 1
                continue
            match = _PLAIN_RE.match(self.text, pos)
            if match is None:  # '|' outside an alternation, or a backslash before a newline / at the end
                raise _ParseError(f"unexpected {char!r} at {pos}")
            items.append(match.group(0))
            pos = match.end()
        return items

    def prompt(self, pos: int) -> tuple[list, int]:
        """A nested prompt: text and constructs up to the first ``:``, ``|``, ``]``, ``)`` (or the end)."""
        items: list = []
        while pos < len(self.text):
            char = self.text[pos]
            if char in "([":
                node, pos = self.construct(pos)
                items.append(node)
                continue
            match = _PLAIN_RE.match(self.text, pos)
            if match is None:
                break
            items.append(match.group(0))
            pos = match.end()
        return items, pos

    def expect(self, pos: int, char: str) -> int:
        if pos >= len(self.text) or self.text[pos] != char:
            raise _ParseError(f"expected {char!r} at {pos}")
        return pos + 1

    def peek(self, pos: int) -> str:
        return self.text[pos] if pos < len(self.text) else ""

    def when(self, pos: int) -> tuple[str, int] | None:
        """``[space] number [space] ]`` at ``pos``: (number text, position after ``]``), or None."""
        space = _SPACE_RE.match(self.text, pos)
        pos = space.end() if space else pos
        number = _NUMBER_RE.match(self.text, pos)
        if number is None:
            return None
        pos = number.end()
        space = _SPACE_RE.match(self.text, pos)
        pos = space.end() if space else pos
        if self.peek(pos) != "]":
            return None
        return number.group(0), pos + 1

    def construct(self, pos: int) -> tuple[object, int]:
        """A bracket construct starting at ``pos``; emphasis comes back as its items with the brackets as text."""
        if self.text[pos] == "(":
            first, end = self.prompt(pos + 1)
            items = ["(", *first]
            if self.peek(end) == ":":
                second, end = self.prompt(end + 1)
                items += [":", *second]
            end = self.expect(end, ")")
            return [*items, ")"], end

        first, end = self.prompt(pos + 1)
        nxt = self.peek(end)
        if nxt == "]":
            return ["[", *first, "]"], end + 1
        if nxt == "|":
            options = [first]
            while self.peek(end) == "|":
                option, end = self.prompt(end + 1)
                options.append(option)
            end = self.expect(end, "]")
            return _Alternate(options), end
        if nxt == ":":
            found = self.when(end + 1)
            if found is not None:
                return _Edit(None, first, found[0]), found[1]
            second, end = self.prompt(end + 1)
            end = self.expect(end, ":")
            found = self.when(end)
            if found is None:
                raise _ParseError(f"expected a step number and ']' at {end}")
            return _Edit(first, second, found[0]), found[1]
        raise _ParseError(f"unclosed '[' at {pos}")


def _walk(items: list):
    for item in items:
        if isinstance(item, list):
            yield from _walk(item)
        elif isinstance(item, _Edit):
            yield item
            yield from _walk(item.before or [])
            yield from _walk(item.after)
        elif isinstance(item, _Alternate):
            yield item
            for option in item.options:
                yield from _walk(option)


def _collect_boundaries(items: list, steps: int) -> list[int]:
    boundaries = {steps}
    for node in _walk(items):
        if isinstance(node, _Edit):
            value = float(node.when)
            value = value * steps if "." in node.when else value
            # int() truncation capped at steps; compared first so that "1e999" (inf) caps instead of overflowing.
            # Anything below 1 acts like 0: no call number is <= it.
            node.boundary = steps if value >= steps else int(value) if value >= 1 else 0
            if node.boundary >= 1:
                boundaries.add(node.boundary)
        else:
            boundaries.update(range(1, steps + 1))
    return sorted(boundaries)


def _text_at(items: list, step: int) -> str:
    parts = []
    for item in items:
        if isinstance(item, str):
            parts.append(item)
        elif isinstance(item, list):
            parts.append(_text_at(item, step))
        elif isinstance(item, _Edit):
            chosen = (item.before or []) if step <= item.boundary else item.after
            parts.append(_text_at(chosen, step))
        else:
            parts.append(_text_at(item.options[(step - 1) % len(item.options)], step))
    return "".join(parts)


def _check_steps(steps: int) -> None:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")


def get_prompt_schedule(prompt: str, steps: int) -> list[tuple[int, str]]:
    """The prompt's texts over ``steps`` sampling steps as ``[(end_at_step, text), ...]``.

    >>> get_prompt_schedule("a [cat:dog:0.5]", 20)
    [(10, 'a cat'), (20, 'a dog')]
    >>> get_prompt_schedule("[fe|]male", 3)
    [(1, 'female'), (2, 'male'), (3, 'female')]

    A prompt the grammar cannot parse is used as it is: ``[(steps, prompt)]``.
    """
    if not isinstance(prompt, str):
        raise TypeError(f"prompt must be a str, got {type(prompt).__name__}")
    _check_steps(steps)
    try:
        items = _Parser(prompt).top()
    except (_ParseError, RecursionError):  # nesting deeper than Python's stack: unparsable, like A1111's parser
        return [(steps, prompt)]
    return [(step, _text_at(items, step)) for step in _collect_boundaries(items, steps)]


def uses_scheduling(prompt: str, steps: int) -> bool:
    """True when the prompt's text changes, or is rewritten, during sampling (not a single raw entry)."""
    return get_prompt_schedule(prompt, steps) != [(steps, prompt)]


def split_and(prompt: str) -> list[tuple[str, float]]:
    """Split a prompt into ``AND`` sub-prompts with their CFG weights: ``[(text, weight), ...]``.

    ``AND`` must be a whole word. Each part may end in ``:number`` (its weight, default 1.0); that suffix and
    trailing whitespace are removed from the text, leading whitespace is kept. As in A1111 this applies to a
    prompt without ``AND`` too (``"cat:1.5"`` is ``cat`` at weight 1.5).

    >>> split_and("a cat AND a dog:0.5")
    [('a cat', 1.0), (' a dog', 0.5)]
    """
    if not isinstance(prompt, str):
        raise TypeError(f"prompt must be a str, got {type(prompt).__name__}")
    parts = []
    for part in _AND_RE.split(prompt):
        match = _WEIGHTED_RE.fullmatch(part)
        text, weight = match.group(1), match.group(2)
        parts.append((text, float(weight) if weight is not None else 1.0))
    return parts
