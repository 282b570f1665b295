"""`exp run` against Tunix's `PeftTrainer` and the LoRA example against its hand-written loop: P14, P15, P16.

    python bench/tunix_compare.py --tunix-python TUNIX_VENV/bin/python --json out.json   # about 16 minutes
    python bench/tunix_compare.py --quick --tunix-python ...                            # about 8 minutes
    EXPSPEC_TUNIX_PYTHON=TUNIX_VENV/bin/python python bench/tunix_compare.py --parts mlp,resume

The Tunix side runs bench/tunix_trainer.py under a separate Python that has
`google-tunix` installed (see that file); this script runs under the project's
and starts it as a child. Without one (`--tunix-python` or
`$EXPSPEC_TUNIX_PYTHON`) the Tunix rows say "not measured". Every side is a
fresh process, rounds alternate the sides, figures are medians; every process
gets the scratch folder's `$EXPSPEC_CACHE_DIR`.

- P14 (part `lm`): steps/s of `exp run examples/sft_lora.toml` with its
  checkpoints, against bench/pretrained.py's hand-written loop on the same
  model, weights and batches (its L1); >= 0.95.
- P15: the same work under `PeftTrainer` with its own Orbax checkpoints every
  100 steps. Part `mlp`: the digits MLP (dropout as the example, 0.1), steps/s
  over (first, last], >= 3x; the same with Tunix's documented bar-less loop
  (no `max_steps`), no target. Part `lm`: the LoRA example, tokens/s, >= 1.2x.
  Each also compares the final trained parameters: the full hash and the
  per-leaf hashes of `exp run`'s last checkpoint against Tunix's, same paths.
- P16 (part `resume`): time from process start to the first step after
  resuming at step N (10,000), against a fresh run's time to its first step
  (same spec, warm compilation cache), <= 1.2; the same for Tunix, which
  restores its checkpoint and then reads and discards the N batches it has
  trained, no target. Each resumed round starts from a copy of one stopped run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import pretrained
from common import (
    DIGITS,
    ROOT,
    Row,
    at_least,
    at_most,
    median,
    not_measured,
    rate_between,
    run_process,
    scratch,
    table,
    train_records,
    write_report,
)

from expspec.runtime.processes.child_command import exp_run_argv

TRAINER = ROOT / "bench" / "tunix_trainer.py"
NO_TUNIX = "no --tunix-python"
MLP_TARGET = 3.0
LM_TARGET = 1.2
RESUME_TARGET = 1.2
PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy", "google-tunix")


def tunix_python(given: str | None) -> str | None:
    """The Python with Tunix installed: `--tunix-python`, else `$EXPSPEC_TUNIX_PYTHON`, else None."""
    return given or os.environ.get("EXPSPEC_TUNIX_PYTHON") or None


def _json_child(argv: list[str], env: dict[str, str]) -> dict[str, Any]:
    """The child's last stdout line as JSON, with `started_at`: `time.time()` just before it was spawned."""
    proc = run_process(argv, env=env, timeout=1800)
    return {**json.loads(proc.stdout.strip().splitlines()[-1]), "started_at": proc.started_at}


def environments(tunix: str) -> dict[str, Any]:
    """Both Pythons' versions of the packages that decide speed and bits (and Tunix's, on its side)."""
    from importlib import metadata

    code = f"import json, importlib.metadata as m; print(json.dumps({{p: m.version(p) for p in {PACKAGES!r}}}))"
    theirs = json.loads(run_process([tunix, "-c", code]).stdout)
    ours = {p: metadata.version(p) for p in PACKAGES[:-1]}
    return {"expspec_side": ours, "tunix_side": theirs, "same": all(ours[p] == theirs[p] for p in ours)}


def _tunix(python: str, env: dict[str, str], *args: str) -> dict[str, Any]:
    return _json_child([python, str(TRAINER), *args], env)


def _exp(spec: Path, run_dir: Path, env: dict[str, str], overrides: list[str], stop_at: int | None = None) -> Any:
    return run_process(exp_run_argv(spec, overrides, run_dir, stop_at=stop_at, quiet=True), env=env, timeout=1800)


