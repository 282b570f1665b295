"""`exp lock` writes the pip constraints that reinstall the locked environment class."""

from __future__ import annotations

import json
import shutil

from tests.conftest import EXAMPLES
from tests.runtime.runs import exp


def pins(text: str) -> dict[str, str]:
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    return dict(line.split("==", 1) for line in lines)


def test_lock_writes_constraints_and_prints_them_again(tmp_path):
    for name in ("digits_mlp.toml", "base.toml"):
        shutil.copy(EXAMPLES / name, tmp_path / name)
    recorded = exp("lock", "digits_mlp.toml", "--steps", "2", "-o", "gate.lock", cwd=tmp_path, timeout=600)
    assert recorded.returncode == 0, recorded.stderr
    written = (tmp_path / "gate.constraints.txt").read_text()
    [entry] = json.loads((tmp_path / "gate.lock").read_text())["entries"]
    assert pins(written) == entry["environment"]["packages"]
    assert {"jax", "jaxlib", "flax", "optax", "numpy"} <= set(pins(written))

    printed = exp("lock", "--constraints", "gate.lock", cwd=tmp_path)
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout == written


def test_constraints_of_a_missing_or_foreign_lock_is_one_line_exit_2(tmp_path):
    missing = exp("lock", "--constraints", "nope.lock", cwd=tmp_path)
    assert missing.returncode == 2 and "nope.lock" in missing.stderr and "Traceback" not in missing.stderr
    (tmp_path / "x.lock").write_text("{}")
    foreign = exp("lock", "--constraints", "x.lock", cwd=tmp_path)
    assert foreign.returncode == 2 and "x.lock" in foreign.stderr and len(foreign.stderr.strip().splitlines()) == 1


def test_constraints_and_specs_together_is_bad_usage(tmp_path):
    both = exp("lock", "digits_mlp.toml", "--constraints", "gate.lock", cwd=tmp_path)
    assert both.returncode == 2 and "--constraints" in both.stderr
    assert list(tmp_path.iterdir()) == []
