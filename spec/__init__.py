"""The experiment spec: Pydantic models of a TOML file, loading, overrides, schema.

Imports nothing heavier than Pydantic, so `exp validate` and `exp plan` start fast.
"""

from .errors import Problem, SpecError
from .experiment import BASE_STREAMS, Experiment, stream_names
from .fields import FieldClass, field_class
from .load import LoadedSpec, load_spec
from .overrides import Override, parse_overrides
from .schema import spec_schema
from .targets import (
    ImportNotAllowed,
    TargetNotFound,
    check_targets,
    custom_targets,
    import_target,
    target_source,
)

__all__ = [
    "BASE_STREAMS",
    "Experiment",
    "FieldClass",
    "ImportNotAllowed",
    "LoadedSpec",
    "Override",
    "Problem",
    "SpecError",
    "TargetNotFound",
    "check_targets",
    "custom_targets",
    "field_class",
    "import_target",
    "load_spec",
    "parse_overrides",
    "spec_schema",
    "stream_names",
    "target_source",
]
