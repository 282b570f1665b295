"""The text-data path on a generated corpus of 1 GiB against one of 10 MiB.

    python bench/text_data.py --json out.json            # 1 GiB and 10 MiB, about 2 minutes on 2 cores
    python bench/text_data.py --size-mb 2 --small-mb 1   # a smoke run

Every figure is a ratio of two measurements of this invocation. A fresh
process per corpus, with an empty user cache (so the JSON Lines are converted
to Arrow and fingerprinted), builds the `data.kind = "text"` source of
`examples/text_lm.toml` pointed at the corpus and reads N batches spread over it:

- T1 its time from process start to the first batch, and
- T2 its peak RSS (VmHWM), on the large corpus against the small one;
- T3 batches/s of `train_batch` alone (no prefetch thread) on the large corpus
  against the training steps/s of `exp run examples/text_lm.toml` at the same
  shapes on the small corpus;
- T4 the corpus fingerprint (`content_digest`) with a warm cache against a
  cold one, and T5 its cold throughput against a plain memory copy.

Corpora are generated from a fixed seed into a scratch folder, deleted at the
end, and every process gets its own `$EXPSPEC_CACHE_DIR` there, so the user's
cache is neither read nor written.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from common import (
    EXAMPLES,
    Row,
    at_least,
    at_most,
    median,
    rate_between,
    run_process,
    scratch,
    table,
    train_records,
    write_report,
)

from expspec.runtime.processes.child_command import exp_run_argv

TEXT_LM = EXAMPLES / "text_lm.toml"
WORDS = EXAMPLES / "data" / "python_docs_topics.txt"
TOKENIZER = EXAMPLES / "data" / "text_tokenizer"
SEQ_LEN, BATCH = 128, 16
DOC_CHARS = (200, 4000)
"""Shortest and longest generated document, in characters."""
CHUNK = 64 << 20
"""Bytes generated and written at a time."""
COPY_CHUNK = 64 << 20
"""Bytes per numpy copy in the memory-copy baseline (well beyond every cache)."""
STATUS_KEYS = ("VmHWM", "VmRSS", "RssAnon", "RssFile", "RssShmem")


def _word_text(rng: np.random.Generator, nbytes: int) -> bytes:
    """`nbytes` or so of random words of the shipped text, space-separated, needing no JSON escape."""
    words = [w for w in WORDS.read_text(encoding="utf-8").split() if w.isascii() and w.isprintable()]
    words = np.array([w for w in words if '"' not in w and "\\" not in w], dtype=object)
    mean = sum(len(w) + 1 for w in words) / len(words)
    return " ".join(words[rng.integers(0, len(words), int(nbytes / mean) + 1)]).encode()


def generate_corpus(path: Path, size_mb: float, seed: int) -> dict[str, Any]:
    """A JSON Lines corpus of at least `size_mb` MiB: documents of 200-4000 characters, each a
    random word-aligned slice of a 16 MiB text of random words (almost surely all distinct)."""
    rng = np.random.default_rng(seed)
    base = _word_text(rng, 16 << 20)
    spaces = np.flatnonzero(np.frombuffer(base, np.uint8) == ord(" "))
    spaces = spaces[spaces < len(base) - DOC_CHARS[1] - 64]
    target, written, documents = int(size_mb * (1 << 20)), 0, 0
    start = time.perf_counter()
    with open(path, "wb") as out:
        while written < target:
            n = max(64, min(CHUNK, target - written) // 2000)
            firsts = spaces[rng.integers(0, len(spaces), n)] + 1
            ends = firsts + rng.integers(DOC_CHARS[0], DOC_CHARS[1] + 1, n)
            ends = np.minimum(spaces[np.minimum(np.searchsorted(spaces, ends), len(spaces) - 1)], ends)
            chunk = b"".join(b'{"text": "' + base[a:b] + b'"}\n' for a, b in zip(firsts.tolist(), ends.tolist()))
            out.write(chunk)
            written += len(chunk)
            documents += n
    return {"bytes": written, "documents": documents, "seconds": time.perf_counter() - start}


def _status() -> dict[str, int]:
    """This process's resident memory by kind, in bytes, from /proc/self/status (Linux)."""
    out = {}
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                name, _, value = line.partition(":")
                if name in STATUS_KEYS:
                    out[name] = int(value.split()[0]) * 1024
    except OSError:
        pass
    return out


