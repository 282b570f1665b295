"""Running one fuzz case through the real command line and checking every promise.

Part of the spec-mutation fuzzer (`fuzz_specs.py`). `Trial` writes a `Case`
into its workspace, runs `exp validate`/`plan`/`run` in-process, and records
each broken promise in an `Outcome`: a traceback, an exit code other than 0/2,
an error line not shaped `FILE[:LINE]: text`, a refusal that does not name what
it should, or any file written or planted module imported (seen by `snapshot`).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import random
import re
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from expspec.cli import app
from tests.reliability.fuzz_workspace import ROOT, Case, Workspace

# ---------------------------------------------------------------------------
# Running a case and checking every promise.


def snapshot(*roots: Path) -> dict[str, str]:
    """Every path under `roots` with a digest of its content: any write shows up as a difference."""
    out: dict[str, str] = {}
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames + filenames:
                path = os.path.join(dirpath, name)
                if os.path.islink(path):
                    out[path] = "link:" + os.readlink(path)
                elif os.path.isdir(path):
                    out[path] = "dir"
                else:
                    with open(path, "rb") as handle:
                        out[path] = hashlib.sha256(handle.read()).hexdigest()
    return out


def line_pattern(ws: Workspace) -> re.Pattern[str]:
    """`FILE[:LINE]: text`, FILE being the spec, `<command line>`, or another spec file of the workspace."""
    files = "|".join([re.escape(str(ws.main)), re.escape("<command line>"), re.escape(str(ws.root)) + r"/[^:\n]+"])
    return re.compile(rf"^(?:{files})(?::[1-9][0-9]*)?: [^\s\x00-\x1f\x7f][^\x00-\x1f\x7f]*$")


@dataclass
class Outcome:
    """What one trial did."""

    exit: int | None = None
    """Exit status of the first command (validate, or plan when the case has overrides)."""
    traceback: bool = False
    files: bool = False
    failures: list[str] = field(default_factory=list)
    """One `category: detail` line per broken promise."""
    log: list[str] = field(default_factory=list)
    """Commands, outputs and exceptions, for the failure report."""
    outputs: list[str] = field(default_factory=list)
    """What each command printed (stdout and stderr), in order."""


def _expected_problems(ws: Workspace, overrides: tuple[str, ...]) -> list[str] | None:
    """The problem lines the library reports, to hold the command line's output to."""
    from expspec.compiler import plan_spec
    from expspec.spec import SpecError

    try:
        with contextlib.redirect_stderr(io.StringIO()):  # the command's own run shows any noise
            plan_spec(ws.main, list(overrides))
    except SpecError as err:
        return [str(p) for p in err.problems]
    except Exception:  # noqa: BLE001 - the command reports this one as a traceback
        return None
    return []


def _has_custom_targets(ws: Workspace) -> bool:
    from expspec.compiler import plan_spec
    from expspec.spec import custom_targets

    try:
        with contextlib.redirect_stderr(io.StringIO()):
            return bool(custom_targets(plan_spec(ws.main).spec))
    except Exception:  # noqa: BLE001
        return False


