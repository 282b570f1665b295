"""The prefetch thread: same batches as the source, errors at their step, a thread that ends."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

from expspec.runtime.data.base import ArraySource, DataError, DataSource
from expspec.runtime.data.prefetch import Prefetcher
from expspec.runtime.data.text import TextSource
from expspec.runtime.types import Batch, DataInfo
from tests.conftest import ROOT

SEEDS = {"data.split": 3, "data.shuffle": 4}

# Steps as the loop asks them: the start asked twice (the throttle's analysis,
# then the loop), a resume at s-1, a resume far back, and a run to step 40.
ASKED = [0, 0, *range(1, 21), *range(19, 31), *range(5, 41)]


def text_source() -> TextSource:
    raw = np.random.default_rng(0).integers(32, 127, size=6000, dtype=np.uint8).tobytes()
    return TextSource(raw, "corpus", seq_len=16, batch_size=4, test_fraction=0.1, shuffle_seed=SEEDS["data.shuffle"])


def array_source(cls: type[ArraySource] = ArraySource, **extra: object) -> ArraySource:
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(50, 3)).astype(np.float32), rng.integers(0, 4, size=50)
    info = DataInfo(task="classification", input_dim=3, num_classes=4)
    source = cls(x, y, info, "fp", batch_size=7, test_fraction=0.2, seeds=SEEDS)
    for name, value in extra.items():
        setattr(source, name, value)
    return source


class Recording(ArraySource):
    """A real ArraySource that records which steps it was asked, in which thread, and can be slow or fail."""

    calls: list[tuple[int, str]]
    delay: float = 0.0
    fail_at: int | None = None
    raised: list[BaseException]

    def train_batch(self, step: int) -> Batch:
        self.calls.append((step, threading.current_thread().name))
        time.sleep(self.delay)
        if step == self.fail_at:
            error = DataError(f"data.files: corpus.jsonl record {step + 1}: no field 'text'")
            self.raised.append(error)
            raise error
        return super().train_batch(step)


def recording(**extra: object) -> Recording:
    return array_source(Recording, calls=[], raised=[], **extra)  # type: ignore[return-value]


def wait_for(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def within(seconds: float, work):
    """`work()`, failing (not hanging) if a prefetcher never delivers a step."""
    result: list = []
    thread = threading.Thread(target=lambda: result.append(work()), daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"no batch within {seconds} s"
    assert result, "the work raised (see the thread's traceback above)"
    return result[0]


def assert_same_batch(got: Batch, want: Batch, step: int) -> None:
    assert sorted(got) == sorted(want), step
    for key in want:
        assert got[key].dtype == want[key].dtype and got[key].shape == want[key].shape, (step, key)
        assert got[key].tobytes() == want[key].tobytes(), (step, key)


@pytest.mark.parametrize("depth", [1, 3])
@pytest.mark.parametrize(
    "make",
    [text_source, array_source, lambda: recording(delay=0.002)],
    ids=["text", "array", "slow-array"],
)
def test_batches_are_bitwise_those_of_the_source_through_resumes(make, depth):
    reference = make()
    with Prefetcher(make(), depth) as prefetched:
        got = within(30, lambda: [prefetched.train_batch(step) for step in ASKED])
    for step, batch in zip(ASKED, got, strict=True):
        assert_same_batch(batch, reference.train_batch(step), step)


def test_the_worker_runs_depth_steps_ahead_in_its_own_thread():
    source = recording()
    with Prefetcher(source, depth=3) as prefetched:
        prefetched.train_batch(10)
        wait_for(lambda: len(source.calls) >= 4)
        time.sleep(0.05)
        assert [step for step, _ in source.calls] == [10, 11, 12, 13]  # no further until asked
        prefetched.train_batch(11)
        wait_for(lambda: len(source.calls) >= 5)
        assert source.calls[-1][0] == 14
        # A step already queued is served from the queue (no recomputation); the skipped one is dropped.
        assert_same_batch(prefetched.train_batch(13), array_source().train_batch(13), 13)
        wait_for(lambda: len(source.calls) >= 7)
        assert [step for step, _ in source.calls] == [10, 11, 12, 13, 14, 15, 16]
    threads = {name for _, name in source.calls}
    assert threads == {"expspec-prefetch"}, threads


def test_an_error_at_step_k_is_raised_at_step_k_and_not_before():
    source = recording(fail_at=3)
    with Prefetcher(source, depth=4) as prefetched:
        prefetched.train_batch(0)
        wait_for(lambda: source.raised)  # the worker already failed on step 3
        assert [step for step, _ in source.calls] == [0, 1, 2, 3]  # and stopped there
        prefetched.train_batch(1)
        prefetched.train_batch(2)
        with pytest.raises(DataError) as caught:
            prefetched.train_batch(3)
        assert caught.value is source.raised[0]
        # Asking again recomputes (and fails again); the steps after it still work.
        with pytest.raises(DataError):
            prefetched.train_batch(3)
        assert_same_batch(prefetched.train_batch(4), array_source().train_batch(4), 4)


def test_close_ends_the_thread_and_later_batches_still_come():
    before = set(threading.enumerate())
    prefetched = Prefetcher(text_source(), depth=2)
    try:
        prefetched.train_batch(0)
        (worker,) = set(threading.enumerate()) - before
        assert worker.daemon and worker.is_alive()
    finally:
        prefetched.close()
    assert not worker.is_alive()
    prefetched.close()  # idempotent
    assert_same_batch(prefetched.train_batch(7), text_source().train_batch(7), 7)
    assert set(threading.enumerate()) - before == set()


def test_close_while_a_batch_is_awaited_returns_it():
    source = recording(delay=0.3)
    prefetched = Prefetcher(source, depth=1)
    closer = threading.Timer(0.05, prefetched.close)
    closer.start()
    assert_same_batch(prefetched.train_batch(2), array_source().train_batch(2), 2)
    closer.join()


def test_the_source_shows_through():
    source = text_source()
    prefetched = Prefetcher(source, depth=2)
    assert isinstance(prefetched, DataSource)
    assert prefetched.info == source.info and prefetched.fingerprint == source.fingerprint
    assert prefetched.unigram_entropy() == source.unigram_entropy()
    for got, want in zip(prefetched.eval_batches(), text_source().eval_batches(), strict=True):
        assert_same_batch(got, want, -1)
    with pytest.raises(AttributeError):
        prefetched.no_such_attribute  # noqa: B018
    with pytest.raises(ValueError):
        Prefetcher(source, depth=0)


def test_a_process_exits_without_waiting_for_a_batch_in_progress():
    # The worker is a daemon thread: a run stopping while a slow batch is being
    # assembled exits at once instead of waiting for it.
    script = textwrap.dedent(
        """
        import time
        import numpy as np
        from expspec.runtime.data.base import ArraySource
        from expspec.runtime.data.prefetch import Prefetcher
        from expspec.runtime.types import DataInfo

        class Slow(ArraySource):
            def train_batch(self, step):
                if step > 0:
                    time.sleep(60)
                return super().train_batch(step)

        x = np.zeros((20, 2), np.float32)
        source = Slow(x, np.zeros(20, np.int64), DataInfo(task="classification", input_dim=2, num_classes=2),
                      "fp", batch_size=4, test_fraction=0.2, seeds={"data.split": 1, "data.shuffle": 2})
        Prefetcher(source, depth=2).train_batch(0)
        time.sleep(0.2)  # the worker is now inside step 1
        print("leaving", flush=True)
        """
    )
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=20)
    assert done.returncode == 0, done.stderr
    assert "leaving" in done.stdout
    assert time.monotonic() - start < 15
