"""Checkpoints and data files are never unpickled: a checkpoint from elsewhere cannot run code."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from tests.runtime.runs import DIGITS, beginnings, run_json, trained_steps

# Python raises the audit event `pickle.find_class` whenever an unpickler resolves
# a global: any real unpickling of objects (numpy arrays included) triggers it.
WATCHED = """
import sys
seen = []
def hook(event, args):
    if event == "pickle.find_class":
        seen.append(args)
sys.addaudithook(hook)
from expspec.cli import main
sys.argv = ["exp", *sys.argv[1:]]
try:
    main()
except SystemExit as end:
    code = end.code
else:
    code = 0
print("UNPICKLED", len(seen), file=sys.stderr)
sys.exit(code)
"""


def _watched(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-P", "-c", WATCHED, *args], capture_output=True, text=True, timeout=300)


def test_resuming_from_a_checkpoint_unpickles_nothing(tmp_path):
    args = (
        str(DIGITS),
        "train.steps=20",
        "checkpoint.every_steps=10",
        "train.eval_every=0",
        "--run-dir",
        str(tmp_path),
    )
    run_json(*args, "--stop-at", "10")
    resumed = _watched("run", *args, "-q")
    assert resumed.returncode == 0, resumed.stderr
    assert "UNPICKLED 0" in resumed.stderr
    # The watched process did restore: it took up step 10's checkpoint and trained only steps 11-20.
    assert beginnings(tmp_path) == [("start", 0), ("resume", 10)]
    assert trained_steps(tmp_path, 1) == list(range(11, 21))


def test_npz_data_with_objects_is_refused_not_unpickled(tmp_path):
    np.savez(tmp_path / "data.npz", x=np.array([{"a": 1}] * 8, dtype=object), y=np.arange(8))
    spec = tmp_path / "spec.toml"
    spec.write_text(
        'name = "npz"\n[model]\nkind = "mlp"\n[data]\nkind = "npz"\npath = "data.npz"\nbatch_size = 2\n'
        "[train]\nsteps = 2\n"
    )
    result = _watched("run", str(spec), "--run-dir", str(tmp_path / "run"), "-q")
    assert result.returncode == 2 and "UNPICKLED 0" in result.stderr
    assert "Traceback" not in result.stderr
