"""Number patterns for route matching: exact, prefix, Asterisk-style `_0120XXXXXX` and regular expressions.

Written forms (one string each, so a YAML list can mix them):

- ``"1001"``                 exact match
- ``"prefix:0120"``          any number starting with 0120
- ``"_0120XXXXXX"``          X=0-9, Z=1-9, N=2-9, [1-5] a class, ``.`` one or more, ``!`` zero or more
- ``"re:^0(3|6)\\d{8}$"``    a Python regular expression (search, so anchor it); named groups become variables
- ``"*"``                    anything, including an empty number
"""

from __future__ import annotations

import re
from dataclasses import dataclass


class PatternError(ValueError):
    """A pattern that cannot be compiled; the message says what is wrong."""


@dataclass(frozen=True, slots=True)
class NumberPattern:
    """A compiled pattern; `match` returns captured variables (possibly empty) or None."""

    text: str
    regex: re.Pattern[str]

    def match(self, number: str) -> dict[str, str] | None:
        """Variables captured from `number` (named regex groups) if it matches, else None."""
        m = self.regex.search(number) if self.text.startswith("re:") else self.regex.fullmatch(number)
        if m is None:
            return None
        return {k: v for k, v in m.groupdict().items() if v is not None}


def _asterisk_to_regex(body: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(body):
        c = body[i]
        u = c.upper()
        if u == "X":
            out.append("[0-9]")
        elif u == "Z":
            out.append("[1-9]")
        elif u == "N":
            out.append("[2-9]")
        elif c == ".":
            out.append(".+")
        elif c == "!":
            out.append(".*")
        elif c == "[":
            end = body.find("]", i)
            if end < 0:
                raise PatternError(f"unclosed '[' in pattern _{body}")
            inner = body[i + 1:end]
            if not inner or not re.fullmatch(r"[0-9*#A-Da-d\-]+", inner):
                raise PatternError(f"bad character class [{inner}] in pattern _{body}")
            out.append("[" + inner.replace("*", r"\*") + "]")
            i = end
        elif c in "0123456789*#+ABCDabcd":
            out.append(re.escape(c))
        elif c in "-":  # visual separators as in _0120-XXX-XXX are ignored
            pass
        else:
            raise PatternError(f"unexpected {c!r} in pattern _{body}")
        i += 1
    return "".join(out)


def compile_pattern(text: str) -> NumberPattern:
    """Compile one pattern string; raises PatternError with a readable reason."""
    if not isinstance(text, str) or text == "":
        raise PatternError("a pattern must be a non-empty string")
    if text == "*":
        return NumberPattern(text, re.compile(r".*"))
    if text.startswith("re:"):
        try:
            return NumberPattern(text, re.compile(text[3:]))
        except re.error as exc:
            raise PatternError(f"bad regular expression: {exc}") from None
    if text.startswith("prefix:"):
        prefix = text[len("prefix:"):]
        if not prefix:
            raise PatternError("empty prefix")
        return NumberPattern(text, re.compile(re.escape(prefix) + ".*"))
    if text.startswith("_"):
        if len(text) == 1:
            raise PatternError("empty pattern after '_'")
        return NumberPattern(text, re.compile(_asterisk_to_regex(text[1:])))
    return NumberPattern(text, re.compile(re.escape(text)))
