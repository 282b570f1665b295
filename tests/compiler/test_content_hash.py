"""The data fingerprint: exact over bytes, blind to names and times, cached by file identity."""

from __future__ import annotations

import json
import mmap
import os
from pathlib import Path

import pytest
import xxhash

from expspec.compiler import content_hash
from expspec.compiler.content_hash import content_digest, file_digest
from expspec.compiler.user_cache import cache_root


def _write(path: Path, data: bytes, mtime_ns: int | None = None) -> Path:
    path.write_bytes(data)
    if mtime_ns is not None:
        os.utime(path, ns=(mtime_ns, mtime_ns))
    return path


def _entries(cache: Path) -> list[Path]:
    return sorted(cache.glob("*.json"))


def test_per_file_digest_is_xxh3_128_of_the_whole_bytes(tmp_path, monkeypatch):
    # Small chunks so the file spans several mappings, and a tail shorter than one.
    monkeypatch.setattr(content_hash, "CHUNK_BYTES", mmap.ALLOCATIONGRANULARITY)
    data = os.urandom(3 * mmap.ALLOCATIONGRANULARITY + 123)
    path = _write(tmp_path / "a.bin", data)
    digest, identity = file_digest(path)
    assert digest == xxhash.xxh3_128(data).hexdigest()
    assert identity["size"] == len(data)
    assert file_digest(_write(tmp_path / "empty.bin", b""))[0] == xxhash.xxh3_128(b"").hexdigest()


def test_names_and_times_do_not_enter_the_digest(tmp_path):
    a = _write(tmp_path / "a.jsonl", b'{"text": "x"}\n', mtime_ns=1_000_000_000)
    b = _write(tmp_path / "sub-b.txt", b'{"text": "x"}\n', mtime_ns=2_000_000_000)
    assert content_digest([a], cache=None) == content_digest([b], cache=None)
    assert content_digest([a], cache=tmp_path / "c1") == content_digest([b], cache=tmp_path / "c2")


def test_one_byte_and_the_order_change_the_digest(tmp_path):
    a = _write(tmp_path / "a", b"hello world")
    b = _write(tmp_path / "b", b"hello World")
    c = _write(tmp_path / "c", b"")
    assert content_digest([a], cache=None) != content_digest([b], cache=None)
    assert content_digest([a, b], cache=None) != content_digest([b, a], cache=None)
    # An empty file still counts: it is part of the corpus as listed.
    assert content_digest([a, c], cache=None) != content_digest([a], cache=None)
    # Boundaries count: the same bytes split differently are different corpora.
    d = _write(tmp_path / "d", b"hello ")
    e = _write(tmp_path / "e", b"world")
    f = _write(tmp_path / "f", b"hello")
    g = _write(tmp_path / "g", b" world")
    assert content_digest([d, e], cache=None) != content_digest([f, g], cache=None)


def test_the_cache_sees_size_and_mtime_changes(tmp_path):
    cache = tmp_path / "cache"
    path = _write(tmp_path / "a", b"first", mtime_ns=1_000_000_000)
    first = content_digest([path], cache=cache)
    _write(path, b"second!", mtime_ns=1_000_000_000)  # size changed, mtime kept
    second = content_digest([path], cache=cache)
    _write(path, b"third!!", mtime_ns=3_000_000_000)  # same size, mtime changed
    third = content_digest([path], cache=cache)
    assert len({first, second, third}) == 3
    assert third == content_digest([path], cache=None)
    assert len(_entries(cache)) == 1  # one entry per path, overwritten


def test_a_same_size_edit_with_mtime_restored_needs_rehash(tmp_path):
    """The contract, as make and rsync: identity unchanged means content unchanged."""
    cache = tmp_path / "cache"
    path = _write(tmp_path / "a", b"abcdef", mtime_ns=5_000_000_000)
    before = content_digest([path], cache=cache)
    inode = os.stat(path).st_ino
    with open(path, "r+b") as handle:  # in place, so the inode stays too
        handle.write(b"X")
    os.utime(path, ns=(5_000_000_000, 5_000_000_000))
    assert os.stat(path).st_ino == inode
    assert content_digest([path], cache=cache) == before  # not detected: the cache trusted identity
    fresh = content_digest([path], cache=cache, rehash=True)
    assert fresh != before
    assert fresh == content_digest([path], cache=None)
    assert content_digest([path], cache=cache) == fresh  # rehash refreshed the entry


def test_the_second_call_reads_the_cache_not_the_file(tmp_path):
    cache = tmp_path / "cache"
    path = _write(tmp_path / "a", b"some corpus bytes")
    real = content_digest([path], cache=cache)
    (entry,) = _entries(cache)
    record = json.loads(entry.read_text())
    assert record["digest"] == xxhash.xxh3_128(b"some corpus bytes").hexdigest()
    sentinel = "0123456789abcdef" * 2
    record["digest"] = sentinel
    entry.write_text(json.dumps(record))
    expected = xxhash.xxh3_128()
    expected.update(b"expspec-content-digest-1\n")
    expected.update(f"17 {sentinel}\n".encode())
    cached = content_digest([path], cache=cache)
    assert cached == expected.hexdigest() != real
    assert content_digest([path], cache=cache, rehash=True) == real
    assert json.loads(entry.read_text())["digest"] != sentinel


@pytest.mark.parametrize(
    "damage",
    [b"", b"{not json", b"[]", b'{"format": "expspec-content-digest-1"}', None],
    ids=["empty", "syntax", "not-object", "no-digest", "bad-digest"],
)
def test_a_damaged_entry_is_ignored_and_rewritten(tmp_path, damage):
    cache = tmp_path / "cache"
    path = _write(tmp_path / "a", b"payload")
    real = content_digest([path], cache=cache)
    (entry,) = _entries(cache)
    if damage is None:
        record = json.loads(entry.read_text())
        record["digest"] = "not-hex"
        entry.write_text(json.dumps(record))
    else:
        entry.write_bytes(damage)
    assert content_digest([path], cache=cache) == real
    assert json.loads(entry.read_text())["digest"] == xxhash.xxh3_128(b"payload").hexdigest()
    assert not list(cache.glob(".entry-*"))  # no temporary file left behind


def test_a_missing_file_raises_oserror_and_writes_nothing(tmp_path):
    cache = tmp_path / "cache"
    with pytest.raises(FileNotFoundError):
        content_digest([tmp_path / "absent"], cache=cache)
    assert not cache.exists()


def test_an_unwritable_cache_costs_time_not_correctness(tmp_path):
    blocker = _write(tmp_path / "blocker", b"a file where the cache folder should be")
    path = _write(tmp_path / "a", b"payload")
    assert content_digest([path], cache=blocker / "cache") == content_digest([path], cache=None)


def test_cache_root_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("EXPSPEC_CACHE_DIR", str(tmp_path / "own"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "own"
    monkeypatch.delenv("EXPSPEC_CACHE_DIR")
    assert cache_root() == tmp_path / "xdg" / "expspec"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_root() == tmp_path / "home" / ".cache" / "expspec"
    assert not (tmp_path / "home").exists()  # asking for the path creates nothing
