from hypothesis import given
from hypothesis import strategies as st

from builds.cache_key import KEY_VERSION, digest, task_cache_key

BASE = dict(
    steps=[{"run": "make"}],
    env={"A": "1"},
    params={"v": "1"},
    inputs={"src/a": "h1"},
    dependencies={"dep": "k1"},
)


def test_same_inputs_same_key():
    assert task_cache_key(**BASE) == task_cache_key(**{k: v for k, v in BASE.items()})


def test_any_changed_input_changes_the_key():
    key = task_cache_key(**BASE)
    for field, value in [
        ("steps", [{"run": "make all"}]),
        ("env", {"A": "2"}),
        ("params", {"v": "2"}),
        ("inputs", {"src/a": "h2"}),
        ("dependencies", {"dep": "k2"}),
    ]:
        assert task_cache_key(**{**BASE, field: value}) != key, field


@given(st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=6))
def test_dict_order_does_not_matter(params):
    reordered = dict(reversed(list(params.items())))
    assert task_cache_key(**{**BASE, "params": params}) == task_cache_key(
        **{**BASE, "params": reordered}
    )


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=8,
)
str_maps = st.dictionaries(st.text(max_size=6), st.text(max_size=6), max_size=4)


param_maps = st.dictionaries(st.text(max_size=5), json_values, max_size=4)


@given(st.lists(json_values, max_size=3), str_maps, param_maps, str_maps, str_maps)
def test_the_key_from_parts_is_the_digest_of_the_whole(steps, env, params, inputs, deps):
    """The hot path joins pre-encoded parts; the key must be the same digest of the whole
    canonical object (so keys stay stable whichever way they are computed)."""
    whole = digest(
        {"v": KEY_VERSION, "steps": steps, "env": env, "params": params, "inputs": inputs,
         "deps": deps}
    )  # fmt: skip
    assert (
        task_cache_key(steps=steps, env=env, params=params, inputs=inputs, dependencies=deps)
        == whole
    )
