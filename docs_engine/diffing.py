"""Diffs between two texts: unified (for the API and 409 bodies) and side-by-side rows
(for the history page). Pure functions over strings."""

from __future__ import annotations

import difflib
from dataclasses import dataclass


def unified_diff(old: str, new: str, *, old_name: str = "a", new_name: str = "b") -> str:
    lines = difflib.unified_diff(
        old.splitlines(keepends=True),
        new.splitlines(keepends=True),
        fromfile=old_name,
        tofile=new_name,
    )
    # A last line without "\n" would glue two diff lines together.
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


@dataclass(frozen=True)
class Row:
    """One row of a side-by-side diff; a missing side has number None."""

    kind: str  # equal | replace | delete | insert
    old_number: int | None
    old_text: str
    new_number: int | None
    new_text: str


def side_by_side(old: str, new: str) -> list[Row]:
    a, b = old.splitlines(), new.splitlines()
    rows: list[Row] = []
    matcher = difflib.SequenceMatcher(a=a, b=b, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            rows.extend(
                Row("equal", i + 1, a[i], j + 1, b[j])
                for i, j in zip(range(i1, i2), range(j1, j2), strict=True)
            )
            continue
        left, right = list(range(i1, i2)), list(range(j1, j2))
        for k in range(max(len(left), len(right))):
            i = left[k] if k < len(left) else None
            j = right[k] if k < len(right) else None
            rows.append(
                Row(
                    tag,
                    None if i is None else i + 1,
                    "" if i is None else a[i],
                    None if j is None else j + 1,
                    "" if j is None else b[j],
                )
            )
    return rows
