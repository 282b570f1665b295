"""Which component errors are the user's input (exit 2) rather than a failure (exit 3)."""

from __future__ import annotations

__all__ = ["input_error"]


def input_error(err: BaseException) -> str | None:
    """A one-line message when `err` means bad input (data or model that cannot be
    built as specified), else None."""
    from exp.compiler import MeshError
    from exp.spec import ImportNotAllowed

    from .cluster import ClusterError
    from .data import DataError
    from .models import ModelError
    from .tensorboard import TensorBoardMissing

    if isinstance(err, DataError | ModelError | ImportNotAllowed | MeshError | ClusterError | TensorBoardMissing):
        return str(err)
    return None
