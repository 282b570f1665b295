"""Reading real Orbax checkpoints of a real `exp run`, and measuring how far states are apart."""

from __future__ import annotations

import logging
import math
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import ml_dtypes
import numpy as np
import pytest

from expspec.audit.checkpoints import CheckpointUnreadable, checkpoint_steps, read_checkpoint
from expspec.audit.distance import LeafDistance, describe, leaf_distances, ulp_distance
from expspec.runtime.engine.hashing import full_hash, leaf_paths

ROOT = Path(__file__).resolve().parents[2]
KERNEL = "params/layers/1/kernel"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """One short digits run with checkpoints at steps 3 and 6, shared by the module; treat as read-only."""
    out = tmp_path_factory.mktemp("run")
    exe = Path(sys.executable).with_name("exp")
    args = ["run", "examples/digits_mlp.toml", "train.steps=6", "checkpoint.every_steps=3", "train.eval_every=0"]
    subprocess.run([str(exe), *args, "--run-dir", str(out), "-q"], cwd=ROOT, check=True, capture_output=True)
    return out


@pytest.fixture
def run_copy(run_dir: Path, tmp_path: Path) -> Path:
    """A private copy for tests that damage the checkpoints."""
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    return copy


@pytest.fixture(scope="module")
def states(run_dir: Path) -> dict[int, dict]:
    return {step: read_checkpoint(run_dir / "checkpoints", step).state for step in (3, 6)}


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


def _leaf(tree: dict, path: str) -> np.ndarray:
    for part in path.split("/"):
        tree = tree[part]
    return tree


def _assert_one_line(error: CheckpointUnreadable, step: int) -> None:
    assert error.step == step
    assert error.reason and "\n" not in error.reason and len(error.reason) <= 200
    assert "\n" not in str(error)


# --- reading checkpoints ---------------------------------------------------


def test_steps_are_the_finished_checkpoints(run_dir: Path, tmp_path: Path) -> None:
    assert checkpoint_steps(run_dir / "checkpoints") == [3, 6]
    assert checkpoint_steps(tmp_path / "missing") == []
    (tmp_path / "empty").mkdir()
    assert checkpoint_steps(tmp_path / "empty") == []
    assert not list((tmp_path / "empty").iterdir())  # opening it created nothing


@pytest.mark.parametrize("step", [3, 6])
def test_read_state_hashes_to_its_record(run_dir: Path, step: int) -> None:
    saved = read_checkpoint(run_dir / "checkpoints", step)
    assert saved.step == step and saved.meta["step"] == step
    assert {"params", "opt", "step"} <= saved.state.keys()
    assert full_hash(saved.state) == saved.meta["full_hash"]
    assert int(saved.state["step"]) == step
    assert isinstance(_leaf(saved.state, KERNEL), np.ndarray)


def test_reading_changes_nothing_on_disk(run_dir: Path) -> None:
    before = _snapshot(run_dir)
    assert any(name.endswith("commit_success.txt") for name in before)
    steps = checkpoint_steps(run_dir / "checkpoints")
    for step in steps:
        read_checkpoint(run_dir / "checkpoints", step)
    with pytest.raises(CheckpointUnreadable):
        read_checkpoint(run_dir / "checkpoints", 99)
    assert _snapshot(run_dir) == before