def params_of(run_dir: Path) -> dict[str, Any]:
    """In a fresh process: hashes of the trained parameters in the run's newest checkpoint (verified read)."""
    from expspec.runtime.engine.checkpoint_reads import committed_steps, read_verified
    from expspec.runtime.engine.hashing import full_hash, leaf_hashes
    from expspec.runtime.runs.run_files import RunFiles

    directory = RunFiles(run_dir).default_checkpoints
    step = committed_steps(directory)[-1]
    state, _ = read_verified(directory, step)
    return {"step": step, "full_hash": full_hash(state["params"]), "leaf_hashes": leaf_hashes(state["params"])}


def same_bits(run_dir: Path, env: dict[str, str], tunix_out: dict[str, Any]) -> dict[str, Any]:
    """Whether `exp run`'s final parameters are Tunix's, as a whole and leaf by leaf."""
    ours = _json_child([sys.executable, __file__, "--params-of", str(run_dir)], env)
    mine, theirs = ours["leaf_hashes"], tunix_out["params_leaf_hashes"]
    differ = sorted(p for p in mine.keys() | theirs.keys() if mine.get(p) != theirs.get(p))
    return {
        "equal": ours["full_hash"] == tunix_out["params_full_hash"],
        "exp_full_hash": ours["full_hash"],
        "tunix_full_hash": tunix_out["params_full_hash"],
        "step": ours["step"],
        "leaves": len(mine),
        "leaves_equal": len(mine) - len([p for p in differ if p in mine]),
        "leaves_differ": differ,
    }


def measure_mlp(tunix: str | None, first: int, last: int, repeats: int) -> list[Row]:
    """P15, digits MLP: `exp run` and `PeftTrainer` (with and without its progress bar), checkpoints every 100."""
    measure = "exp run vs Tunix PeftTrainer steps/s, digits MLP, checkpoints every 100"
    bare = "exp run vs Tunix PeftTrainer without max_steps (no progress bar), digits MLP"
    overrides = [f"train.steps={last}", "train.eval_every=0", "train.log_every=10"]
    exp, bar, no_bar, bits = [], [], [], None
    with scratch("tunix-mlp") as work:
        env = {**os.environ, "EXPSPEC_CACHE_DIR": str(work / "exp-cache")}
        for i in range(repeats):
            run_dir = work / f"exp-{i}"
            _exp(DIGITS, run_dir, env, overrides)
            exp.append(rate_between(train_records(run_dir), first, last))
            if tunix is None:
                continue
            window = ["--steps", str(last), "--first", str(first), "--last", str(last)]
            out = _tunix(tunix, env, "mlp", *window, "--checkpoints", str(work / f"tunix-{i}"), "--hash-params")
            bar.append(out["steps_per_s"])
            if bits is None:
                bits = same_bits(run_dir, env, out)
            out = _tunix(tunix, env, "mlp", *window, "--checkpoints", str(work / f"tunix-bare-{i}"), "--no-bar")
            no_bar.append(out["steps_per_s"])
    if tunix is None:
        return [not_measured("P15", measure, "steps/s", f">= {MLP_TARGET:g}", NO_TUNIX)]
    e, t, b = median(exp), median(bar), median(no_bar)
    notes = {
        "window": f"({first}, {last}]",
        "repeats": repeats,
        "exp_steps_per_s": exp,
        "tunix_steps_per_s": bar,
        "tunix_no_bar_steps_per_s": no_bar,
        "same_final_bits": bits,
        "environments": environments(tunix),
    }
    target, met = at_least(e / t, MLP_TARGET)
    return [
        Row("P15", measure, e, t, "steps/s", e / t, target, met, notes),
        Row("P15", bare, e, b, "steps/s", e / b, "(none)", None, {"window": notes["window"], "repeats": repeats}),
    ]


