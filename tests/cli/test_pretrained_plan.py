"""`exp plan --explain` lays out a pretrained model's base weights on a mesh without importing JAX."""

from __future__ import annotations

from tests.cli.test_cli import JAX_FAMILY, imported_modules


def test_explain_shows_the_base_weights_shards_on_two_devices_without_jax(examples_after_runs):
    spec = examples_after_runs / "sft_lora.toml"
    modules = imported_modules(
        "-m",
        "expspec",
        "plan",
        str(spec),
        "mesh.fsdp=2",
        "--explain",
        "--devices",
        "2",
        shows="Frozen base weights",
    )
    assert not set(JAX_FAMILY) & modules
    assert not {"torch", "transformers", "safetensors", "tokenizers"} & modules
