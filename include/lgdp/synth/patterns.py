"""Sample strings that match a spec item's ``pattern``, using Python's own regex parser.

Only the regular-expression features a data item needs are supported (literals, character
classes and ranges, ``\\d``/``\\w``/``\\s``, ``.``, groups, alternation, ``?``/``*``/``+``/``{m,n}``
and the anchors); anything else raises ``ValueError`` so a spec author sees which pattern the
generator cannot imitate. Every sample is checked against the pattern before it is returned.
"""

from __future__ import annotations

import random
import re
import string

try:  # Python 3.11+
    import re._constants as _c  # type: ignore[import-not-found]
    import re._parser as _parser  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - older Pythons
    import sre_constants as _c  # type: ignore[no-redef]
    import sre_parse as _parser  # type: ignore[no-redef]

_CATEGORY_CHARS = {
    _c.CATEGORY_DIGIT: string.digits,
    _c.CATEGORY_WORD: string.ascii_letters + string.digits + "_",
    _c.CATEGORY_SPACE: " ",
}
_ANY = string.ascii_letters + string.digits
_MAX_OPEN_REPEAT = 8


def _class_chars(items: list[tuple[object, object]]) -> str:
    chars: list[str] = []
    negate = False
    for op, arg in items:
        if op is _c.NEGATE:
            negate = True
        elif op is _c.LITERAL:
            chars.append(chr(arg))  # type: ignore[arg-type]
        elif op is _c.RANGE:
            lo, hi = arg  # type: ignore[misc]
            chars.extend(chr(x) for x in range(lo, hi + 1))
        elif op is _c.CATEGORY and arg in _CATEGORY_CHARS:
            chars.extend(_CATEGORY_CHARS[arg])  # type: ignore[index]
        else:
            raise ValueError(f"unsupported character class element {op}")
    if negate:
        excluded = set(chars)
        return "".join(ch for ch in _ANY if ch not in excluded)
    return "".join(chars)


def _emit(tree: object, rng: random.Random, out: list[str], budget: list[int]) -> None:
    for op, arg in tree:  # type: ignore[attr-defined]
        if op is _c.LITERAL:
            out.append(chr(arg))
        elif op is _c.IN:
            out.append(rng.choice(_class_chars(arg)))
        elif op is _c.ANY:
            out.append(rng.choice(_ANY))
        elif op is _c.CATEGORY:
            out.append(rng.choice(_CATEGORY_CHARS[arg]))
        elif op in (_c.MAX_REPEAT, _c.MIN_REPEAT, getattr(_c, "POSSESSIVE_REPEAT", None)):
            lo, hi, sub = arg
            hi = min(hi, lo + _MAX_OPEN_REPEAT) if hi is _c.MAXREPEAT else hi
            hi = max(lo, min(hi, lo + max(budget[0], 0)))
            n = rng.randint(lo, hi)
            budget[0] -= n - lo
            for _ in range(n):
                _emit(sub, rng, out, budget)
        elif op is _c.SUBPATTERN:
            _emit(arg[-1], rng, out, budget)
        elif op is _c.BRANCH:
            _emit(rng.choice(arg[1]), rng, out, budget)
        elif op is _c.AT:
            continue
        else:
            raise ValueError(f"the synthetic data generator cannot imitate the regex element {op}")


def sample(pattern: str, rng: random.Random, max_length: int | None = None) -> str:
    """A random string matching ``pattern`` (whole-value match), at most ``max_length`` long."""
    compiled = re.compile(pattern)
    tree = _parser.parse(pattern)
    for _ in range(50):
        out: list[str] = []
        _emit(tree, rng, out, [max_length if max_length is not None else 12])
        value = "".join(out)
        if compiled.fullmatch(value) and (max_length is None or len(value) <= max_length):
            return value
    raise ValueError(f"could not make a value matching {pattern!r} within {max_length} characters")


def matches(pattern: str, value: str) -> bool:
    """Whether ``value`` as a whole matches ``pattern`` (how the platform reads ``pattern``)."""
    return re.fullmatch(pattern, value) is not None
