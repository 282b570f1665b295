"""Parameter shapes of the built-in models, by arithmetic instead of by building them.

`exp plan --explain` shows how the mesh lays out every parameter, and `exp plan`
must not import JAX: building the model would cost seconds and may claim an
accelerator. The built-in families are small enough to size by hand. The
results use the runtime's canonical leaf paths (`expspec.runtime.engine.hashing.leaf_paths`
of `state["params"]` and `state["frozen"]`), and tests/compiler/test_shapes.py
compares them with the state the runtime really builds, so the two cannot
drift apart unnoticed.

Custom models and custom data are only known once user code runs, so for them
the answer is `Unknown` with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from expspec.spec import Experiment
from expspec.spec.data import CustomData, Digits, Npz, Synthetic, TextChars, TextData
from expspec.spec.model import MLP, CustomModel, Decoder, LoRA, Pretrained, Transformer

from .decoder_config import ConfigError, DecoderConfig, read_hf_config

__all__ = ["LeafShape", "StateShapes", "Unknown", "state_shapes"]

DIGITS_FEATURES, DIGITS_CLASSES = 64, 10
"""scikit-learn's digits: 8x8 pixels, ten classes (runtime/data/digits.py)."""
TEXT_VOCAB = 256
"""`text_chars` tokens are bytes (runtime/data/text.py)."""


@dataclass(frozen=True)
class LeafShape:
    """One array of the train state."""

    path: str
    """Canonical leaf path, e.g. `layers/0/kernel`."""
    shape: tuple[int, ...]
    dtype: str


@dataclass(frozen=True)
class StateShapes:
    """The arrays of `state["params"]` (trained) and `state["frozen"]` (LoRA base
    weights), each sorted by path as the runtime's canonical order sorts them."""

    params: tuple[LeafShape, ...]
    frozen: tuple[LeafShape, ...]


@dataclass(frozen=True)
class Unknown:
    """The shapes cannot be known before the run; `reason` says why, in one line."""

    reason: str


@dataclass(frozen=True)
class _Data:
    """The part of the runtime's `DataInfo` that sizes a model."""

    task: str
    input_dim: int = 0
    num_classes: int = 0
    vocab_size: int = 0
    seq_len: int = 0


@dataclass(frozen=True)
class _Linear:
    """An `nnx.Linear`: the only layer LoRA wraps, so it stays a unit until then."""

    fan_in: int
    fan_out: int
    bias: bool = True


_Tree = dict[str, Any]
"""A model as nested attribute names, like the nnx module tree: each value is a
subtree, a `_Linear`, or one array's shape (a tuple)."""


def state_shapes(experiment: Experiment, spec_dir: Path) -> StateShapes | Unknown:
    """The train state's parameter arrays for `experiment`; `spec_dir` resolves an npz path."""
    model = experiment.model
    if isinstance(model, CustomModel):
        return Unknown("custom model: shapes are known only when the run builds it")
    data = _data(experiment, Path(spec_dir))
    if isinstance(data, Unknown):
        return data
    tree = _model_tree(model, data, Path(spec_dir))
    if isinstance(tree, Unknown):
        return tree
    dtype = experiment.train.param_dtype
    params: list[LeafShape] = []
    frozen: list[LeafShape] = []
    if model.lora is None:
        _flatten(tree, "", dtype, params)
    else:
        if not _adapt(tree, "", dtype, model.lora, params, frozen):
            return Unknown(f"model.lora.targets {list(model.lora.targets)} match no linear layer of the model")
    return StateShapes(tuple(sorted(params, key=_path)), tuple(sorted(frozen, key=_path)))


def _path(leaf: LeafShape) -> str:
    return leaf.path


def _leaf(prefix: str, name: str) -> str:
    return f"{prefix}/{name}" if prefix else name


def _flatten(tree: _Tree, prefix: str, dtype: str, out: list[LeafShape]) -> None:
    for name, node in tree.items():
        path = _leaf(prefix, name)
        if isinstance(node, _Linear):
            out.append(LeafShape(f"{path}/kernel", (node.fan_in, node.fan_out), dtype))
            if node.bias:
                out.append(LeafShape(f"{path}/bias", (node.fan_out,), dtype))
        elif isinstance(node, tuple):
            out.append(LeafShape(path, node, dtype))
        else:
            _flatten(node, path, dtype, out)


