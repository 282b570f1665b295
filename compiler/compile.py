"""`compile_spec`: an `Experiment` becomes a `Plan`, with nothing left implicit."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from expspec.spec import Experiment, Problem, TargetNotFound, custom_targets, load_spec, target_source
from expspec.spec.closure import SourceClosure, source_closure
from expspec.spec.load import apply_overrides
from expspec.spec.optimizer import Cosine, Linear

from .canonical import digest
from .classes import field_classes, trajectory_view
from .determinism import resolve_determinism
from .input_files import hash_input_files, reader_distributions
from .mesh import resolve_mesh_plan
from .plan import FORMAT, Fingerprints, Plan, PlanError, PlanSource
from .policies import resolve_checkpoint, resolve_throttle
from .seeds import derive_seeds

__all__ = ["assemble", "compile_spec", "plan_spec", "resolve_spec"]


def resolve_spec(experiment: Experiment) -> Experiment:
    """Fill the defaults that depend on other fields, so the plan states them.

    A decaying schedule without `decay_steps` decays until `train.steps`; the
    resolved number is what the trajectory fingerprint sees, which is why
    `train.steps` itself can stay operational. An unset `deterministic_ops`
    follows the contract.
    """
    optimizer = experiment.optimizer
    schedule = optimizer.schedule
    if isinstance(schedule, Cosine | Linear) and schedule.decay_steps is None:
        decay = max(1, experiment.train.steps - schedule.warmup_steps)
        schedule = schedule.model_copy(update={"decay_steps": decay})
        optimizer = optimizer.model_copy(update={"schedule": schedule})
    determinism = experiment.determinism
    if determinism.deterministic_ops is None:
        determinism = determinism.model_copy(update={"deterministic_ops": determinism.contract == "bitwise"})
    return experiment.model_copy(update={"optimizer": optimizer, "determinism": determinism})


def _hash_sources(experiment: Experiment, search: Sequence[Path], file: str | None) -> SourceClosure:
    """The custom targets' code, read without importing it: each target's module and the local
    modules it imports, hashed, and the installed distributions they import, named."""
    sources: dict[str, str] = {}
    distributions: set[str] = set()
    problems = []
    for key, target in custom_targets(experiment).items():
        try:
            target_source(target, search)  # the target's own module must exist; its imports may not
            closure = source_closure([target.partition(":")[0]], search)
        except (TargetNotFound, OSError) as err:
            problems.append(Problem(file, None, key, str(err), target))
            continue
        sources.update(closure.sources)
        distributions.update(closure.distributions)
    if problems:
        raise PlanError(problems)
    return SourceClosure(dict(sorted(sources.items())), tuple(sorted(distributions)))


def assemble(
    experiment: Experiment,
    source: PlanSource,
    sources: dict[str, str],
    distributions: tuple[str, ...] = (),
    files: dict[str, str] | None = None,
) -> Plan:
    """Build the plan of an already resolved experiment (pure).

    `distributions` (installed ones the custom code imports) are a property of
    the machine, so they stay out of both fingerprints. `files` (input files'
    digests) enter both, and only when there are any, so plans without them
    keep the fingerprints earlier versions gave them.
    """
    files = dict(sorted((files or {}).items()))
    hashed_files = {"files": files} if files else {}
    dump = experiment.model_dump(mode="json", by_alias=True)
    classes = field_classes(experiment)
    seeds = derive_seeds(experiment)
    determinism = resolve_determinism(experiment)
    fingerprints = Fingerprints(
        spec=digest({"format": FORMAT, "spec": dump, "sources": sources, **hashed_files}),
        trajectory=digest(
            {
                "format": FORMAT,
                "spec": trajectory_view(dump, classes),
                "seeds": seeds,
                "determinism": determinism.trajectory_part(),
                "sources": sources,
                **hashed_files,
            }
        ),
        sources=sources,
        files=files,
    )
    return Plan(
        spec=experiment,
        source=source,
        seeds=seeds,
        checkpoint=resolve_checkpoint(experiment),
        throttle=resolve_throttle(experiment),
        mesh=resolve_mesh_plan(experiment),
        determinism=determinism,
        fields=classes,
        fingerprints=fingerprints,
        distributions=distributions,
    )


def compile_spec(
    experiment: Experiment,
    overrides: Sequence[str] = (),
    *,
    source: PlanSource | None = None,
    search: Sequence[Path] = (),
) -> Plan:
    """Compile `experiment` (after dotted `overrides`) into a frozen, fingerprinted plan.

    Pure apart from reading the source files of `custom` targets and of the
    local modules they import (never importing them), and the tokenizer's
    files; `search` lists folders tried before `sys.path` for them, its first
    being the spec's folder, against which relative paths resolve.
    """
    source = source or PlanSource()
    if overrides:
        experiment = apply_overrides(experiment, overrides)
        source = source.model_copy(update={"overrides": (*source.overrides, *overrides)})
    resolved = resolve_spec(experiment)
    closure = _hash_sources(resolved, search, source.file)
    files = hash_input_files(resolved, Path(search[0]) if search else Path.cwd(), source.file)
    distributions = tuple(sorted({*closure.distributions, *reader_distributions(resolved)}))
    return assemble(resolved, source, closure.sources, distributions, files)


def plan_spec(file: str | Path, overrides: Sequence[str] = ()) -> Plan:
    """Load the spec file `file` with `overrides` and compile it."""
    loaded = load_spec(file, overrides)
    source = PlanSource(file=loaded.file, files=loaded.files, overrides=tuple(o.text for o in loaded.overrides))
    return compile_spec(loaded.experiment, source=source, search=[loaded.folder])
