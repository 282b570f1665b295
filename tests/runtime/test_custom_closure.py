"""A run of custom code: a helper module it imports is part of the trajectory, and the
installed distributions it imports are part of the environment class."""

from __future__ import annotations

import json
from importlib import metadata

import pytest

from tests.runtime.runs import exp

SPEC = """\
name = "custom-closure"
[model]
kind = "custom"
target = "closurelab.models:make"
[data]
kind = "custom"
target = "closurelab.data:make"
batch_size = 8
[train]
steps = 4
[checkpoint]
every_steps = 1
"""

MODELS = """\
from flax import nnx

from .nets import activation


class Net(nnx.Module):
    def __init__(self, rngs):
        self.hidden = nnx.Linear(1, 8, rngs=rngs)
        self.out = nnx.Linear(8, 1, rngs=rngs)

    def __call__(self, x):
        return self.out(activation(self.hidden(x)))[:, 0]


def make(rngs):
    return Net(rngs)
"""

NETS = """\
import jax


def activation(x):
    return jax.nn.relu(x)
"""

DATA = """\
import ml_dtypes  # an installed distribution the environment class does not list by default
import numpy as np


class Data:
    def __init__(self, seed, batch_size):
        self.seed, self.batch_size = seed, batch_size

    def train_batch(self, step):
        x = np.random.default_rng([self.seed, step]).uniform(-1, 1, (self.batch_size, 1)).astype(np.float32)
        return {"x": x, "y": np.sin(3 * x[:, 0])}

    def eval_batches(self):
        x = np.linspace(-1, 1, 8, dtype=np.float32)[:, None]
        return [{"x": x, "y": np.sin(3 * x[:, 0])}]


def make(seed, batch_size):
    assert ml_dtypes.bfloat16 is not None
    return Data(seed, batch_size)
"""


@pytest.fixture(scope="module")
def stopped(tmp_path_factory):
    """A custom run stopped after step 2 of 4 (resumable)."""
    root = tmp_path_factory.mktemp("closure")
    package = root / "closurelab"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "models.py").write_text(MODELS)
    (package / "nets.py").write_text(NETS)
    (package / "data.py").write_text(DATA)
    (root / "spec.toml").write_text(SPEC)
    run_dir = root / "run"
    result = exp(
        "run", "spec.toml", "--allow-import", "closurelab", "--run-dir", str(run_dir), "--stop-at", "2", "-q", cwd=root
    )
    assert result.returncode == 0, result.stderr
    return root, run_dir


def test_imported_distributions_are_in_the_environment_class(stopped):
    _, run_dir = stopped
    packages = json.loads((run_dir / "env.json").read_text())["class"]["packages"]
    assert packages["numpy"] == metadata.version("numpy")
    assert packages["ml-dtypes"] == metadata.version("ml_dtypes")
    plan = json.loads((run_dir / "plan.json").read_text())
    assert set(plan["fingerprints"]["sources"]) == {
        "closurelab",
        "closurelab.models",
        "closurelab.nets",
        "closurelab.data",
    }


def test_an_edited_helper_refuses_the_resume(stopped):
    root, run_dir = stopped
    ledger = (run_dir / "ledger.jsonl").read_bytes()
    nets = root / "closurelab" / "nets.py"
    nets.write_text(nets.read_text().replace("jax.nn.relu(x)", "jax.nn.tanh(x)"))
    result = exp("run", "spec.toml", "--allow-import", "closurelab", "--run-dir", str(run_dir), "-q", cwd=root)
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "trajectory" in result.stderr and "Traceback" not in result.stderr
    assert (run_dir / "ledger.jsonl").read_bytes() == ledger  # nothing trained on the edited model