def _adapt(tree: _Tree, prefix: str, dtype: str, lora: LoRA, params: list[LeafShape], frozen: list[LeafShape]) -> bool:
    """Split as `apply_lora` then `nnx.split(model, nnx.LoRAParam, ...)` do: a
    targeted Linear becomes `base` (frozen) plus `lora.lora_a`/`lora_b` (trained);
    everything else is frozen. Returns whether any layer was targeted."""
    matched = False
    for name, node in tree.items():
        path = _leaf(prefix, name)
        if isinstance(node, _Linear) and lora.matches(path.replace("/", ".")):
            matched = True
            _flatten({"base": node}, path, dtype, frozen)
            params.append(LeafShape(f"{path}/lora/lora_a", (node.fan_in, lora.rank), dtype))
            params.append(LeafShape(f"{path}/lora/lora_b", (lora.rank, node.fan_out), dtype))
        elif isinstance(node, dict):
            matched = _adapt(node, path, dtype, lora, params, frozen) or matched
        else:
            _flatten({name: node}, prefix, dtype, frozen)
    return matched


def _model_tree(model: MLP | Transformer | Pretrained | Decoder, data: _Data, spec_dir: Path) -> _Tree | Unknown:
    if isinstance(model, MLP):
        return _mlp(model, data)
    if isinstance(model, Transformer):
        return _transformer(model, data)
    if data.task != "lm":
        return Unknown(f"model.kind '{model.kind}' needs a language-modelling dataset, got task '{data.task}'")
    if isinstance(model, Decoder):
        return _decoder(DecoderConfig.from_spec(model, data.vocab_size))
    path = Path(model.path).expanduser()
    try:
        return _decoder(read_hf_config(path if path.is_absolute() else spec_dir / path))
    except ConfigError as err:
        return Unknown(f"model.path: {err}")


def _decoder(cfg: DecoderConfig) -> _Tree:
    """runtime/models/decoder.py: Hugging Face's module tree (`model.layers.0.self_attn.q_proj`)."""
    d, heads, kv, hd = cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim

    def layer() -> _Tree:
        attn: _Tree = {
            "q_proj": _Linear(d, heads * hd, cfg.attention_bias),
            "k_proj": _Linear(d, kv * hd, cfg.attention_bias),
            "v_proj": _Linear(d, kv * hd, cfg.attention_bias),
            "o_proj": _Linear(heads * hd, d, False),
        }
        if cfg.qk_norm:
            attn.update(q_norm={"weight": (hd,)}, k_norm={"weight": (hd,)})
        mlp = {
            "gate_proj": _Linear(d, cfg.intermediate_size, False),
            "up_proj": _Linear(d, cfg.intermediate_size, False),
            "down_proj": _Linear(cfg.intermediate_size, d, False),
        }
        norms = {"input_layernorm": {"weight": (d,)}, "post_attention_layernorm": {"weight": (d,)}}
        return {"self_attn": attn, "mlp": mlp, **norms}

    tree: _Tree = {
        "model": {
            "embed_tokens": {"embedding": (cfg.vocab_size, d)},
            "layers": {str(i): layer() for i in range(cfg.num_hidden_layers)},
            "norm": {"weight": (d,)},
        }
    }
    if not cfg.tie_word_embeddings:
        tree["lm_head"] = _Linear(d, cfg.vocab_size, False)
    return tree


def _mlp(spec: MLP, data: _Data) -> _Tree | Unknown:
    """runtime/models/mlp.py: `layers` is an `nnx.List` of Linears, input to output."""
    if data.task == "lm":
        return Unknown("model.kind 'mlp' needs a classification or regression dataset, got task 'lm'")
    if not data.input_dim:
        return Unknown("model.kind 'mlp' needs the dataset's input_dim")
    out = 1 if data.task == "regression" else data.num_classes
    if not out:
        return Unknown("model.kind 'mlp' needs the dataset's num_classes for classification")
    sizes = [data.input_dim, *spec.hidden, out]
    return {"layers": {str(i): _Linear(a, b) for i, (a, b) in enumerate(zip(sizes, sizes[1:]))}}


def _transformer(spec: Transformer, data: _Data) -> _Tree | Unknown:
    """runtime/models/transformer.py: embeddings, pre-LayerNorm blocks, final norm, head."""
    if data.task != "lm":
        return Unknown(f"model.kind 'transformer' needs a language-modelling dataset, got task '{data.task}'")
    if data.seq_len > spec.max_len:
        return Unknown(f"data windows have {data.seq_len} tokens but model.max_len is {spec.max_len}")
    d, vocab = spec.d_model, data.vocab_size

    def norm() -> _Tree:
        return {"scale": (d,), "bias": (d,)}

    def block() -> _Tree:
        attn: _Tree = {name: _Linear(d, d) for name in ("query", "key", "value", "out")}
        return {
            "ln1": norm(),
            "attn": attn,
            "ln2": norm(),
            "ff_in": _Linear(d, spec.d_ff),
            "ff_out": _Linear(spec.d_ff, d),
        }

    return {
        "tok_embed": {"embedding": (vocab, d)},
        "pos_embed": {"embedding": (spec.max_len, d)},
        "blocks": {str(i): block() for i in range(spec.layers)},
        "ln_f": norm(),
        "head": _Linear(d, vocab),
    }


