"""Break the product on purpose, in a scratch copy, and check that the tests notice.

A test whose name promises a behaviour must fail when that behaviour is gone.
Each mutation below removes one behaviour (resume, commit-before-record,
seeding, ...) from a copy of the repository; the tests named with it are run
against the copy, and the table says whether any of them failed.

    python -m tests.mutations                 # every mutation
    python -m tests.mutations --only resume-disabled --scratch /tmp/mut

Not part of the suite (it takes minutes). The real checkout is only read: the
copy gets its own virtual environment, whose `.pth` borrows this one's
installed packages and whose editable install points at the copy, so the
`exp run` processes the tests start run the mutated code too. The environment
is built once; each mutation re-copies only the file it changes.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MARKER = ".exp-mutations-scratch"
"""Written into the scratch folder, so a rerun deletes only a folder this script made."""


@dataclass(frozen=True)
class Mutation:
    name: str
    what: str
    path: str
    """The file changed, relative to the repository root."""
    old: str | None
    new: str
    """`old` must occur exactly once in the file and is replaced by `new`; with `old` None, `new` is
    appended (a later definition of a function replaces the earlier one for every importer)."""
    tests: tuple[str, ...]
    """pytest node ids that must catch it."""


RESUME = "tests/runtime/test_resume.py"
STORM = "tests/reliability/test_kill_storm.py::test_storm_fast_subset"

MUTATIONS = (
    Mutation(
        "resume-disabled",
        "find_resume_point returns None: every attempt starts again from step 0",
        "runtime/engine/resume.py",
        None,
        "\n\ndef find_resume_point(checkpointer, comps):  # the mutation\n    return None\n",
        (
            f"{RESUME}::test_resumed_run_equals_uninterrupted_run_bitwise[digits]",
            f"{RESUME}::test_sigkill_at_a_random_step_then_restart",
            f"{RESUME}::test_sigterm_exits_75_with_a_checkpoint_and_resumes_bitwise",
            "tests/reliability/test_no_pickle.py::test_resuming_from_a_checkpoint_unpickles_nothing",
            STORM,
        ),
    ),
    Mutation(
        "records-before-commit",
        "a checkpoint is ledgered when handed to Orbax, before its write commits",
        "runtime/engine/loop.py",
        "self.uncommitted.append((step, digest))",
        'self.rec.ledger.write({"kind": "checkpoint", "step": step, "full_hash": digest, "attempt": self.attempt})',
        (STORM, "tests/reliability/test_disk_full.py", f"{RESUME}::test_sigkill_at_a_random_step_then_restart"),
    ),
    Mutation(
        "custom-seed-ignored",
        "a custom model's factory gets nnx.Rngs(0) whatever the seed",
        "runtime/models/custom.py",
        "factory(nnx.Rngs(params=ctx.init_seed, dropout=ctx.init_seed), **spec.args)",
        "factory(nnx.Rngs(0), **spec.args)",
        ("tests/runtime/test_models.py::test_custom_builds_with_allowance_and_is_seeded",),
    ),
    Mutation(
        "no-before-first-step",
        "a stop asked for before the first step is noticed only after step 1",
        "runtime/engine/loop.py",
        "        if self.guard.requested and not self.cluster.multi:  # asked to stop before the first step\n"
        '            return LoopResult("preempted", start, state, None, self.guard.requested)\n',
        "",
        (f"{RESUME}::test_sigterm_before_the_first_step_still_exits_75",),
    ),
    Mutation(
        "throttle-compiles-twice",
        'max_inflight="auto" analyses a second jit wrapper: the loop compiles the step again',
        "runtime/engine/throttle.py",
        "stats = train.lower(state, batch).compile().memory_analysis()",
        "stats = jax.jit(train.__wrapped__, donate_argnums=0).lower(state, batch).compile().memory_analysis()",
        (
            "tests/runtime/test_throttle.py::test_choosing_compiles_the_step_the_loop_then_runs",
            "tests/runtime/test_throttle.py::test_a_run_with_auto_records_its_choice",
        ),
    ),
    Mutation(
        "lora-trains-base",
        "with LoRA on, the optimizer updates the base weights too",
        "runtime/models/__init__.py",
        "return nnx.LoRAParam if spec.lora is not None else nnx.Param",
        "return nnx.Param",
        ("tests/runtime/test_examples.py::test_lora_trains_adapters_only_and_saves_10x_less",),
    ),
    Mutation(
        "cluster-needs-launcher",
        "a cluster member needs a variable only `exp launch` sets, so a scheduler's members fail",
        "runtime/processes/cluster.py",
        "    how = requested_cluster(env)\n",
        '    how = requested_cluster(env)\n    if how is not None:\n        env["JAX_COORDINATOR_BIND_ADDRESS"]\n',
        ("tests/runtime/test_cluster.py::test_a_cluster_started_by_a_scheduler_trains_without_the_launcher",),
    ),
    Mutation(
        "plan-imports-jax",
        "`exp plan` imports JAX once the spec has compiled",
        "expspec/cli/plan.py",
        "        fail_invalid(err)\n    if devices is not None:\n",
        "        fail_invalid(err)\n    import jax  # noqa: F401\n    if devices is not None:\n",
        ("tests/cli/test_cli.py::test_cli_commands_import_no_jax",),
    ),
)


# -- the scratch copy ----------------------------------------------------------


def _repository_files() -> list[str]:
    """Tracked and untracked-but-not-ignored files of the checkout (git is only read)."""
    out = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout
    return [name for name in out.decode().split("\0") if name and (ROOT / name).is_file()]


def _fresh_folder(scratch: Path) -> None:
    if scratch.exists():
        if not (scratch / MARKER).exists():
            raise SystemExit(f"{scratch} exists and was not made by this script; choose another --scratch")
        shutil.rmtree(scratch)
    scratch.mkdir(parents=True)
    (scratch / MARKER).write_text("made by python -m tests.mutations; safe to delete\n")


def build_copy(scratch: Path) -> Path:
    """Copy the checkout to `scratch` with its own editable install; the copy's python."""
    if sys.prefix == sys.base_prefix:
        raise SystemExit("run this with the python of the virtual environment the project is installed in")
    _fresh_folder(scratch)
    for name in _repository_files():
        target = scratch / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(scratch / ".venv")], check=True)
    python = scratch / ".venv" / "bin" / "python"
    site = Path(
        subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    # A plain path line: this venv's packages, without its own .pth files (so not its editable `exp`).
    (site / "zz_main_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [python, "-m", "pip", "install", "-q", "--no-deps", "-e", str(scratch)], check=True, env=_env(scratch)
    )
    where = subprocess.run(
        [python, "-c", "import expspec.runtime; print(expspec.runtime.__file__)"],
        cwd=tempfile.gettempdir(),
        capture_output=True,
        text=True,
        env=_env(scratch),
    ).stdout.strip()
    if not where.startswith(str(scratch)):
        raise SystemExit(f"the copy imports exp from {where or 'nowhere'}, not from {scratch}")
    return python


def _env(scratch: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["VIRTUAL_ENV"] = str(scratch / ".venv")
    env["PATH"] = f"{scratch / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


# -- running tests against it --------------------------------------------------


@dataclass
class Outcome:
    ran: int
    failed: list[str]
    skipped: int
    code: int
    seconds: float


def run_tests(python: Path, scratch: Path, tests: tuple[str, ...], label: str) -> Outcome:
    report = scratch / f".junit-{label}.xml"
    began = time.monotonic()
    done = subprocess.run(
        [python, "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider", f"--junitxml={report}", *tests],
        cwd=scratch,
        env=_env(scratch),
        capture_output=True,
        text=True,
        timeout=3600,
    )
    seconds = time.monotonic() - began
    ran, failed, skipped = 0, [], 0
    if report.exists():
        for case in ET.parse(report).iter("testcase"):
            ran += 1
            if case.find("skipped") is not None:
                skipped += 1
            elif case.find("failure") is not None or case.find("error") is not None:
                failed.append(f"{case.get('classname', '').rsplit('.', 1)[-1]}::{case.get('name')}")
    if done.returncode not in (0, 1):
        sys.stderr.write(done.stdout[-3000:] + done.stderr[-3000:])
    return Outcome(ran, failed, skipped, done.returncode, seconds)


def _verdict(outcome: Outcome, broken_before: set[str]) -> str:
    caught = [name for name in outcome.failed if name not in broken_before]
    if caught:
        return "caught by " + ", ".join(caught)
    if outcome.code not in (0, 1):
        return f"ERROR (pytest exit {outcome.code})"
    if outcome.ran and outcome.skipped == outcome.ran:
        return "MISSED (every test skipped)"
    return "MISSED"


def _apply(scratch: Path, mutation: Mutation) -> bool:
    """Write the mutated file into the copy; False when the product no longer holds `old` once."""
    text = (ROOT / mutation.path).read_text()
    if mutation.old is None:
        (scratch / mutation.path).write_text(text + mutation.new)
        return True
    if text.count(mutation.old) != 1:
        return False
    (scratch / mutation.path).write_text(text.replace(mutation.old, mutation.new))
    return True


def _restore(scratch: Path, mutation: Mutation) -> None:
    shutil.copy2(ROOT / mutation.path, scratch / mutation.path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.mutations", description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", metavar="NAME", choices=[m.name for m in MUTATIONS])
    parser.add_argument("--scratch", type=Path, default=Path(tempfile.gettempdir()) / "exp-mutations")
    parser.add_argument("--no-baseline", action="store_true", help="skip running the tests on the unmutated copy")
    args = parser.parse_args(argv)
    chosen = [m for m in MUTATIONS if not args.only or m.name in args.only]
    scratch = args.scratch.absolute()
    print(f"copying {ROOT} to {scratch}", flush=True)
    python = build_copy(scratch)

    broken_before: set[str] = set()
    if not args.no_baseline:
        every = tuple(dict.fromkeys(t for m in chosen for t in m.tests))
        base = run_tests(python, scratch, every, "baseline")
        broken_before = set(base.failed)
        print(f"baseline: {base.ran} tests, {len(base.failed)} failed, {base.skipped} skipped ({base.seconds:.0f} s)")
        for name in base.failed:
            print(f"  fails unmutated (not counted as a catch): {name}")

    rows = []
    for mutation in chosen:
        if not _apply(scratch, mutation):
            rows.append((mutation.name, "-", f"STALE: {mutation.path} no longer holds the text once"))
            continue
        try:
            outcome = run_tests(python, scratch, mutation.tests, mutation.name)
        finally:
            _restore(scratch, mutation)
        rows.append((mutation.name, f"{outcome.ran} ({outcome.seconds:.0f} s)", _verdict(outcome, broken_before)))
        print(f"{mutation.name}: {rows[-1][2]}", flush=True)

    header = ("mutation", "tests run", "result")
    widths = [max(len(str(r[i])) for r in (header, *rows)) for i in range(2)]
    print()
    for row in (header, *rows):
        print(f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]}")
    return 0 if all(r[2].startswith("caught") for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