def measure_lm(tunix: str | None, first: int, last: int, repeats: int) -> list[Row]:
    """P14 and P15's language-model row: one folder, rounds of hand-written loop, `exp run` and `PeftTrainer`."""
    measure = "exp run vs Tunix PeftTrainer tokens/s, sft_lora, checkpoints every 100"
    hand, exp, saves, theirs, bits = [], [], [], [], None
    with scratch("tunix-lm") as work:
        env = {**os.environ, "EXPSPEC_CACHE_DIR": str(work / "exp-cache")}
        folder = pretrained.example_folder(work)
        for i in range(repeats):
            out = pretrained.hand_round(folder, env, first, last)
            hand.append(out["steps_per_s"])
            run_dir = work / f"exp-{i}"
            rate, saved = pretrained.exp_round(folder, run_dir, env, first, last, out["trained"], checkpoints=True)
            exp.append(rate)
            saves.append(saved)
            if tunix is None:
                continue
            window = ["--steps", str(last), "--first", str(first), "--last", str(last), "--folder", str(folder)]
            tun = _tunix(tunix, env, "lm", *window, "--checkpoints", str(work / f"tunix-{i}"), "--hash-params")
            theirs.append(tun["tokens_per_s"])
            if bits is None:
                bits = same_bits(run_dir, env, tun)
    window = f"({first}, {last}]"
    p14_measure = "exp run steps/s, sft_lora, checkpoints as the example"
    p14 = pretrained.speed_row("P14", p14_measure, exp, hand, saves, out, window)
    if tunix is None:
        return [p14, not_measured("P15", measure, "tokens/s", f">= {LM_TARGET:g}", NO_TUNIX)]
    tokens = p14.notes["tokens_per_step"]
    e, t = median(exp) * tokens, median(theirs)
    notes = {
        "window": window,
        "repeats": repeats,
        "exp_tokens_per_s": [r * tokens for r in exp],
        "tunix_tokens_per_s": theirs,
        "same_final_bits": bits,
        "environments": environments(tunix),
    }
    target, met = at_least(e / t, LM_TARGET)
    return [p14, Row("P15", measure, e, t, "tokens/s", e / t, target, met, notes)]


def _first_record(run_dir: Path, after: int) -> dict[str, Any]:
    return next(r for r in train_records(run_dir) if r["step"] > after)


def measure_resume(tunix: str | None, at: int, repeats: int) -> list[Row]:
    """P16: process start to the first step after resuming at `at`, against a fresh run's first step."""
    steps = at + 10
    overrides = [f"train.steps={steps}", "train.eval_every=0", "train.log_every=1"]
    measure = f"process start to first step after resuming at {at:,}"
    fresh: dict[str, list[float]] = {"exp": [], "tunix": []}
    resumed: dict[str, list[float]] = {"exp": [], "tunix": []}
    with scratch("tunix-resume") as work:
        env = {**os.environ, "EXPSPEC_CACHE_DIR": str(work / "exp-cache")}
        stopped = work / "exp-stopped"
        _exp(DIGITS, stopped, env, overrides, stop_at=at)  # also warms the compilation cache
        common = ["--steps", str(steps), "--exit-after-first"]
        if tunix is not None:
            # The stopped run: its own interval checkpoint at `at`; bar-less only so that it takes seconds.
            prep = ["--steps", str(at), "--plan-steps", str(steps), "--no-bar"]
            _tunix(tunix, env, "mlp", *prep, "--checkpoints", str(work / "tunix-stopped"))
        for i in range(repeats):
            run_dir = work / f"exp-fresh-{i}"
            proc = _exp(DIGITS, run_dir, env, overrides, stop_at=1)
            fresh["exp"].append(_first_record(run_dir, 0)["time"] - proc.started_at)
            run_dir = work / f"exp-resumed-{i}"
            shutil.copytree(stopped, run_dir)
            proc = _exp(DIGITS, run_dir, env, overrides, stop_at=at + 1)
            record = _first_record(run_dir, at)
            if record["step"] != at + 1:
                raise RuntimeError(f"{run_dir}: the resumed run's first record is step {record['step']}")
            resumed["exp"].append(record["time"] - proc.started_at)
            if tunix is None:
                continue
            for kind, into in (("fresh", fresh), ("resumed", resumed)):
                checkpoints = work / f"tunix-{kind}-{i}"
                if kind == "resumed":
                    shutil.copytree(work / "tunix-stopped", checkpoints)
                out = _tunix(tunix, env, "mlp", *common, "--checkpoints", str(checkpoints))
                expected = (0, 1) if kind == "fresh" else (at, at + 1)
                if (out["restored_step"], out["first_step"]) != expected:
                    raise RuntimeError(f"Tunix {kind}: restored {out['restored_step']}, first step {out['first_step']}")
                into["tunix"].append(out["first_step_time"] - out["started_at"])
    rows = []
    for side, name in (("exp", "exp run"), ("tunix", "Tunix PeftTrainer")):
        if side == "tunix" and tunix is None:
            rows.append(not_measured("P16", f"{measure}, {name}", "s", "(none)", NO_TUNIX))
            continue
        r, f = median(resumed[side]), median(fresh[side])
        target, met = at_most(r / f, RESUME_TARGET) if side == "exp" else ("(none)", None)
        notes = {"repeats": repeats, "resumed_s": resumed[side], "fresh_s": fresh[side], "resumed_at": at}
        rows.append(Row("P16", f"{measure}, {name}", r, f, "s", r / f, target, met, notes))
    return rows


