"""Replacing secret values with `***` in text, whole or as it streams. Pure.

Output arrives in chunks that may split a value anywhere, so the streaming side keeps
back the end of what it was given for as long as that end could still become the start
of a value. Whatever the chunking, the text it releases is exactly what masking the
whole output at once gives (tests/vault/test_masking.py checks this with hypothesis).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

MASK = "***"
# Text that could still grow into a value is found by looking up its first HEAD
# characters, not by comparing it with every value: a value of many lines (a key, a
# certificate bundle) is many terms, and comparing each position with each of them made
# every write of a log cost (length of the longest value) x (number of terms).
HEAD = 8


class Masker:
    """Masks occurrences of `values` (literal strings). At each position the longest
    value that occurs there wins, and scanning goes on after it, left to right.

    `mask` is for whole strings; `feed` and `flush` for a stream: `feed` returns what
    is safe to show so far, `flush` the rest once the stream has ended. Not
    thread-safe: the caller serialises feeds."""

    def __init__(self, values: Iterable[str]) -> None:
        # Longest first: the regex takes the first alternative that matches at the
        # leftmost position, which then is the longest.
        self.values = tuple(sorted({v for v in values if v}, key=lambda v: (-len(v), v)))
        self.longest = len(self.values[0]) if self.values else 0
        self._pattern = re.compile("|".join(map(re.escape, self.values))) if self.values else None
        self._starts = (
            re.compile("[" + "".join(re.escape(c) for c in {v[0] for v in self.values}) + "]")
            if self.values
            else None
        )
        # Values longer than HEAD by their first HEAD characters; every proper prefix
        # shorter than HEAD.
        self._heads: dict[str, list[str]] = {}
        self._short: set[str] = set()
        for v in self.values:
            if len(v) > HEAD:
                self._heads.setdefault(v[:HEAD], []).append(v)
            self._short.update(v[:k] for k in range(1, min(HEAD, len(v))))
        self.held = ""

    def __bool__(self) -> bool:
        return bool(self.values)

    def mask(self, text: str) -> str:
        if self._pattern is None or not text:
            return text
        return self._pattern.sub(MASK, text)

    def mask_value(self, value: Any) -> Any:
        """Strings anywhere in a JSON-like value (keys too), masked; the rest as is."""
        if self._pattern is None:
            return value
        if isinstance(value, str):
            return self.mask(value)
        if isinstance(value, dict):
            return {self.mask_value(k): self.mask_value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.mask_value(v) for v in value]
        return value

    def feed(self, text: str) -> str:
        if self._pattern is None:
            return text
        buffer = self.held + text
        out: list[str] = []
        pos = 0
        while True:
            hold = self._hold_point(buffer, pos)
            found = self._pattern.search(buffer, pos)
            if found is None or found.start() >= hold:
                # Nothing starts before `hold`; from there on, more text may still make
                # a value (or a longer one) start.
                out.append(buffer[pos:hold])
                self.held = buffer[hold:]
                return "".join(out)
            # Every value that could start here fits in the buffer: the match is final.
            out.append(buffer[pos : found.start()])
            out.append(MASK)
            pos = found.end()

    def flush(self) -> str:
        """The text kept back, masked: the stream has ended, nothing more can follow."""
        rest, self.held = self.held, ""
        return self.mask(rest)

    def _hold_point(self, buffer: str, pos: int) -> int:
        """The first position at or after `pos` whose rest of `buffer` is a proper
        prefix of some value: what a value could still grow from. len(buffer) if none."""
        assert self._starts is not None
        end = len(buffer)
        for start in self._starts.finditer(buffer, max(pos, end - self.longest + 1)):
            at = start.start()
            size = end - at
            if size < HEAD:
                if buffer[at:] in self._short:
                    return at
            elif any(
                len(v) > size and v.startswith(buffer[at:])
                for v in self._heads.get(buffer[at : at + HEAD], ())
            ):
                return at
        return end
