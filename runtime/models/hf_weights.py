"""Hugging Face tensor names for a decoder's parameters, and loading/saving them.

`DecoderLM` mirrors Hugging Face's module tree, so one fixed rule maps a
parameter's state path onto its tensor name: join the path with dots and name
the leaf `weight` (`kernel`, transposed: nnx keeps [in, out], PyTorch [out, in];
`embedding`; RMSNorm's `weight`) or `bias`. A LoRA-wrapped projection keeps its
base at `<proj>/base/...`, which maps onto the projection's own tensors.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from expspec.runtime.models.common import ModelError
from expspec.runtime.models.safetensors_files import SafetensorsFolder

__all__ = ["hf_name", "hf_state", "load_hf_weights", "nnx_path"]

Path_ = tuple[str | int, ...]
Place = Callable[[tuple[str | int, ...], np.ndarray], jax.Array]
"""(state path, host array in the param dtype) -> the array the parameter holds (e.g. sharded)."""

# Buffers some checkpoints carry that are recomputed from the config, not loaded.
_IGNORED = re.compile(r"(.*\.)?rotary_emb\.inv_freq")
_FLOATS = {np.dtype(np.float32), np.dtype(np.float16), np.dtype(jnp.bfloat16), np.dtype(np.float64)}


def hf_name(path: tuple[str, ...]) -> tuple[str, bool]:
    """(Hugging Face tensor name, whether the array is transposed) for a parameter's state path.

    `("model", "layers", "0", "self_attn", "q_proj", "kernel")` -> `("model.layers.0.self_attn.q_proj.weight", True)`.
    """
    parts = [str(p) for p in path]
    if not parts or parts[-1] in ("lora_a", "lora_b") or "lora" in parts[:-1]:
        raise ModelError(f"{'/'.join(parts)}: a LoRA adapter, not a Hugging Face model tensor")
    if len(parts) >= 3 and parts[-2] == "base":
        del parts[-2]  # LoRALinear(base): the projection's own weights
    leaf = parts[-1]
    if leaf == "kernel":
        return ".".join([*parts[:-1], "weight"]), True
    if leaf in ("embedding", "weight"):
        return ".".join([*parts[:-1], "weight"]), False
    if leaf == "bias":
        return ".".join(parts), False
    raise ModelError(f"{'/'.join(parts)}: no Hugging Face tensor name for a parameter called '{leaf}'")


def nnx_path(name: str) -> tuple[Path_, bool]:
    """(state path, whether transposed) of a Hugging Face tensor name: the inverse of `hf_name`.

    Layer indices come back as ints, as `nnx.state` keys them.
    """
    parts: list[str | int] = [int(p) if p.isdigit() else p for p in name.split(".")]
    if len(parts) < 2 or parts[-1] not in ("weight", "bias"):
        raise ModelError(f"tensor '{name}': not a weight or bias of a decoder module")
    if parts[-1] == "bias":
        return tuple(parts), False
    owner = str(parts[-2])
    if owner == "embed_tokens":
        return (*parts[:-1], "embedding"), False
    if owner.endswith("_proj") or owner == "lm_head":
        return (*parts[:-1], "kernel"), True
    return tuple(parts), False


def _params(model: nnx.Module) -> dict[str, tuple[Path_, nnx.Variable, bool]]:
    """HF name -> (state path, the model's Param, transposed?) for every non-adapter parameter."""
    out: dict[str, tuple[Path_, nnx.Variable, bool]] = {}
    for path, value in nnx.iter_graph(model):
        if isinstance(value, nnx.Param) and not isinstance(value, nnx.LoRAParam):
            name, transposed = hf_name(tuple(str(p) for p in path))
            out[name] = (tuple(path), value, transposed)
    return out


def load_hf_weights(model: nnx.Module, folder: Path, place: Place | None = None) -> None:
    """Fill every parameter of `model` from the folder's safetensors files, cast to the param dtype.

    `model` may be abstract (`nnx.eval_shape`): only shapes and dtypes are read
    from it. Tensors are read one at a time from the memory map and handed to
    `place` (default: `jnp.asarray`), so a load holds at most one host copy of
    one tensor beside what the device keeps. Every parameter must get exactly one
    tensor and every tensor must be used; a missing, unknown or misshapen tensor
    is a `ModelError` naming it and its file.
    """
    place = place or (lambda _path, array: jnp.asarray(array))
    params = _params(model)
    tied = "lm_head.weight" not in params and "model.embed_tokens.weight" in params
    with SafetensorsFolder(Path(folder)) as files:
        names = set(files.names())
        for name in sorted(names - params.keys()):
            if _IGNORED.fullmatch(name) or (tied and name == "lm_head.weight"):
                continue  # a buffer, or the tied head some checkpoints save besides the embedding
            raise ModelError(f"{files.file_of(name)}: tensor '{name}' is not a parameter of this model")
        missing = sorted(params.keys() - names)
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise ModelError(f"{folder}: tensor '{missing[0]}'{more} missing from the weight files")
        for name in sorted(params):
            path, param, transposed = params[name]
            shape, dtype = tuple(param.shape), np.dtype(param.dtype)
            stored = files.shape(name)
            expected = shape[::-1] if transposed else shape
            if stored != expected:
                raise ModelError(
                    f"{files.file_of(name)}: tensor '{name}' has shape {list(stored)}, "
                    f"config.json makes it {list(expected)}"
                )
            if files.dtype(name) not in _FLOATS:
                raise ModelError(f"{files.file_of(name)}: tensor '{name}' has dtype {files.dtype(name)}, not a float")
            array = files.read(name)
            array = array.T if transposed else array
            # A private, writable, C-ordered copy: a device buffer may alias it (and donation write to it),
            # which must never be the read-only file mapping.
            param.set_value(place(path, np.array(array, dtype=dtype, order="C")))
            del array
            files.release_pages()


def hf_state(model: nnx.Module) -> dict[str, np.ndarray]:
    """Every non-adapter parameter under its Hugging Face name, in PyTorch's layout (for export).

    LoRA-wrapped projections give their base weights; folding adapters in is the exporter's job.
    Arrays are host views where possible (transposed ones are not contiguous).
    """
    out: dict[str, np.ndarray] = {}
    for name, (_, param, transposed) in sorted(_params(model).items()):
        array = np.asarray(jax.device_get(param[...]))
        out[name] = array.T if transposed else array
    return out
