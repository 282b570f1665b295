"""Mutation fuzzing of spec files: a hostile spec is accepted or refused, never more.

    python -m tests.reliability.fuzz_specs --count 2000 --seed 0

A spec is the one input of `exp` that may come from someone else (a shared
repository, a pull request, a downloaded experiment), so the loader is a trust
boundary. Whatever bytes a spec holds, `exp validate`, `exp plan` and `exp run`
must either accept it or exit 2 with one readable line per problem; they must
never show a Python traceback, never write anything (no `runs/`, nothing beside
the spec, nothing in the working directory) and never run the code of a
`custom` target without `--allow-import`.

Each trial copies the folder of one example spec into a fresh temporary
directory (so relative `extends` still resolve), mutates the spec, and runs the
real command line code in-process (`CliRunner().invoke(expspec.cli.app, ...)`)
with the working directory set to an empty folder. A trial's random choices
depend only on `--seed` and its index, so `--trial N` replays one. The last
line printed is

    mutated specs tried: N, accepted: A, rejected with exit 2: R, tracebacks: T, files created: F

and the exit status is non-zero when T or F is, or when any other promise
broke (an exit code other than 0/2, an error line in the wrong shape, a
refusal that does not name what it should).

This module is the trial loop and its command line; the parts live beside it:
`fuzz_toml` (TOML writing, walking parsed specs), `fuzz_values` (hostile
values and names), `fuzz_workspace` (example specs, workspaces, planted
modules), `fuzz_mutations` (one mutation per kind) and `fuzz_trial` (running
a case and checking every promise).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

from tests.reliability.fuzz_mutations import KINDS, make_case
from tests.reliability.fuzz_trial import Outcome, Trial
from tests.reliability.fuzz_workspace import EXAMPLES, SPECS, Case, workspace

SUMMARY = "mutated specs tried: {n}, accepted: {a}, rejected with exit 2: {r}, tracebacks: {t}, files created: {f}"


def trial_rng(seed: int, index: int) -> random.Random:
    return random.Random(f"{seed}:{index}")


def run_trial(seed: int, index: int, kind: str | None = None, spec: Path | None = None) -> tuple[Case, Outcome]:
    """Trial `index` of the run seeded `seed`; `kind` and `spec` replace what it would draw."""
    rng = trial_rng(seed, index)
    drawn_spec, drawn_kind = rng.choice(SPECS), rng.choice(KINDS)  # drawn always: forcing keeps the stream
    spec, kind = spec or drawn_spec, kind or drawn_kind
    with workspace(spec) as ws:
        case = make_case(rng, kind, ws)
        case.spec = spec
        return case, Trial(ws, case, rng).run()


def report(seed: int, index: int, case: Case, outcome: Outcome) -> str:
    """Everything needed to see and replay a failing trial."""
    spec = case.spec.relative_to(EXAMPLES) if case.spec else "?"
    lines = [
        f"FAILED trial {index} of seed {seed}, {spec}, {case.kind}: {case.note[:300]}",
        f"  replay: python -m tests.reliability.fuzz_specs --seed {seed} --trial {index} --kind {case.kind} --spec {spec}",
        *(f"  {f}" for f in outcome.failures),
        f"  mutated spec: {case.text[:4000]!r}",
    ]
    lines += [f"  extra file {rel}: {content[:300]!r}" for rel, content in case.files.items()]
    lines += [f"  link {name} -> {target}" for name, target in case.links.items()]
    lines += ["  " + entry.replace("\n", "\n  ") for entry in outcome.log]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.reliability.fuzz_specs", description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=500, help="number of mutated specs to try")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--trial", type=int, default=None, help="replay only this trial of the seeded run")
    parser.add_argument("--kind", choices=KINDS, default=None, help="only this mutation kind")
    parser.add_argument("--spec", default=None, help="only this example (path under examples/)")
    parser.add_argument("--show", type=int, default=10, help="failing trials to print in full")
    args = parser.parse_args(argv)

    print(f"seed {args.seed}", flush=True)
    indices = [args.trial] if args.trial is not None else range(args.count)
    n = accepted = rejected = tracebacks = created = other = shown = 0
    start = time.perf_counter()
    for index in indices:
        case, outcome = run_trial(args.seed, index, args.kind, EXAMPLES / args.spec if args.spec else None)
        n += 1
        accepted += outcome.exit == 0
        rejected += outcome.exit == 2
        tracebacks += outcome.traceback
        created += outcome.files
        other += bool(outcome.failures) and not (outcome.traceback or outcome.files)
        if outcome.failures and shown < args.show:
            shown += 1
            print(report(args.seed, index, case, outcome), flush=True)
    print(SUMMARY.format(n=n, a=accepted, r=rejected, t=tracebacks, f=created), flush=True)
    if other:
        print(f"other broken promises (exit code, error-line shape, expectations): {other} trials", flush=True)
    print(f"wall time: {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
    return 1 if tracebacks or created or other else 0


if __name__ == "__main__":
    sys.exit(main())
