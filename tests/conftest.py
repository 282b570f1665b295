"""Shared fixtures: the repository's paths and a way to run `exp` for real."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
EXAMPLE_SPECS = sorted(EXAMPLES.glob("*.toml"))


@pytest.fixture
def write_spec(tmp_path: Path):
    """Write a TOML file under tmp_path and return its path."""

    def write(text: str, name: str = "spec.toml") -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path

    return write


def run_exp(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the installed `exp` console script in a fresh process."""
    exe = Path(sys.executable).with_name("exp")
    return subprocess.run(
        [str(exe), *args],
        cwd=cwd or ROOT,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(autouse=True, scope="session")
def _private_data_cache(tmp_path_factory: pytest.TempPathFactory):
    """Data fingerprints, converted corpora and packing lengths go to a cache of the test
    session's own, inherited by the `exp` processes the tests start: the user's cache is
    neither read nor written, and every session starts cold."""
    os.environ["EXPSPEC_CACHE_DIR"] = str(tmp_path_factory.mktemp("expspec-cache"))


NEEDS_A_RUN = {"sft_lora.toml"}
"""Examples that continue another example's run: `sft_lora.toml` fine-tunes `runs/tiny-llama-hf`,
the export of `pretrain_tiny_llama.toml`, which a fresh clone does not have."""


@pytest.fixture(scope="session")
def examples_after_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of `examples/` beside a `runs/` folder holding what the examples in `NEEDS_A_RUN`
    read: a small Hugging Face Llama folder (a parity fixture) with the text tokenizer."""
    root = tmp_path_factory.mktemp("checkout")
    shutil.copytree(EXAMPLES, root / "examples")
    exported = root / "runs" / "tiny-llama-hf"
    shutil.copytree(ROOT / "tests" / "fixtures" / "pretrained" / "tiny-llama", exported)
    for file in (EXAMPLES / "data" / "text_tokenizer").iterdir():
        shutil.copy(file, exported / file.name)
    return root / "examples"
