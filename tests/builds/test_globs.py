"""The path rules of `artifacts:` and `inputs:` (pure: no disk, no database)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from builds.artifacts import ArtifactError, input_hashes, received_files
from builds.globs import matches, path_problem, pattern_problem, pick


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        ("report.xml", "report.xml", True),
        ("src", "src/app.py", True),  # a directory takes every file under it
        ("src/", "src/pkg/mod.py", True),
        ("dist/*.tgz", "dist/app-1.tgz", True),
        ("dist/*.tgz", "dist/old/app-1.tgz", False),  # * stays within one directory
        ("dist/**", "dist/old/app-1.tgz", True),
        ("**/*.py", "app.py", True),  # ** may be no directory at all
        ("**/*.py", "a/b/c.py", True),
        ("*.py", "a/b.py", False),
        ("file?.txt", "file1.txt", True),
        ("[ab].txt", "b.txt", True),
        ("[!ab].txt", "b.txt", False),
        ("./out.txt", "out.txt", True),
        ("src", "srcx/app.py", False),
        ("a.b", "axb", False),  # a dot is a dot
    ],
)
def test_glob_semantics(pattern, path, expected):
    assert matches(pattern, path) is expected


@pytest.mark.parametrize(
    "pattern", ["../secret", "a/../../b", "/etc/passwd", "~/.ssh/id_rsa", "C:\\x", "a\\b", ""]
)
def test_patterns_that_leave_the_workspace_are_refused(pattern):
    assert pattern_problem(pattern)


@pytest.mark.parametrize("path", ["../x", "/abs", "a//b", "a/./b", "a/../b", "", "a\\b"])
def test_download_paths_must_be_plain(path):
    assert path_problem(path)


@given(st.lists(st.from_regex(r"[a-z]{1,4}(/[a-z]{1,4}){0,3}", fullmatch=True), max_size=8))
def test_a_path_always_picks_itself_and_star_star_picks_everything(paths):
    picked = pick(["**", *paths], paths)
    assert picked["**"] == sorted(paths)
    for path in paths:
        assert path in picked[path]


def test_inputs_hash_the_given_files_by_content():
    given = received_files(
        ["checkout", "gen"],
        {
            "checkout": [{"path": "src/a.py", "sha256": "1" * 64, "size": 1, "mode": 0o644}],
            "gen": [{"path": "data.txt", "sha256": "2" * 64, "size": 1, "mode": 0o644}],
        },
    )
    assert input_hashes(["src/*.py", "data.txt"], given) == {
        "src/a.py": "1" * 64,
        "data.txt": "2" * 64,
    }


def test_an_input_that_picks_nothing_is_an_error_naming_the_pattern():
    with pytest.raises(ArtifactError, match="'missing.txt' matches no file"):
        input_hashes(["missing.txt"], {})


def test_a_later_need_replaces_an_earlier_ones_file_at_the_same_path():
    record = {"path": "x", "size": 1, "mode": 0o644}
    files = received_files(
        ["a", "b"], {"a": [{**record, "sha256": "a" * 64}], "b": [{**record, "sha256": "b" * 64}]}
    )
    assert files["x"]["sha256"] == "b" * 64


@pytest.mark.parametrize("pattern", ["[z-a]", "a[!]b"])
def test_a_pattern_that_cannot_compile_is_refused_when_saved(pattern):
    assert "not a valid pattern" in pattern_problem(pattern)


def test_brackets_and_dot_mean_what_they_mean_in_a_shell():
    assert matches("[^a]x", "^x") and not matches("[^a]x", "bx")  # ^ is literal, as in fnmatch
    assert matches(".", "any/file.txt")  # the whole workspace
