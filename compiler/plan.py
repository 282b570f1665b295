"""The plan: a frozen, hashed, JSON-serialisable description of one run."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from expspec.spec import Experiment, FieldClass, Problem, SpecError

from .canonical import canonical_json
from .determinism import DeterminismPlan
from .mesh import MeshPlan
from .policies import CheckpointPolicy, ThrottlePlan

__all__ = ["FORMAT", "Fingerprints", "Plan", "PlanError", "PlanSource"]

FORMAT = 1
"""Plan format and fingerprint recipe version; a change re-fingerprints every plan."""


class PlanError(SpecError):
    """A spec that validates but cannot be compiled, or a plan file that does not load."""


class _Frozen(BaseModel):
    # Built on first use, after `Experiment`, so the plan reuses its schema
    # instead of generating the whole spec tree again while `exp plan` imports.
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)


class PlanSource(_Frozen):
    """What the plan was compiled from. Provenance only: not fingerprinted."""

    file: str | None = None
    """The spec file as named by the caller."""
    files: tuple[str, ...] = ()
    """Every file read: the spec, then what it extends."""
    overrides: tuple[str, ...] = ()
    """Command-line overrides, in the order applied."""


class Fingerprints(_Frozen):
    """SHA-256 digests that identify an experiment."""

    spec: str
    """Of the whole resolved spec (and custom sources): any change at all changes it."""
    trajectory: str
    """Of the trajectory fields, seed tree, determinism settings and custom sources:
    equal trajectory fingerprints promise equal bits within one environment class."""
    sources: dict[str, str]
    """Dotted module name -> SHA-256 of its file, for every local module custom
    targets run: their own modules and the local modules those import."""
    files: dict[str, str] = {}
    """Spec key -> SHA-256 of the small input files it names (`data.tokenizer`)."""


class Plan(_Frozen):
    """A compiled experiment. Build with `compile_spec`; everything in it is resolved."""

    format: Literal[1] = FORMAT
    spec: Experiment
    """The spec with every default resolved."""
    source: PlanSource
    seeds: dict[str, int]
    """The seed tree: stream name -> seed."""
    checkpoint: CheckpointPolicy
    throttle: ThrottlePlan
    mesh: MeshPlan
    """Device axes; sizes of -1 are resolved by the runtime, which sees the devices."""
    determinism: DeterminismPlan
    fields: dict[str, FieldClass]
    """Every resolved spec field (dotted) -> trajectory or operational."""
    fingerprints: Fingerprints
    distributions: tuple[str, ...] = ()
    """Installed distributions the custom code imports, and those that read and
    tokenize text data, by name. Not fingerprinted:
    which distribution provides a module belongs to the machine; the runtime
    records their versions in the environment class."""

    @property
    def name(self) -> str:
        return self.spec.name

    def field_values(self) -> dict[str, Any]:
        """Every resolved spec field (the keys of `fields`) -> its JSON value."""
        dump = self.to_dict()["spec"]
        values = {}
        for path in self.fields:
            value: Any = dump
            for key in path.split("."):
                value = value[key]
            values[path] = value
        return values

    def to_dict(self) -> dict[str, Any]:
        """The plan as JSON-ready data."""
        return self.model_dump(mode="json", by_alias=True)

    def to_json(self) -> str:
        """Canonical JSON: the same plan gives the same bytes on every machine."""
        return canonical_json(self.to_dict())

    @classmethod
    def from_json(cls, text: str | bytes, *, file: str = "<plan>") -> Plan:
        """Load a plan and check it is exactly what its own spec compiles to."""
        from .compile import assemble

        def fail(message: str) -> PlanError:
            return PlanError([Problem(file, None, "", message)])

        try:
            plan = cls.model_validate_json(text)
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise fail(f"not a valid plan: {where}: {first['msg']}") from None
        except (ValueError, json.JSONDecodeError) as err:
            raise fail(f"not valid JSON: {err}") from None
        again = assemble(plan.spec, plan.source, plan.fingerprints.sources, plan.distributions, plan.fingerprints.files)
        if again != plan:
            raise fail("does not match its own spec (edited by hand, or from another expspec version)")
        return plan
