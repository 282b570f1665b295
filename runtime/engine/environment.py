"""The process environment: settings applied before JAX starts, and the environment class.

XLA reads `XLA_FLAGS` and `NPROC` when its backend initialises, so they must be
in `os.environ` before the first JAX computation; jax.config values are set
right after import. The environment class lists everything that, besides the
trajectory, decides the bits: bitwise equality is promised only within one class.
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Iterable
from importlib import metadata
from typing import Any

from expspec.compiler import DeterminismPlan, digest
from expspec.errors import RunFailure

__all__ = ["LateSettingsError", "apply_determinism", "environment_class"]

_PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy")


class LateSettingsError(RunFailure, RuntimeError):
    """The determinism settings can no longer be applied in this process."""


def _backend_started() -> bool:
    if "jax" not in sys.modules:
        return False
    from jax._src import xla_bridge

    return bool(getattr(xla_bridge, "_backends", {}))


def apply_determinism(plan: DeterminismPlan) -> None:
    """Set the plan's environment variables, XLA flags and JAX config.

    Idempotent. Raises if a JAX backend already started with other settings,
    since they would silently not apply.
    """
    wanted_flags = [f for f in plan.xla_flags if f not in os.environ.get("XLA_FLAGS", "").split()]
    changes = {k: v for k, v in plan.env.items() if os.environ.get(k) != v}
    if (wanted_flags or changes) and _backend_started():
        raise LateSettingsError(
            "JAX started before the plan's settings were applied "
            f"(missing {', '.join([*changes, *wanted_flags])}); run in a fresh process"
        )
    os.environ.update(changes)
    if wanted_flags:
        os.environ["XLA_FLAGS"] = " ".join([os.environ.get("XLA_FLAGS", ""), *wanted_flags]).strip()
    import jax

    for name, value in plan.jax_config.items():
        if name == "jax_default_matmul_precision" and value == "default":
            value = None  # JAX's own default; "default" names the same thing
        jax.config.update(name, value)


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "absent"


def environment_class(mesh_shape: dict[str, int], imported: Iterable[str] = ()) -> dict[str, Any]:
    """Everything besides the trajectory that decides the bits, and its digest.

    `imported` names the installed distributions custom code imports (the
    plan's `distributions`); their versions join the fixed list, which is
    unchanged without them so the class of a spec without custom code is too.
    """
    import jax

    devices = jax.devices()
    packages = {name: _version(name) for name in _PACKAGES}
    packages.update({name: _version(name) for name in sorted(set(imported)) if name not in packages})
    cls = {
        "packages": packages,
        "python": ".".join(platform.python_version_tuple()[:2]),
        "machine": platform.machine(),
        "backend": jax.default_backend(),
        "device_kind": devices[0].device_kind,
        "device_count": len(devices),
        "process_count": jax.process_count(),
        "mesh": mesh_shape,
        "xla_flags": sorted(os.environ.get("XLA_FLAGS", "").split()),
        "cpu_threads": os.environ.get("NPROC"),
        "x64": bool(jax.config.read("jax_enable_x64")),
    }
    return {"class": cls, "class_id": digest(cls)[:16], "platform": platform.platform()}
