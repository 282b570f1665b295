"""Safetensors weight files: round trips, the reference package's own files, shards, no copies, damage."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

from expspec.errors import BadInput
from expspec.runtime.models.safetensors_files import (
    SafetensorsFolder,
    WeightFileError,
    weight_files,
    write_safetensors,
    write_sharded,
)


def _tensors() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "model.embed_tokens.weight": rng.standard_normal((7, 4)).astype(np.float32),
        "model.norm.weight": rng.standard_normal(4).astype(np.float16),
        "lm_head.weight": rng.standard_normal((4, 7)).astype(ml_dtypes.bfloat16),
        "position_ids": np.arange(5, dtype=np.int64).reshape(1, 5),
        "scalar": np.array(2.5, np.float32),
        "empty": np.zeros((0, 3), np.float32),
        "mask": np.array([True, False, True]),
    }


def _write_raw(path: Path, header: dict, data: bytes) -> None:
    """A file laid out by hand, for headers the writer would never produce."""
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)


def test_round_trip_keeps_values_dtypes_and_shapes(tmp_path: Path) -> None:
    tensors = _tensors()
    write_safetensors(tmp_path / "model.safetensors", tensors, {"format": "pt"})
    with SafetensorsFolder(tmp_path) as folder:
        assert folder.names() == sorted(tensors)
        for name, array in tensors.items():
            got = folder.read(name)
            assert folder.dtype(name) == array.dtype == got.dtype, name
            assert folder.shape(name) == array.shape == got.shape, name
            assert folder.file_of(name) == tmp_path / "model.safetensors"
            np.testing.assert_array_equal(got, array)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]  # no temp file left


def test_reference_package_reads_ours_and_we_read_its_files_byte_for_byte(tmp_path: Path) -> None:
    st = pytest.importorskip("safetensors.numpy")
    tensors = {name: a for name, a in _tensors().items() if name != "empty"}
    tensors["big_endian"] = np.arange(6, dtype=">f4").reshape(2, 3)
    ours, theirs = tmp_path / "ours.safetensors", tmp_path / "theirs.safetensors"
    write_safetensors(ours, tensors, {"format": "pt"})
    # The reference refuses big-endian arrays; ours converts them, so it gets the converted copy.
    st.save_file({**tensors, "big_endian": tensors["big_endian"].astype("<f4")}, theirs, {"format": "pt"})
    assert ours.read_bytes() == theirs.read_bytes()
    loaded = st.load_file(ours)
    with SafetensorsFolder(theirs) as folder:
        for name, array in tensors.items():
            np.testing.assert_array_equal(loaded[name], array)
            np.testing.assert_array_equal(folder.read(name), array)


def test_sharded_write_names_every_tensor_in_its_index(tmp_path: Path) -> None:
    tensors = _tensors()
    files = write_sharded(tmp_path, tensors, max_shard_bytes=64, metadata={"format": "pt"})
    assert len(files) > 2 and [p.name for p in files] == [
        f"model-{i:05d}-of-{len(files):05d}.safetensors" for i in range(1, len(files) + 1)
    ]
    assert weight_files(tmp_path) == tuple(files)
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert index["metadata"]["total_size"] == sum(a.nbytes for a in tensors.values())
    assert sorted(index["weight_map"]) == sorted(tensors)
    with SafetensorsFolder(tmp_path) as folder:
        for name, array in tensors.items():
            assert folder.file_of(name).name == index["weight_map"][name]
            np.testing.assert_array_equal(folder.read(name), array)
    # Rewriting the folder with everything in one file leaves no stale shards behind.
    assert write_sharded(tmp_path, tensors, max_shard_bytes=1 << 20) == [tmp_path / "model.safetensors"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]


def test_reading_maps_the_file_instead_of_copying_it(tmp_path: Path) -> None:
    n = 8 << 20  # 32 MiB of float32
    write_safetensors(tmp_path / "model.safetensors", {"w": np.ones(n, np.float32), "b": np.zeros(3, np.float32)})
    rss = _rss_bytes()
    with SafetensorsFolder(tmp_path) as folder:
        first, again = folder.read("w"), folder.read("w")
        assert isinstance(first, np.memmap) and not first.flags.writeable
        assert np.shares_memory(first, again)  # both are views of one mapping
        assert float(first[-1]) == 1.0
        if rss is not None:
            assert _rss_bytes() - rss < n  # far below the tensor's 4n bytes
    with pytest.raises(ValueError):
        first[0] = 2.0


def _rss_bytes() -> int | None:
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except OSError:
        return None
    return pages * os.sysconf("SC_PAGE_SIZE")


def _assert_names(err: pytest.ExceptionInfo[WeightFileError], path: Path, *words: str) -> None:
    message = str(err.value)
    assert isinstance(err.value, BadInput)
    assert "\n" not in message and str(path) in message, message
    for word in words:
        assert word in message, message


def test_a_truncated_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    write_safetensors(path, _tensors())
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(WeightFileError) as err:
        SafetensorsFolder(tmp_path)
    _assert_names(err, path, "truncated")


def test_a_corrupt_header_length_is_named(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    write_safetensors(path, _tensors())
    path.write_bytes(struct.pack("<Q", 1 << 40) + path.read_bytes()[8:])
    with pytest.raises(WeightFileError) as err:
        SafetensorsFolder(tmp_path)
    _assert_names(err, path, "header length")
    path.write_bytes(b"\x02\x00\x00\x00\x00\x00\x00\x00[]")
    with pytest.raises(WeightFileError) as err:
        SafetensorsFolder(path)
    _assert_names(err, path, "JSON object")


def test_an_index_naming_a_missing_shard_is_named(tmp_path: Path) -> None:
    write_sharded(tmp_path, _tensors(), max_shard_bytes=64)
    index_path = tmp_path / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    index["weight_map"]["scalar"] = "model-00009-of-00009.safetensors"
    index_path.write_text(json.dumps(index))
    for call in (weight_files, SafetensorsFolder):
        with pytest.raises(WeightFileError) as err:
            call(tmp_path)
        _assert_names(err, index_path, "model-00009-of-00009.safetensors")


def test_an_index_that_misplaces_a_tensor_or_cannot_be_read_is_named(tmp_path: Path) -> None:
    files = write_sharded(tmp_path, _tensors(), max_shard_bytes=64)
    index_path = tmp_path / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    wrong = next(p.name for p in files if p.name != index["weight_map"]["scalar"])
    index["weight_map"]["scalar"] = wrong
    index_path.write_text(json.dumps(index))
    with pytest.raises(WeightFileError) as err:
        SafetensorsFolder(tmp_path)
    _assert_names(err, index_path, "'scalar'", wrong)
    index_path.write_text("{not json")
    with pytest.raises(WeightFileError) as err:
        weight_files(tmp_path)
    _assert_names(err, index_path)
    index_path.write_text(json.dumps({"weight_map": {"a": "../elsewhere.safetensors"}}))
    with pytest.raises(WeightFileError) as err:
        weight_files(tmp_path)
    _assert_names(err, index_path, "inside the folder")


def test_a_folder_without_weights_is_named(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(WeightFileError) as err:
        SafetensorsFolder(tmp_path)
    _assert_names(err, tmp_path, "model.safetensors")


@pytest.mark.parametrize(
    ("offsets", "words"),
    [
        ({"a": [0, 8], "b": [4, 12]}, ["'b'", "overlap"]),
        ({"a": [0, 8], "b": [12, 20]}, ["'b'", "gap"]),
        ({"a": [0, 8], "b": [8, 16]}, ["truncated"]),  # b reaches past the 12 data bytes
        ({"a": [0, 8], "b": [8, 12]}, ["do not hold shape"]),
    ],
)
def test_bad_offsets_are_named(tmp_path: Path, offsets: dict, words: list[str]) -> None:
    path = tmp_path / "model.safetensors"
    header = {name: {"dtype": "F32", "shape": [2], "data_offsets": span} for name, span in offsets.items()}
    _write_raw(path, header, bytes(12))
    with pytest.raises(WeightFileError) as err:
        SafetensorsFolder(tmp_path)
    _assert_names(err, path, *words)


def test_a_tensor_in_two_shards_is_named(tmp_path: Path) -> None:
    write_safetensors(tmp_path / "model-00001-of-00002.safetensors", {"a": np.ones(2, np.float32)})
    write_safetensors(tmp_path / "model-00002-of-00002.safetensors", {"a": np.ones(2, np.float32)})
    weight_map = {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    with pytest.raises(WeightFileError) as err:
        SafetensorsFolder(tmp_path)
    _assert_names(err, tmp_path / "model-00002-of-00002.safetensors", "'a'", "model-00001-of-00002.safetensors")


def test_an_unstorable_tensor_writes_nothing(tmp_path: Path) -> None:
    tensors = {"ok": np.ones(3, np.float32), "text": np.array(["a", "b"])}
    with pytest.raises(WeightFileError) as err:
        write_sharded(tmp_path / "out", tensors, max_shard_bytes=4)
    _assert_names(err, tmp_path / "out", "'text'")
    assert not (tmp_path / "out").exists()
