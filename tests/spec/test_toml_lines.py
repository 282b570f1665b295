"""The key locator: exact lines on tricky but valid TOML."""

from __future__ import annotations

import tomllib

import pytest

from expspec.spec.toml_lines import key_lines
from tests.conftest import EXAMPLE_SPECS

TRICKY = '''\
# [not.a.table] = 1
title = "a = [b]"            # 2
text = """
[fake]
key = 1
"""                          # 3-6
lit = \'\'\'x = 'y' \'\'\'      # 7
"quoted.key" = 1             # 8
dotted.inner = 2             # 9
arr = [                      # 10
  1,                         # 11
  [2, 3],                    # 12
  { a = 1 },                 # 13
]
[table]                      # 15
inline = { x = 1, y = { z = "}" } }   # 16
esc = "quote \\" inside = 3" # 17
[[items]]                    # 18
name = "first"               # 19
[[items]]                    # 20
name = "second"              # 21
[table.sub]                  # 22
'k' = 5                      # 23
'''


def test_tricky_document_is_valid_toml():
    tomllib.loads(TRICKY)


@pytest.mark.parametrize(
    "path,line",
    [
        (("title",), 2),
        (("text",), 3),
        (("lit",), 7),
        (("quoted.key",), 8),
        (("dotted", "inner"), 9),
        (("arr",), 10),
        (("arr", 1), 12),
        (("arr", 2, "a"), 13),
        (("table",), 15),
        (("table", "inline", "y", "z"), 16),
        (("table", "esc"), 17),
        (("items", 0, "name"), 19),
        (("items", 1, "name"), 21),
        (("table", "sub", "k"), 23),
    ],
)
def test_lines_of_tricky_keys(path, line):
    assert key_lines(TRICKY)[path] == line


def test_strings_hide_fake_keys():
    lines = key_lines(TRICKY)
    assert ("fake",) not in lines and ("key",) not in lines and ("not",) not in lines


def _paths(value, prefix=()):
    if isinstance(value, dict):
        for key, item in value.items():
            yield (*prefix, key)
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield (*prefix, index)
            yield from _paths(item, (*prefix, index))


@pytest.mark.parametrize("spec", EXAMPLE_SPECS, ids=lambda p: p.name)
def test_every_key_of_every_example_is_located_on_a_line_naming_it(spec):
    text = spec.read_text()
    lines = key_lines(text)
    rows = text.splitlines()
    for path in _paths(tomllib.loads(text)):
        assert path in lines, path
        last = path[-1]
        if isinstance(last, str):
            assert last in rows[lines[path] - 1], (path, rows[lines[path] - 1])


def test_unfollowable_text_degrades_to_what_was_found():
    assert key_lines('a = 1\nb = "unterminated') == {("a",): 1, ("b",): 2}