def settings(quick: bool) -> dict[str, Any]:
    """Windows and repeats of each part; quick keeps the same windows with fewer rounds."""
    return {
        "mlp": {"first": 100, "last": 1100, "repeats": 3 if quick else 5},
        "lm": {"first": 20, "last": 120 if quick else 220, "repeats": 2 if quick else 3},
        "resume": {"at": 10_000, "repeats": 2 if quick else 5},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tunix-python", help="a Python with google-tunix (default: $EXPSPEC_TUNIX_PYTHON)")
    parser.add_argument("--quick", action="store_true", help="fewer rounds, a shorter LM window")
    parts_help = "comma-separated: lm (P14, P15), mlp (P15), resume (P16)"
    parser.add_argument("--parts", default="lm,mlp,resume", help=parts_help)
    parser.add_argument("--repeats", type=int, help="rounds of every part (default: by --quick)")
    parser.add_argument("--mlp-window", help="FIRST,LAST steps of the MLP window (default 100,1100)")
    parser.add_argument("--lm-window", help="FIRST,LAST steps of the LM window (default 20,220; quick 20,120)")
    parser.add_argument("--resume-at", type=int, help="the step resumed from (default 10000)")
    parser.add_argument("--json", type=Path, help="write the rows here")
    parser.add_argument("--params-of", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.params_of:
        return print(json.dumps(params_of(args.params_of)))
    parts = args.parts.split(",")
    if set(parts) - {"lm", "mlp", "resume"} or (args.repeats is not None and args.repeats < 1):
        parser.error("--parts takes lm, mlp and resume; --repeats at least 1")
    chosen = settings(args.quick)
    for name, window in (("mlp", args.mlp_window), ("lm", args.lm_window)):
        if window:
            first, last = (int(v) for v in window.split(","))
            if not 0 < first < last:
                parser.error(f"--{name}-window: need 0 < FIRST < LAST")
            chosen[name].update(first=first, last=last)
    if args.resume_at:
        chosen["resume"]["at"] = args.resume_at
    if args.repeats:
        for part in chosen.values():
            part["repeats"] = args.repeats
    tunix = tunix_python(args.tunix_python)
    jobs = {"lm": measure_lm, "mlp": measure_mlp, "resume": measure_resume}
    rows: list[Row] = []
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    for part in parts:
        began = time.perf_counter()
        rows += jobs[part](tunix, **chosen[part])
        seconds[part] = time.perf_counter() - began
        print(f"[{part} done in {seconds[part]:.0f} s]", file=sys.stderr, flush=True)
    print(table(rows))
    total = time.perf_counter() - start
    print(f"\n{len(rows)} figures in {total:.0f} s")
    if args.json:
        write_report(args.json, "bench/tunix_compare.py", rows, {"total": total, **seconds}, settings=chosen)


if __name__ == "__main__":
    main()
