"""The Masker: values become *** in whole strings and in streams, wherever the chunks
split them, and a stream releases exactly what masking the whole text gives."""

from hypothesis import given, settings
from hypothesis import strategies as st

from vault.masking import MASK, Masker
from vault.rules import masking_terms, name_problem, value_problem


def stream(masker: Masker, chunks: list[str]) -> str:
    return "".join(masker.feed(c) for c in chunks) + masker.flush()


def test_whole_text_is_masked_everywhere():
    m = Masker(["hunter22", "s3cr3t-token"])
    assert m.mask("a hunter22 b s3cr3t-token c hunter22") == "a *** b *** c ***"
    assert m.mask("nothing here") == "nothing here"


def test_the_longest_value_at_a_position_wins():
    m = Masker(["abcdef", "abcdefghij"])
    assert m.mask("xxabcdefghijyy") == "xx***yy"
    assert m.mask("xxabcdefyy") == "xx***yy"


def test_a_value_split_across_chunks_is_masked():
    m = Masker(["hunter22"])
    out = m.feed("password: hun")
    assert "hun" not in out  # the possible start of the value is kept back
    out += m.feed("ter22 and more\n")
    out += m.flush()
    assert out == "password: *** and more\n"


def test_held_text_is_released_when_it_cannot_start_a_value():
    m = Masker(["hunter22"])
    assert m.feed("hunt") == ""
    assert m.feed("ing season") == "hunting season"
    assert m.held == ""


def test_flush_releases_a_prefix_that_never_completed():
    m = Masker(["hunter22"])
    assert m.feed("ends with hunter2") == "ends with "
    assert m.flush() == "hunter2"


def test_a_value_split_into_single_characters():
    value = "correct-horse-battery"
    m = Masker([value])
    assert stream(m, list(f"<{value}>")) == f"<{MASK}>"


def test_no_values_masks_nothing_and_holds_nothing():
    m = Masker([])
    assert not m
    assert m.feed("abc") == "abc" and m.flush() == ""
    assert m.mask_value({"a": ["b"]}) == {"a": ["b"]}


def test_mask_value_masks_strings_in_json_like_values():
    m = Masker(["hunter22"])
    value = {"out": "pw hunter22", "n": 3, "list": ["hunter22", None, True], "hunter22": 1}
    assert m.mask_value(value) == {"out": "pw ***", "n": 3, "list": ["***", None, True], "***": 1}


def test_masking_terms_cover_stripped_values_and_lines_of_keys():
    key = "-----BEGIN KEY-----\nAAAABBBBCCCC\nshort\n-----END KEY-----\n"
    terms = masking_terms(key)
    assert key.strip() in terms and "AAAABBBBCCCC" in terms
    assert "short" not in terms  # too short to mask without hiding ordinary output
    assert masking_terms("  token-123\n") == ["token-123"]


def test_names_and_values_rules():
    assert name_problem("PYPI_TOKEN") is None and name_problem("_X1") is None
    for bad in ["pypi", "1ABC", "A-B", "", "A" * 101, "ABC\n", None]:
        assert name_problem(bad), bad
    assert value_problem("12345") and value_problem("  123  \n")
    assert value_problem("123456") is None
    assert value_problem("x" * (64 * 1024 + 1))
    assert value_problem("x" * (64 * 1024)) is None


# --- properties ---------------------------------------------------------------------------
ALPHABET = "ab*\n-"
values_st = st.lists(st.text(alphabet=ALPHABET, min_size=1, max_size=8), min_size=1, max_size=4)


@st.composite
def text_and_cuts(draw):
    values = draw(values_st)
    pieces = draw(
        st.lists(st.one_of(st.sampled_from(values), st.text(alphabet=ALPHABET, max_size=5)))
    )
    text = "".join(pieces)
    cuts = sorted(draw(st.lists(st.integers(0, len(text)), max_size=8)))
    chunks, last = [], 0
    for cut in [*cuts, len(text)]:
        chunks.append(text[last:cut])
        last = cut
    return values, text, chunks


def reference_mask(values, text):
    """Leftmost, longest-first, non-overlapping: the plain definition."""
    ordered = sorted(set(values), key=len, reverse=True)
    out, i = [], 0
    while i < len(text):
        for v in ordered:
            if text.startswith(v, i):
                out.append(MASK)
                i += len(v)
                break
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


@settings(max_examples=400)
@given(text_and_cuts())
def test_any_chunking_gives_the_same_text_as_masking_the_whole(case):
    values, text, chunks = case
    masker = Masker(values)
    assert masker.mask(text) == reference_mask(values, text)
    out = []
    for chunk in chunks:
        out.append(masker.feed(chunk))
        assert len(masker.held) <= max(map(len, values)) - 1
    assert "".join(out) + masker.flush() == masker.mask(text)


@settings(max_examples=300)
@given(text_and_cuts())
def test_no_value_survives_whatever_the_chunking(case):
    values, text, chunks = case
    # A value made of the mask's characters could be spelled by the masks themselves.
    values = [v for v in values if "*" not in v]
    masker = Masker(values)
    out = stream(masker, chunks)
    for value in values:
        assert value not in out


@given(st.lists(st.text(min_size=1, max_size=6), min_size=1, max_size=3), st.text(max_size=40))
def test_arbitrary_characters_are_taken_literally(values, text):
    """Values with regex syntax ('.', '*', '(') are escaped, not interpreted."""
    masker = Masker(values)
    assert masker.mask(text) == reference_mask(values, text)
    assert stream(masker, [text[: len(text) // 2], text[len(text) // 2 :]]) == masker.mask(text)
