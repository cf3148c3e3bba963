"""The user's search text as terms, and as FTS5 / tsquery expressions (pure).

Whatever the user types becomes a list of terms built only from word characters, so the
expressions handed to the database can never be syntactically wrong: quotes, brackets,
operators and stray `*` are read as text, an unclosed quote runs to the end.

  install guide       both words (stemmed: "installing" finds "install")
  "install guide"     the phrase
  inst*               words starting with "inst"
  -windows            documents without "windows"
"""

from __future__ import annotations

import re
from dataclasses import dataclass

WORD = re.compile(r"[^\W_]+", re.UNICODE)
TOKEN = re.compile(r'(-?)"([^"]*)"?(\*?)|(-?)([^\s"]+)')
MAX_TERMS = 16
MAX_WORD = 64
# Private-use characters mark highlights in snippets; they are removed from indexed text.
MARK_START = "\ue000"
MARK_END = "\ue001"


@dataclass(frozen=True)
class Term:
    words: tuple[str, ...]
    prefix: bool = False
    negated: bool = False


def parse_query(text: str) -> list[Term]:
    terms: list[Term] = []
    for match in TOKEN.finditer(text or ""):
        if match.group(2) is not None:
            negated, raw, star = match.group(1) == "-", match.group(2) or "", match.group(3)
            prefix = bool(star)
        else:
            negated, raw = match.group(4) == "-", match.group(5)
            prefix = raw.endswith("*")
        words = tuple(w.lower()[:MAX_WORD] for w in WORD.findall(raw))
        if not words:
            continue
        term = Term(words, prefix, negated)
        if term not in terms:
            terms.append(term)
        if len(terms) >= MAX_TERMS:
            break
    return terms


def has_positive(terms: list[Term]) -> bool:
    return any(not t.negated for t in terms)


def _fts5_term(term: Term) -> str:
    return '"' + " ".join(term.words) + '"' + ("*" if term.prefix else "")


def to_fts5(terms: list[Term]) -> str | None:
    """An FTS5 MATCH expression, or None when nothing positive is asked for."""
    positive = [_fts5_term(t) for t in terms if not t.negated]
    if not positive:
        return None
    expression = "(" + " AND ".join(positive) + ")"
    for term in terms:
        if term.negated:
            expression += " NOT " + _fts5_term(term)
    return expression


def _ts_term(term: Term) -> str:
    parts = [f"'{w}'" for w in term.words]
    if term.prefix:
        parts[-1] += ":*"
    body = " <-> ".join(parts)
    body = f"({body})" if len(parts) > 1 else body
    return f"!{body}" if term.negated else body


def to_tsquery(terms: list[Term]) -> str | None:
    """A to_tsquery('english', ...) expression, or None when nothing positive is asked for."""
    if not has_positive(terms):
        return None
    return " & ".join(_ts_term(t) for t in terms)


def clean_indexed_text(text: str) -> str:
    return text.replace(MARK_START, "").replace(MARK_END, "")


def marked_to_html(text: str) -> str:
    """Escape a snippet, then turn the highlight markers into <mark> elements."""
    from html import escape

    return escape(text or "").replace(MARK_START, "<mark>").replace(MARK_END, "</mark>")
