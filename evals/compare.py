"""Comparing two evaluations item by item: pure (no database), so the rules are tested
directly. The API and the compare page feed it the items of `evaluation_results`.

Items are matched by item number. An item *passes* only when it was judged and passed;
one not judged (still running, cancelled, could not run) counts as not passed, as it
does in the pass rate, so on the same items the pass rates differ by exactly
(improved - regressed) / items."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol, TypeVar

MAX_OUTPUT_CHARS = 2000  # of each output, as the assert step keeps them
MAX_DIFF_CHARS = 4000
CUT = "… (diff cut at {limit} characters)"

REGRESSED, IMPROVED, ADDED, REMOVED, SAME = "regressed", "improved", "added", "removed", "same"
N = TypeVar("N", float, Decimal)
ORDER = {REGRESSED: 0, IMPROVED: 1, ADDED: 2, REMOVED: 3, SAME: 4}


class Judged(Protocol):
    """What is compared of an item (evals.selectors.ItemResult has it)."""

    @property
    def item(self) -> int: ...

    @property
    def passed(self) -> bool | None: ...

    @property
    def output(self) -> str | None: ...


@dataclass(frozen=True)
class Side:
    passed: bool | None  # None: not judged
    output: str | None


@dataclass(frozen=True)
class ItemChange:
    item: int
    change: str  # regressed | improved | added | removed | same
    a: Side | None  # None: the item is not in a's dataset version
    b: Side | None
    diff: str  # unified diff of a's output to b's; "" when they are the same


def compare_items(
    a: Iterable[Judged], b: Iterable[Judged], *, a_name: str = "a", b_name: str = "b"
) -> list[ItemChange]:
    """Every item of either side: regressions first, then improvements, items only in b
    (added), only in a (removed), and the rest, each group by item number."""
    left = {r.item: _side(r) for r in a}
    right = {r.item: _side(r) for r in b}
    changes = [
        ItemChange(
            item=number,
            change=_change(left.get(number), right.get(number)),
            a=left.get(number),
            b=right.get(number),
            diff=output_diff(
                _output(left.get(number)),
                _output(right.get(number)),
                a_name=f"{a_name} item {number}",
                b_name=f"{b_name} item {number}",
            ),
        )
        for number in set(left) | set(right)
    ]
    changes.sort(key=lambda c: (ORDER[c.change], c.item))
    return changes


def output_diff(a: str, b: str, *, a_name: str = "a", b_name: str = "b") -> str:
    """A unified diff of the two outputs (each cut to MAX_OUTPUT_CHARS), cut at a line
    boundary to at most MAX_DIFF_CHARS with a closing line saying so."""
    a, b = a[:MAX_OUTPUT_CHARS], b[:MAX_OUTPUT_CHARS]
    if a == b:
        return ""
    lines = difflib.unified_diff(
        a.splitlines(), b.splitlines(), fromfile=a_name, tofile=b_name, lineterm=""
    )
    kept: list[str] = []
    size = 0
    note = CUT.format(limit=MAX_DIFF_CHARS)
    for line in lines:
        # Room is kept for the note, so a cut diff is at most MAX_DIFF_CHARS in all.
        if size + len(line) + 1 > MAX_DIFF_CHARS - len(note):
            kept.append(note)
            break
        kept.append(line)
        size += len(line) + 1
    return "\n".join(kept)


def _side(result: Judged) -> Side:
    output = result.output[:MAX_OUTPUT_CHARS] if result.output is not None else None
    return Side(passed=result.passed, output=output)


def _output(side: Side | None) -> str:
    return side.output or "" if side is not None else ""


def _change(a: Side | None, b: Side | None) -> str:
    if a is None:
        return ADDED
    if b is None:
        return REMOVED
    if a.passed is True and b.passed is not True:
        return REGRESSED
    if a.passed is not True and b.passed is True:
        return IMPROVED
    return SAME


def diff_lines(diff: str) -> list[tuple[str, str]]:
    """(class, line) for a page: `file` headers, `hunk` markers, `add`, `del`, or ""."""
    lines: list[tuple[str, str]] = []
    for index, line in enumerate(diff.splitlines()):
        if index < 2 and line.startswith(("--- ", "+++ ")):
            kind = "file"
        elif line.startswith("@@"):
            kind = "hunk"
        elif line.startswith("+"):
            kind = "add"
        elif line.startswith("-"):
            kind = "del"
        else:
            kind = ""
        lines.append((kind, line))
    return lines


def delta(a: N | None, b: N | None) -> N | None:
    """b - a, or None when either is unknown."""
    return None if a is None or b is None else b - a
