"""The command line of every `exp` child process: the audit's runs, a sweep's
points, the members of `exp launch`, and the benchmarks' runs.

One builder, so that how a parent starts `exp` is decided in one place. Children
run this interpreter with `-P`: a folder named like the package in the working
directory must never shadow the installed one.
No JAX here: the supervisors that use it import none.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from os import PathLike

__all__ = ["exp_argv", "exp_run_argv"]


def exp_argv(*args: str) -> list[str]:
    """The argv of `exp ARGS` run by this interpreter."""
    return [sys.executable, "-P", "-m", "expspec", *args]


def exp_run_argv(
    spec: str | PathLike[str],
    overrides: Sequence[str],
    run_dir: str | PathLike[str],
    *,
    stop_at: int | None = None,
    allow_imports: Sequence[str] = (),
    json: bool = False,
    quiet: bool = False,
) -> list[str]:
    """The argv of `exp run SPEC OVERRIDES... --run-dir RUN_DIR` with the given options.

    The spec and overrides come after "--", so that one that starts with "-" is
    still an argument, not an option."""
    args = ["run", "--run-dir", str(run_dir)]
    if stop_at is not None:
        args += ["--stop-at", str(stop_at)]
    for prefix in allow_imports:
        args += ["--allow-import", prefix]
    if json:
        args.append("--json")
    if quiet:
        args.append("-q")
    return exp_argv(*args, "--", str(spec), *overrides)