def test_reading_is_quiet(run_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    checkpoint_steps(run_dir / "checkpoints")
    read_checkpoint(run_dir / "checkpoints", 3)
    assert [r for r in caplog.records if r.name == "absl" and r.levelno >= logging.WARNING] == []
    assert logging.getLogger("absl").level == logging.NOTSET  # the suppression is undone afterwards


def test_orbax_tmp_dir_is_not_a_checkpoint(run_copy: Path) -> None:
    tmp = run_copy / "checkpoints" / "9.orbax-checkpoint-tmp-123"
    tmp.mkdir()
    (tmp / "partial").write_text("half written")
    assert checkpoint_steps(run_copy / "checkpoints") == [3, 6]
    with pytest.raises(CheckpointUnreadable) as caught:
        read_checkpoint(run_copy / "checkpoints", 9)
    _assert_one_line(caught.value, 9)
    assert (tmp / "partial").read_text() == "half written"  # read-only: not cleaned up


def test_missing_step_is_unreadable(run_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(CheckpointUnreadable) as caught:
        read_checkpoint(run_dir / "checkpoints", 4)
    _assert_one_line(caught.value, 4)
    assert "4" in caught.value.reason
    with pytest.raises(CheckpointUnreadable) as caught:
        read_checkpoint(tmp_path / "nowhere", 3)
    _assert_one_line(caught.value, 3)
    assert not (tmp_path / "nowhere").exists()


def test_corrupt_bytes_are_unreadable(run_copy: Path) -> None:
    state_dir = run_copy / "checkpoints" / "3" / "state"
    largest = max((p for p in state_dir.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    data = bytearray(largest.read_bytes())
    mid = len(data) // 2
    data[mid : mid + 64] = bytes(b ^ 0xFF for b in data[mid : mid + 64])
    largest.write_bytes(bytes(data))
    with pytest.raises(CheckpointUnreadable) as caught:
        read_checkpoint(run_copy / "checkpoints", 3)
    _assert_one_line(caught.value, 3)
    # The other checkpoint is untouched and still proves itself.
    assert read_checkpoint(run_copy / "checkpoints", 6).step == 6


def test_bad_metadata_is_unreadable(run_copy: Path) -> None:
    meta = run_copy / "checkpoints" / "6" / "meta" / "metadata"
    meta.write_text("{not json")
    with pytest.raises(CheckpointUnreadable) as caught:
        read_checkpoint(run_copy / "checkpoints", 6)
    _assert_one_line(caught.value, 6)


# --- ulp distance ------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float16, ml_dtypes.bfloat16, np.float32, np.float64])
def test_adjacent_floats_are_one_ulp_apart(dtype) -> None:
    x = np.array([1.0, -3.5, 0.0, 1e-3, -0.0, np.inf * -1], dtype=dtype)
    up = np.nextafter(x, np.array(np.inf, dtype=dtype))
    assert np.all(up.view(f"u{x.dtype.itemsize}") != x.view(f"u{x.dtype.itemsize}"))
    assert ulp_distance(x, up).tolist() == [1] * x.size
    assert ulp_distance(up, x).tolist() == [1] * x.size


@pytest.mark.parametrize("dtype", [np.float16, ml_dtypes.bfloat16, np.float32, np.float64])
def test_signed_zeros_and_symmetry(dtype) -> None:
    pz, nz = np.array([0.0], dtype), np.array([-0.0], dtype)
    assert nz.view(f"u{pz.dtype.itemsize}")[0] != pz.view(f"u{pz.dtype.itemsize}")[0]
    assert ulp_distance(pz, nz).tolist() == [0]
    x = np.array([2.5, 1e-2], dtype)
    d = ulp_distance(-x, x)
    assert np.all(d > 0)
    assert d.tolist() == ulp_distance(x, -x).tolist()
    assert d.tolist() == (2 * ulp_distance(x, pz)).tolist()  # across zero: both halves


def test_ulp_scale_and_wide_types() -> None:
    assert int(ulp_distance(np.float32(1.0), np.float32(2.0))) == 2**23
    assert int(ulp_distance(np.float64(1.0), np.float64(2.0))) == 2**52
    big = np.finfo(np.float64).max
    assert int(ulp_distance(np.array([-big]), np.array([big]))[0]) == 2 * (2**63 - 2**52 - 1)
    lo, hi = np.iinfo(np.int64).min, np.iinfo(np.int64).max
    assert int(ulp_distance(np.array([lo]), np.array([hi]))[0]) == 2**64 - 1
    assert ulp_distance(np.array([3, -2], np.int8), np.array([-5, 7], np.int8)).tolist() == [8, 9]
    assert ulp_distance(np.array([0], np.uint64), np.array([2**64 - 1], np.uint64)).tolist() == [2**64 - 1]
    assert ulp_distance(np.array([True, False]), np.array([False, False])).tolist() == [1, 0]
    with pytest.raises(TypeError):
        ulp_distance(np.float32(1), np.float64(1))


# --- leaf distances ----------------------------------------------------------


def test_two_checkpoints_differ_in_params(states: dict[int, dict]) -> None:
    found = {d.path: d for d in leaf_distances(states[3], states[6])}
    params = [p for p in leaf_paths(states[3]) if p.startswith("params/")]
    assert params and set(params) <= found.keys()
    assert "step" in found and found["step"].max_abs == 3.0
    for path in params:
        d = found[path]
        assert d.differing > 0 and d.max_ulp > 0 and d.first_index is not None
        assert 0 < d.max_abs < 10 and math.isfinite(d.max_abs)
        a, b = _leaf(states[3], path), _leaf(states[6], path)
        assert d.max_abs == pytest.approx(float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))))
        assert d.differing == int(np.count_nonzero(a.view(np.uint32) != b.view(np.uint32)))
    assert list(found) == sorted(found)


def test_same_checkpoint_is_zero_distance(run_dir: Path, states: dict[int, dict]) -> None:
    assert leaf_distances(states[6], states[6]) == []
    again = read_checkpoint(run_dir / "checkpoints", 6).state
    assert leaf_distances(states[6], again) == []


def test_one_flipped_mantissa_bit(states: dict[int, dict]) -> None:
    flipped = jax.tree.map(np.array, states[6])
    kernel = _leaf(flipped, KERNEL)
    kernel.view(np.uint32)[5, 17] ^= 1
    (d,) = leaf_distances(states[6], flipped)
    assert (d.path, d.differing, d.max_ulp, d.first_index) == (KERNEL, 1, 1, (5, 17))
    assert (d.dtype, d.shape) == ("float32", (256, 256))
    original = float(_leaf(states[6], KERNEL)[5, 17])
    assert d.max_abs == abs(float(kernel[5, 17]) - original) > 0
    assert d.mismatch is None


def test_list_and_string_keyed_dict_line_up() -> None:
    listy = {"w": [np.arange(3.0), (np.float32(1),)]}
    dicty = {"w": {"0": np.arange(3.0), "1": {"0": np.float32(1)}}}
    assert leaf_distances(listy, dicty) == []


def test_only_restricts(states: dict[int, dict]) -> None:
    picked = leaf_distances(states[3], states[6], only=["params/layers/0/kernel", "step"])
    assert [d.path for d in picked] == ["params/layers/0/kernel", "step"]
    subtree = leaf_distances(states[3], states[6], only={"params"})
    assert subtree and all(d.path.startswith("params/") for d in subtree)
    assert leaf_distances(states[3], states[6], only=[]) == []


def test_structure_mismatch(states: dict[int, dict]) -> None:
    other = jax.tree.map(np.array, states[6])
    del other["params"]["layers"]["2"]["bias"]
    other["params"]["layers"]["0"]["bias"] = other["params"]["layers"]["0"]["bias"].astype(ml_dtypes.bfloat16)
    other["params"]["layers"]["1"]["bias"] = other["params"]["layers"]["1"]["bias"][:10]
    other["extra"] = np.zeros(2, np.float32)
    found = {d.path: d for d in leaf_distances(states[6], other)}
    expected = ["extra", "params/layers/0/bias", "params/layers/1/bias", "params/layers/2/bias"]
    assert sorted(found) == expected
    for d in found.values():
        assert (d.differing, d.max_ulp, d.max_abs, d.first_index) == (-1, -1, math.inf, None)
    assert "second" in found["extra"].mismatch and "first" in found["params/layers/2/bias"].mismatch
    assert "bfloat16" in found["params/layers/0/bias"].mismatch
    assert "[256] vs float32[10]" in found["params/layers/1/bias"].mismatch


def test_nan_and_signed_zero() -> None:
    a = {"x": np.array([1.0, 0.0, np.nan], np.float32)}
    b = {"x": np.array([np.nan, -0.0, np.nan], np.float32)}
    (d,) = leaf_distances(a, b)
    assert d.differing == 2 and d.max_abs == math.inf and d.first_index == (0,)  # -0.0 differs in its bits
    (z,) = leaf_distances({"x": np.array([0.0])}, {"x": np.array([-0.0])})
    assert (z.differing, z.max_abs, z.max_ulp) == (1, 0.0, 0)


# --- describe ----------------------------------------------------------------


def test_describe_mentions_path_counts_and_ulp() -> None:
    d = LeafDistance(KERNEL, "float32", (256, 256), 3, 1.2e-7, 2, (5, 17))
    line = describe(d)
    assert (
        line == f"{KERNEL} float32[256,256]: 3 of 65536 elements differ, max |Δ| 1.2e-07, max 2 ulp, first at (5, 17)"
    )
    mismatch = LeafDistance("extra", "float32", (2,), -1, math.inf, -1, None, "only in the second tree")
    assert describe(mismatch) == "extra float32[2]: structure differs, only in the second tree"
    assert "\n" not in line
