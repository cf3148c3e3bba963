"""Pure Markdown helpers shared by validation and rendering (no Django, no database).

One parser configuration (CommonMark + tables + strikethrough), one heading-anchor rule
and one front-matter splitter, so the anchors a link is checked against are exactly the
`id`s the rendered page carries, and the lines in messages are the lines of the editor.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

from markdown_it import MarkdownIt
from markdown_it.rules_core import StateCore
from markdown_it.token import Token

FRONT_MATTER_OPEN = "---"
FRONT_MATTER_CLOSE = ("---", "...")
_NOT_ANCHOR_CHARS = re.compile(r"[^\w\- ]", re.UNICODE)


@dataclass
class Split:
    """The raw body cut into front-matter text and Markdown content."""

    front_matter: str | None  # YAML text, None when the body has none
    front_matter_line: int  # 1-based line of the first YAML line
    content: str
    content_offset: int  # lines before the content (add to 0-based markdown-it lines + 1)
    unclosed: bool = False


def split_front_matter(body: str) -> Split:
    lines = body.split("\n")
    if not lines or lines[0].rstrip() != FRONT_MATTER_OPEN:
        return Split(None, 0, body, 0)
    for index in range(1, len(lines)):
        if lines[index].rstrip() in FRONT_MATTER_CLOSE:
            return Split(
                front_matter="\n".join(lines[1:index]),
                front_matter_line=2,
                content="\n".join(lines[index + 1 :]),
                content_offset=index + 1,
            )
    return Split(None, 0, body, 0, unclosed=True)


def slugify(text: str) -> str:
    """GitHub-style anchor: lower case, punctuation dropped, spaces to dashes."""
    slug = _NOT_ANCHOR_CHARS.sub("", text.strip().lower()).replace(" ", "-")
    return slug or "section"


def inline_text(token: Token) -> str:
    """The plain text of an inline token (markup removed)."""
    if not token.children:
        return token.content
    parts = []
    for child in token.children:
        if child.type in ("text", "code_inline", "html_inline"):
            parts.append(child.content if child.type != "html_inline" else "")
        elif child.type in ("softbreak", "hardbreak"):
            parts.append(" ")
        elif child.type == "image":
            parts.append(inline_text(child))
    return "".join(parts)


class AnchorNamer:
    """Unique anchors in document order: `setup`, `setup-1`, `setup-2`..."""

    def __init__(self) -> None:
        self.seen: dict[str, int] = {}

    def __call__(self, text: str) -> str:
        base = slugify(text)
        count = self.seen.get(base)
        if count is None:
            self.seen[base] = 0
            return base
        count += 1
        self.seen[base] = count
        candidate = f"{base}-{count}"
        self.seen.setdefault(candidate, 0)
        return candidate


def _heading_ids(state: StateCore) -> None:
    namer = AnchorNamer()
    tokens = state.tokens
    for index, token in enumerate(tokens):
        if token.type == "heading_open" and index + 1 < len(tokens):
            token.attrSet("id", namer(inline_text(tokens[index + 1])))
        elif token.type in ("th_open", "td_open"):
            # Tables align with `style`; the sanitiser allows no style, so use a class.
            style = token.attrGet("style") or ""
            token.attrs.pop("style", None)
            match = re.search(r"text-align:(left|right|center)", str(style))
            if match:
                token.attrSet("class", f"align-{match.group(1)}")


@lru_cache(maxsize=4)
def parser(highlight=None) -> MarkdownIt:
    options = {"html": True, "linkify": False, "typographer": False}
    if highlight is not None:
        options["highlight"] = highlight
    md = MarkdownIt("commonmark", options).enable(["table", "strikethrough"])
    md.core.ruler.push("buildsite_heading_ids", _heading_ids)
    return md


@dataclass
class Heading:
    level: int
    text: str
    anchor: str
    line: int


@dataclass
class Link:
    href: str
    line: int
    is_image: bool = False
    text: str = ""


@dataclass
class Outline:
    headings: list[Heading] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)


def _find_line(lines: list[str], start: int, end: int, needle: str) -> int | None:
    for number in range(start, min(end, len(lines))):
        if needle and needle in lines[number]:
            return number
    return None


def outline(content: str, offset: int = 0) -> Outline:
    """Headings and links of `content` with 1-based lines of the whole body."""
    result = Outline()
    tokens = parser().parse(content)
    lines = content.split("\n")
    for index, token in enumerate(tokens):
        if token.type == "heading_open":
            inline = tokens[index + 1]
            result.headings.append(
                Heading(
                    level=int(token.tag[1]),
                    text=inline_text(inline).strip(),
                    anchor=str(token.attrGet("id") or ""),
                    line=(token.map[0] if token.map else 0) + 1 + offset,
                )
            )
        if token.type != "inline" or not token.children:
            continue
        start, end = token.map if token.map else (0, 1)
        cursor = start
        children = token.children
        for pos, child in enumerate(children):
            if child.type not in ("link_open", "image"):
                continue
            attr = "href" if child.type == "link_open" else "src"
            href = str(child.attrGet(attr) or "")
            text = (
                inline_text(child)
                if child.type == "image"
                else "".join(
                    c.content for c in children[pos + 1 :][:3] if c.type in ("text", "code_inline")
                )
            )
            found = _find_line(lines, cursor, end, href) or _find_line(lines, cursor, end, text)
            if found is not None:
                cursor = found
            result.links.append(
                Link(
                    href=href,
                    line=cursor + 1 + offset,
                    is_image=child.type == "image",
                    text=text,
                )
            )
    return result
