"""Field descriptions come from the string under each field, as pydantic reads them."""

from __future__ import annotations

import sys

from expspec.spec.docstrings import attribute_docstrings

SOURCE = '''
class Outer:
    """Class docstring: not an attribute's."""

    a: int = 1
    """About a.
        Indented continuation."""
    b: int = 2
    plain = 3
    """Under a plain assignment: not a field's."""
    c: int

    def method(self) -> None:
        """Not an attribute's."""

    d: int = 4
    """About d."""

    class Inner:
        e: int
        """About e."""
'''


def test_reads_the_string_directly_under_each_field(tmp_path, monkeypatch):
    (tmp_path / "docstring_sample.py").write_text(SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    __import__("docstring_sample")
    try:
        docs = attribute_docstrings("docstring_sample")
    finally:
        del sys.modules["docstring_sample"]
    assert docs == {
        "Outer": {"a": "About a.\nIndented continuation.", "d": "About d."},
        "Outer.Inner": {"e": "About e."},
    }


def test_a_module_without_source_has_none():
    assert attribute_docstrings("sys") == {}
    assert attribute_docstrings("no.such.module") == {}