class Trial:
    """Runs the commands of one case in its workspace and records broken promises."""

    def __init__(self, ws: Workspace, case: Case, rng: random.Random) -> None:
        self.ws, self.case, self.rng = ws, case, rng
        self.outcome = Outcome()
        self.pattern = line_pattern(ws)
        self.runner = CliRunner()

    def fail(self, category: str, detail: str) -> None:
        self.outcome.failures.append(f"{category}: {detail}")

    def invoke(self, args: list[str], expected: list[str] | None = None, must_hold: str | None = None) -> int:
        """Run `exp ARGS` in-process and check the promises every command makes."""
        before_modules = set(sys.modules)
        before = snapshot(self.ws.root)
        with contextlib.chdir(self.ws.cwd):
            result = self.runner.invoke(app, args)
        after = snapshot(self.ws.root)
        shown = " ".join(repr(a) if not a.isprintable() or " " in a else a for a in args)[:400]
        self.outcome.outputs.append(result.output)
        self.outcome.log.append(f"$ exp {shown}\n  exit {result.exit_code}; output: {result.output[:3000]!r}")
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            self.outcome.traceback = True
            self.outcome.log.append("  " + "\n  ".join(_where(result.exc_info, result.exception)))
            self.fail("traceback", f"{type(result.exception).__name__}: {str(result.exception)[:200]}")
        elif "Traceback" in result.output:
            self.outcome.traceback = True
            self.fail("traceback", "'Traceback' in the output")
        elif result.exit_code not in (0, 2):
            self.fail("exit code", f"{result.exit_code} from exp {args[0]}")
        imported = [m for m in set(sys.modules) - before_modules if _planted(sys.modules.get(m), self.ws)]
        for name in imported:
            sys.modules.pop(name, None)
        if after != before or imported:
            self.outcome.files = True
            added = sorted(set(after) - set(before))
            changed = sorted(p for p in set(after) & set(before) if after[p] != before[p])
            removed = sorted(set(before) - set(after))
            self.fail(
                "files",
                f"exp {args[0]}: created {added[:5]}, changed {changed[:5]}, removed {removed[:5]}, imported {imported}",
            )
        if result.exit_code == 2 and (result.exception is None or isinstance(result.exception, SystemExit)):
            self.check_lines(args, result.output, expected, must_hold)
        return result.exit_code

    def check_lines(self, args: list[str], output: str, expected: list[str] | None, must_hold: str | None) -> None:
        lines = [line for line in output.splitlines() if line.strip()]
        if not lines:
            self.fail("error lines", f"exp {args[0]} exited 2 and printed nothing")
        bad = [line for line in lines if not self.pattern.match(line)]
        if bad:
            self.fail("error lines", f"exp {args[0]}: not FILE[:LINE]: ...: {bad[0][:300]!r}")
        if expected is not None and lines != expected:
            self.fail("error lines", f"exp {args[0]} printed {lines[:3]!r}, the problems are {expected[:3]!r}")
        if must_hold is not None and not any(must_hold in line for line in lines):
            self.fail("expectation", f"exp {args[0]}: no problem line holds {must_hold!r}: {lines[:3]!r}")

    def run(self) -> Outcome:
        ws, case, rng = self.ws, self.case, self.rng
        main = str(ws.main)
        must_hold = case.expect if case.expect not in (None, "accept", "same") else None
        baseline = None
        if case.expect == "same":  # the unmutated spec, for comparison
            with contextlib.chdir(ws.cwd):
                result = self.runner.invoke(app, ["validate", main])
            baseline = (result.exit_code, result.output)
        write_case(ws, case)
        allow = [a for prefix in case.allow for a in ("--allow-import", prefix)]
        if case.overrides:
            expected = _expected_problems(ws, case.overrides)
            first = ["plan", main, "--json", "--", *case.overrides]
            code = self.invoke(first, expected, must_hold)
        else:
            expected = _expected_problems(ws, ())
            first = ["validate", main, *allow]
            code = self.invoke(first, expected, must_hold)
            if rng.random() < 0.3:
                self.invoke(["plan", main, "--json"], expected, must_hold)
        self.outcome.exit = code
        if case.expect == "accept" and code != 0:
            self.fail("expectation", "a spec that must be accepted was refused")
        if must_hold is not None and code == 0:
            self.fail("expectation", f"accepted, but a problem holding {must_hold!r} was expected")
        if baseline is not None:
            with contextlib.chdir(ws.cwd):
                result = self.runner.invoke(app, ["validate", main])
            if (result.exit_code, result.output) != baseline:
                self.fail("expectation", f"{case.note}: output differs from the unmutated spec's: {result.output!r}")
        run_dir = str(ws.cwd / "run")
        if code == 2 and rng.random() < 0.3:
            # Refused by validate/plan: `exp run` must refuse it too, before writing anything.
            self.invoke(["run", main, "--run-dir", run_dir, *allow, "--", *case.overrides], None, must_hold)
        elif code == 0 and not case.overrides and _has_custom_targets(ws) and rng.random() < 0.5:
            # Accepted, but importing the targets needs --allow-import: refused, nothing run.
            run = self.invoke(["run", main, "--run-dir", run_dir, *allow], None, "--allow-import")
            if run != 2:
                self.fail("expectation", f"exp run of custom targets without --allow-import exited {run}")
        return self.outcome


def _where(exc_info: Any, exception: BaseException) -> list[str]:
    """The project's frames of a traceback (where to fix it), then its last library frame and the error."""
    frames = traceback.extract_tb(exc_info[2]) if exc_info else []
    ours = [f for f in frames if f.filename.startswith(str(ROOT)) and "/.venv/" not in f.filename]
    shown = [*ours[-4:], *frames[-1:]] if frames and frames[-1] not in ours else ours[-5:]
    lines = [f"{Path(f.filename).name}:{f.lineno} in {f.name}: {(f.line or '').strip()}" for f in shown]
    return [*lines, f"{type(exception).__name__}: {str(exception)[:300]}"]


def _planted(module: Any, ws: Workspace) -> bool:
    path = getattr(module, "__file__", None) or ""
    return str(path).startswith(str(ws.root)) or getattr(module, "__name__", "").startswith("exp_fuzz_")


def write_case(ws: Workspace, case: Case) -> None:
    ws.main.write_bytes(case.text)
    for rel, content in case.files.items():
        path = ws.folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    for name, target in case.links.items():
        (ws.folder / name).symlink_to(target)