def data_overrides(corpus: Path, pack: bool, prefetch: int | None = None) -> list[str]:
    """examples/text_lm.toml's data section pointed at `corpus`, at the bench's shapes."""
    out = [
        f"data.files={json.dumps(str(corpus))}",
        f"data.tokenizer={json.dumps(str(TOKENIZER))}",
        f"data.seq_len={SEQ_LEN}",
        f"data.batch_size={BATCH}",
        f"data.pack={'true' if pack else 'false'}",
    ]
    return out + ([f"data.prefetch={prefetch}"] if prefetch is not None else [])


def child(corpus: Path, batches: int, pack: bool) -> None:
    """In a fresh process: build the source, read the first batch, then time `batches` batches."""
    began = time.time()
    from expspec.compiler.compile import plan_spec
    from expspec.runtime.data import build_data, close_source

    plan = plan_spec(TEXT_LM, data_overrides(corpus, pack, prefetch=0))
    planned = time.time()
    source = build_data(plan.spec.data, plan.seeds, TEXT_LM.parent)
    built = time.time()
    source.train_batch(0)
    first_batch_at = time.time()
    after_build = _status()
    start = time.perf_counter()
    tokens = 0
    for step in range(batches):
        tokens += int(source.train_batch(step)["x"].size)
    seconds = time.perf_counter() - start
    report = {
        "first_batch_at": first_batch_at,
        "phases_s": {"imports_and_plan": planned - began, "build": built - planned, "batch_0": first_batch_at - built},
        "batches": batches,
        "batch_seconds": seconds,
        "batches_per_s": batches / seconds,
        "tokens": tokens,
        "train_rows": source.info.train_size,
        "status_after_first_batch": after_build,
        "status_at_end": _status(),
    }
    close_source(source)
    report["ru_maxrss_self_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps(report))


def data_path(corpus: Path, cache: Path, batches: int, pack: bool) -> dict[str, Any]:
    """One fresh child over `corpus` with an empty user cache: its report, with its peak RSS.

    The peak is the child's own VmHWM, read by the child once done. `ru_maxrss` is
    kept alongside but is not the child's own: `subprocess` starts it by vfork and
    exec, and exec charges the child with the spawning process's high-water mark.
    """
    argv = [sys.executable, __file__, "--child", str(corpus), "--batches", str(batches)]
    env = {**os.environ, "EXPSPEC_CACHE_DIR": str(cache)}
    proc = run_process([*argv, *(["--pack"] if pack else [])], env=env, timeout=3600)
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    report["start_to_first_batch_s"] = report.pop("first_batch_at") - proc.started_at
    report["peak_rss_bytes"] = report["status_at_end"].get("VmHWM") or report["ru_maxrss_self_bytes"]
    report["wait4_ru_maxrss_bytes"] = proc.peak_rss_bytes
    return report


def step_rate(corpus: Path, work: Path, steps: int) -> float:
    """The char transformer's steps/s at the bench's shapes, after compilation (steps (steps/3, steps])."""
    first = (steps // 3) // 10 * 10
    overrides = [
        *data_overrides(corpus, pack=False),
        f"train.steps={steps}",
        "train.log_every=10",
        "train.eval_every=0",
        "checkpoint.enabled=false",
    ]
    env = {**os.environ, "EXPSPEC_CACHE_DIR": str(work / "exp-cache")}
    run_process(exp_run_argv(TEXT_LM, overrides, work / "run", quiet=True), env=env)
    return rate_between(train_records(work / "run"), first, steps)


def fingerprint_times(corpus: Path, work: Path, repeats: int) -> dict[str, Any]:
    """Cold (empty cache) and cached `content_digest` of `corpus`, and a plain copy of as many
    bytes, alternating; medians."""
    from expspec.compiler.content_hash import content_digest

    size = corpus.stat().st_size
    src = np.ones(min(size, COPY_CHUNK), np.uint8)
    dst = np.empty_like(src)
    cold, cached, copy = [], [], []
    for i in range(repeats):
        cache = work / f"fingerprints-{i}"
        start = time.perf_counter()
        digest = content_digest([corpus], cache=cache, rehash=False)
        cold.append(time.perf_counter() - start)
        start = time.perf_counter()
        again = content_digest([corpus], cache=cache, rehash=False)
        cached.append(time.perf_counter() - start)
        if again != digest:
            raise RuntimeError("the cached fingerprint differs from the cold one")
        start = time.perf_counter()
        for offset in range(0, size, len(src)):
            n = min(len(src), size - offset)
            np.copyto(dst[:n], src[:n])
        copy.append(time.perf_counter() - start)
    return {"bytes": size, "cold_s": median(cold), "cached_s": median(cached), "copy_s": median(copy)}


def measure(size_mb: float, small_mb: float, batches: int, steps: int, repeats: int) -> list[Row]:
    """Every figure of the module docstring, measured in this invocation."""
    with scratch("text-data") as work:
        big, small = work / "large.jsonl", work / "small.jsonl"
        corpora = {"large": generate_corpus(big, size_mb, 1), "small": generate_corpus(small, small_mb, 2)}
        print(f"[corpora generated: {corpora}]", file=sys.stderr, flush=True)
        runs = {
            "small": data_path(small, work / "cache-small", batches, pack=False),
            "large": data_path(big, work / "cache-large", batches, pack=False),
            "small_packed": data_path(small, work / "cache-small-packed", batches, pack=True),
        }
        print("[data path measured]", file=sys.stderr, flush=True)
        steps_per_s = step_rate(small, work, steps)
        fp = fingerprint_times(big, work, repeats)
    large, small_ = _mb(corpora["large"]["bytes"]), _mb(corpora["small"]["bytes"])
    shapes = {"batches": batches, "seq_len": SEQ_LEN, "batch_size": BATCH, "corpora": corpora}
    first, first_base = runs["large"]["start_to_first_batch_s"], runs["small"]["start_to_first_batch_s"]
    t1 = Row("T1", f"start to first batch, {large} vs {small_}", first, first_base, "s", first / first_base, "-", None)
    t1.notes = {name: run["start_to_first_batch_s"] for name, run in runs.items()}
    rss, rss_base = runs["large"]["peak_rss_bytes"], runs["small"]["peak_rss_bytes"]
    target, met = at_most(rss / rss_base, 1.2)
    t2 = Row("T2", f"peak RSS, {large} corpus vs {small_}", rss, rss_base, "bytes", rss / rss_base, target, met)
    t2.notes = {**shapes, **runs}
    rate = runs["large"]["batches_per_s"]
    speedup = rate / steps_per_s
    target, met = at_least(speedup, 5)
    t3 = Row("T3", f"data batches/s ({large}) vs text_lm steps/s", rate, steps_per_s, "/s", speedup, target, met)
    t3.notes = {"steps": steps, "window": f"({(steps // 3) // 10 * 10}, {steps}]"}
    t3.notes |= {f"{name}_batches_per_s": run["batches_per_s"] for name, run in runs.items()}
    cached, cold = fp["cached_s"], fp["cold_s"]
    t4 = Row("T4", f"fingerprint of {large}, cached vs cold", cached, cold, "s", cached / cold, "-", None, fp)
    hashed, copied = fp["bytes"] / cold, fp["bytes"] / fp["copy_s"]
    t5 = Row("T5", "fingerprint cold vs memory copy", hashed, copied, "bytes/s", hashed / copied, "-", None, fp)
    return [t1, t2, t3, t4, t5]


def _mb(nbytes: float) -> str:
    return f"{nbytes / 1e9:.2f} GB" if nbytes >= 1e9 else f"{nbytes / 1e6:.0f} MB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=float, default=1024, help="size of the large corpus in MiB (default 1024)")
    parser.add_argument("--small-mb", type=float, default=10, help="size of the small corpus in MiB (default 10)")
    parser.add_argument("--batches", type=int, default=2000, help="batches read per corpus (default 2000)")
    parser.add_argument("--steps", type=int, default=60, help="training steps of the step-rate run (default 60)")
    parser.add_argument("--repeats", type=int, default=3, help="fingerprint repeats (default 3)")
    parser.add_argument("--json", type=Path, help="write the rows here")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--pack", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.batches, args.pack)
    if args.steps < 30 or args.steps % 10 or args.batches < 1 or args.repeats < 1:
        parser.error("--steps must be a multiple of 10 from 30; --batches and --repeats at least 1")
    if min(args.size_mb, args.small_mb) <= 0:
        parser.error("--size-mb and --small-mb must be positive")
    start = time.perf_counter()
    rows = measure(args.size_mb, args.small_mb, args.batches, args.steps, args.repeats)
    total = time.perf_counter() - start
    print(table(rows))
    print(f"\n{len(rows)} figures in {total:.0f} s")
    if args.json:
        write_report(args.json, "bench/text_data.py", rows, total)


if __name__ == "__main__":
    main()
