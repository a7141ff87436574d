"""Generation as a stream: ``K`` calls always in flight, results as they come.

Every pass that asks a model — the dialogues, ``--skills annotate``'s labelling, ``--verify`` — runs its
calls through :func:`stream`: a pool that lives as long as the pass keeps ``width.workers`` calls of
``width.batch`` units each in flight, and the moment one finishes the next batch goes out (a train of
batches would wait for its slowest call: with a server whose latency varies, 8 in flight reach ~0.78 of
the ideal rate). Results come back in completion order; the caller journals each as it arrives, and
since every output is keyed by sample id (seeds included), the order changes nothing in the result.

How wide a pass runs is the backend's to say (:class:`Width`, from its registry entry): a server takes
``--concurrency`` requests of one sample each (a slow answer holds up no other); the in-process model
takes ``--batch-size`` samples a call, two calls open so the next batch's processor runs while the GPU
generates (the backend serialises the device part).

When a call raises (a server that stays down), nothing more is sent, the calls in flight are waited for
and their results still handed out (so they are journaled, not asked again), and then the error is
raised. When the caller stops (an interrupt, an error of its own), what was not sent is cancelled.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import TypeVar

from hub_pgen.generate.layer import batched

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class Width:
    """How a backend takes its calls: ``workers`` of them at once, ``batch`` units each."""

    workers: int = 1
    batch: int = 1

    def __post_init__(self) -> None:
        if self.workers < 1 or self.batch < 1:
            raise ValueError(f"a stream needs workers >= 1 and batch >= 1, got {self.workers} and {self.batch}")

    @property
    def in_flight(self) -> int:
        """Units being worked on at most at once."""
        return self.workers * self.batch


ONE = Width()  # one call of one unit at a time


def stream(units: Iterable[T], work: Callable[[list[T]], R], width: Width, *,
           name: str = "hub-pgen-stream") -> Iterator[tuple[list[T], R]]:
    """``(batch, work(batch))`` for ``units`` in batches of ``width.batch``, in the order the calls
    finish, with ``width.workers`` calls in flight whenever there are units left.

    ``units`` is read on the caller's thread, one batch each time a call finishes (so a lazy source,
    such as frames decoded ahead in their lanes, is pulled no faster than the calls drain it). A call
    that raises stops the sending; the calls in flight are finished and handed out, then its exception
    is raised (the first one, when several fail)."""
    batches = batched(units, width.batch)
    pool = ThreadPoolExecutor(max_workers=width.workers, thread_name_prefix=name)
    running: dict[Future[R], list[T]] = {}
    error: BaseException | None = None
    finished = False

    def fill() -> None:
        while error is None and len(running) < width.workers:
            batch = next(batches, None)
            if batch is None:
                return
            running[pool.submit(work, batch)] = batch

    try:
        fill()
        while running:
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                batch = running.pop(future)
                try:
                    result = future.result()
                except BaseException as e:  # noqa: BLE001 - raised once the calls in flight are handed out
                    error = error or e
                    continue
                yield batch, result
            fill()
        finished = True
        if error is not None:
            raise error
    finally:
        # the caller stopped early (an interrupt, its own error): what is not sent is not sent, and the
        # calls in flight are not waited for (closing the backend ends them); else every call is done
        pool.shutdown(wait=finished, cancel_futures=True)
