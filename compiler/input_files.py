"""Input files the trajectory depends on, hashed when the plan is compiled.

A tokenizer decides every token id the model sees and a pretrained model's
files decide its starting weights, so their bytes are part of the math: they
enter the trajectory fingerprint, and `exp plan` names a file that cannot be
read before anything runs. Corpora are not hashed here: the runtime
fingerprints them (memory-mapped, cached by file identity) and records the
digest as the run's `data` input.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from expspec.spec import Experiment, Problem
from expspec.spec.data import TextData
from expspec.spec.model import Pretrained

from .plan import PlanError

__all__ = ["files_digest", "hash_input_files", "reader_distributions"]


def files_digest(files: tuple[Path, ...]) -> str:
    """SHA-256 over each file's name and bytes: the names say each file's role
    (`tokenizer.json`, `tokenizer_config.json`), the bytes the content."""
    h = hashlib.sha256()
    for file in files:
        data = file.read_bytes()
        for part in (file.name.encode(), len(data).to_bytes(8, "little"), data):
            h.update(part)
    return h.hexdigest()


def hash_input_files(experiment: Experiment, spec_dir: Path, file: str | None) -> dict[str, str]:
    """Spec key -> digest of the files it names: `data.tokenizer`, and for a pretrained model
    `model.path:<file>` per file of its folder that decides the weights (config and safetensors),
    so a changed shard is named. Weight files are hashed at memory speed and cached by file
    identity (see `content_hash`), so a large model is read once, not at every `exp plan`."""
    out: dict[str, str] = {}
    data, model = experiment.data, experiment.model
    key = ""
    try:
        if isinstance(data, TextData):
            from .tokenizer_files import TokenizerNotFound, tokenizer_files

            key = "data.tokenizer"
            try:
                out[key] = files_digest(tokenizer_files(_resolve(data.tokenizer, spec_dir)))
            except TokenizerNotFound as err:
                raise PlanError([Problem(file, None, key, str(err), data.tokenizer)]) from None
        if isinstance(model, Pretrained):
            key = "model.path"
            out.update(_model_folder_digests(_resolve(model.path, spec_dir), file))
    except OSError as err:
        message = f"cannot read {err.filename}: {err.strerror or err}"
        raise PlanError([Problem(file, None, key, message)]) from None
    return out


def _resolve(path: str, spec_dir: Path) -> Path:
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() else spec_dir / candidate


def _model_folder_digests(folder: Path, file: str | None) -> dict[str, str]:
    from .content_hash import content_digest
    from .user_cache import cache_root

    if not (folder / "config.json").is_file():
        message = f"{folder}: no config.json (a Hugging Face model folder holds config.json and *.safetensors)"
        raise PlanError([Problem(file, None, "model.path", message)])
    index = folder / "model.safetensors.index.json"
    weights = sorted(folder.glob("*.safetensors"))
    if not weights:
        raise PlanError([Problem(file, None, "model.path", f"{folder}: no *.safetensors weight files")])
    small = [folder / "config.json", *([index] if index.is_file() else [])]
    out = {f"model.path:{p.name}": files_digest((p,)) for p in small}
    cache = cache_root() / "fingerprints"
    out.update({f"model.path:{p.name}": content_digest([p], cache=cache) for p in weights})
    return out


def reader_distributions(experiment: Experiment) -> tuple[str, ...]:
    """Installed distributions that turn the text data's bytes into token ids: their
    versions join the environment class, so a tokenizer library that tokenizes
    differently after an upgrade is an environment change, not a regression."""
    data = experiment.data
    if not isinstance(data, TextData):
        return ()
    names = {"datasets", "pyarrow", "tokenizers", "sentencepiece"}
    if data.style == "chat":
        names.add("jinja2")
    if data.format == "arrayrecord":
        names.add("array-record")
    return tuple(sorted(names))