def _data(experiment: Experiment, spec_dir: Path) -> _Data | Unknown:
    """What the runtime's data source would report as its `DataInfo`, without the data."""
    spec = experiment.data
    if isinstance(spec, Digits):
        return _Data("classification", DIGITS_FEATURES, DIGITS_CLASSES)
    if isinstance(spec, TextChars):
        return _Data("lm", vocab_size=TEXT_VOCAB, seq_len=spec.seq_len)
    if isinstance(spec, Synthetic):
        classes = spec.classes if spec.task == "classification" else 0
        return _Data(spec.task, spec.features, classes)
    if isinstance(spec, Npz):
        return _npz(spec, spec_dir)
    if isinstance(spec, TextData):
        return _text(spec, spec_dir)
    assert isinstance(spec, CustomData)
    return Unknown("custom data: the model's input and output sizes are known only when the run loads the data")


def _text(spec: TextData, spec_dir: Path) -> _Data | Unknown:
    """The vocabulary of a Hugging Face `tokenizer.json`, read as JSON: its largest token id
    (model vocabulary or added tokens) plus one, as `runtime/data/tokenizer.py` counts it."""
    import json

    from .tokenizer_files import TokenizerNotFound, tokenizer_files

    path = Path(spec.tokenizer).expanduser()
    try:
        main = tokenizer_files(path if path.is_absolute() else spec_dir / path)[0]
        if main.suffix != ".json":
            return Unknown("SentencePiece tokenizer: the vocabulary is known when the run loads it")
        document = json.loads(main.read_text(encoding="utf-8"))
        vocab = document["model"]["vocab"]
        ids = list(vocab.values()) if isinstance(vocab, dict) else range(len(vocab))
        ids = [*ids, *(token["id"] for token in document.get("added_tokens") or ())]
        return _Data("lm", vocab_size=max(ids) + 1, seq_len=spec.seq_len)
    except (TokenizerNotFound, OSError, ValueError, KeyError, TypeError) as err:
        return Unknown(f"data.tokenizer cannot be read ({type(err).__name__}); `exp run` names the problem")


def _npz(spec: Npz, spec_dir: Path) -> _Data | Unknown:
    """runtime/data/npz.py's sizes: features per example from the inputs' header, and
    (integer targets) the classes from the largest label, which needs the targets read."""
    import io
    import zipfile

    import numpy as np  # here only: `exp plan` must not pay for NumPy otherwise

    path = Path(spec.path).expanduser()
    path = path if path.is_absolute() else spec_dir / path
    try:
        with zipfile.ZipFile(path) as archive:
            members = set(archive.namelist())

            def member(name: str) -> str:
                for candidate in (f"{name}.npy", name):
                    if candidate in members:
                        return candidate
                raise KeyError(name)

            with archive.open(member(spec.inputs)) as raw:
                version = np.lib.format.read_magic(raw)
                read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else None
                if version == (2, 0):
                    read_header = np.lib.format.read_array_header_2_0
                if read_header is not None:
                    x_shape, _, x_dtype = read_header(raw)
                else:  # a header format without a public reader: read the array
                    x = np.load(io.BytesIO(archive.read(member(spec.inputs))), allow_pickle=False)
                    x_shape, x_dtype = x.shape, x.dtype
            y = np.load(io.BytesIO(archive.read(member(spec.targets))), allow_pickle=False)
    except KeyError as err:
        return Unknown(f"data.path: {path} has no array named {err}")
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        return Unknown(f"data.path: cannot read arrays from {path}: {err}")
    if x_dtype.kind not in "biuf" or y.dtype.kind not in "biuf":
        return Unknown(f"data.path: {path}: arrays '{spec.inputs}' and '{spec.targets}' must hold numbers")
    if not x_shape or not y.ndim or not x_shape[0] or y.size != x_shape[0]:
        return Unknown(f"data.path: {path}: need one target per example in '{spec.inputs}' and '{spec.targets}'")
    features = 1
    for n in x_shape[1:]:
        features *= int(n)
    if y.dtype.kind not in "biu":
        return _Data("regression", features)
    if y.min() < 0:
        return Unknown(f"data.path: {path}: '{spec.targets}' has negative class labels")
    return _Data("classification", features, int(y.max()) + 1)
