"""Markdown to safe HTML: markdown-it-py, Pygments for fenced code, then bleach.

The sanitiser runs last, over everything (raw HTML in the Markdown included), with an
allow-list: no script, no event handler, no style, no iframe/object/svg, and URLs only
with http, https or mailto (or relative). Bump RENDERER_VERSION when the output changes:
cached HTML of older versions is re-rendered on read.
"""

from __future__ import annotations

import re
from html import escape

import bleach
from pygments import highlight as pygments_highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_lexer_by_name
from pygments.util import ClassNotFound

from .markdown import parser, split_front_matter

RENDERER_VERSION = 1

ALLOWED_TAGS = frozenset(
    {
        "a", "abbr", "b", "blockquote", "br", "code", "dd", "del", "details", "div", "dl",
        "dt", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "kbd", "li", "mark",
        "ol", "p", "pre", "s", "span", "strong", "sub", "summary", "sup", "table", "tbody",
        "td", "th", "thead", "tr", "ul",
    }
)  # fmt: skip
ALLOWED_PROTOCOLS = frozenset({"http", "https", "mailto"})
_CLASS_VALUE = re.compile(r"^[a-zA-Z0-9 _-]{0,100}$")
_ID_VALUE = re.compile(r"^[\w-]{1,100}$", re.UNICODE)
_CODE_FORMATTER = HtmlFormatter(nowrap=True)


def _allowed_attribute(tag: str, name: str, value: str) -> bool:
    if name == "class":
        return tag in {"code", "pre", "span", "div", "th", "td"} and bool(_CLASS_VALUE.match(value))
    if name == "id":
        return tag in {"h1", "h2", "h3", "h4", "h5", "h6"} and bool(_ID_VALUE.match(value))
    allowed = {
        "a": {"href", "title"},
        "img": {"src", "alt", "title"},
        "abbr": {"title"},
        "ol": {"start"},
        "details": {"open"},
    }
    return name in allowed.get(tag, set())


def highlight_code(code: str, lang: str, attrs: str) -> str:
    """Fenced code: Pygments spans (classes only) inside <pre><code>."""
    name = (lang or "").split()[0] if lang else ""
    try:
        lexer = get_lexer_by_name(name) if name else None
    except ClassNotFound:
        lexer = None
    css_lang = re.sub(r"[^a-zA-Z0-9_-]", "", name)[:30]
    code_class = f' class="language-{css_lang}"' if css_lang else ""
    inner = pygments_highlight(code, lexer, _CODE_FORMATTER) if lexer else escape(code)
    return f'<pre class="highlight"><code{code_class}>{inner}</code></pre>\n'


def sanitize(html: str) -> str:
    return bleach.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes=_allowed_attribute,
        protocols=ALLOWED_PROTOCOLS,
        strip=True,
        strip_comments=True,
    )


def _rewrite_docs_links(html: str, link_base: str) -> str:
    """`/docs/x` links point at the project's reader pages."""
    if not link_base:
        return html
    return re.sub(r'(<a href=")/docs/', rf"\1{link_base}", html)


def render_markdown(body: str, *, link_base: str = "") -> str:
    """Render a document body (front-matter is not part of the page)."""
    content = split_front_matter(body).content
    html = parser(highlight_code).render(content)
    return _rewrite_docs_links(sanitize(html), link_base)
