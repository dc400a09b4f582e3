"""Dynamic batching: requests that arrive close together share one scorer call.

Why: a forward over B items costs far less than B forwards of one (weights are read once, kernels
launch once), but each client sends its own request. The batcher waits for the first request, then
keeps gathering until the batch holds ``max_batch`` items or ``max_wait_s`` has passed since that
first request, and scores the batch in one worker thread, so the event loop keeps accepting
requests meanwhile (those form the next batch). ``max_batch = 1`` scores each request alone.

A batch splits only where the scorer needs separate calls: videos vs images, with vs without
responses, files vs frame arrays. A call that fails is retried request by request, so one bad input
fails its own request only.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from vlmrm.reward.inference import RewardScorer, rao_kupper_probabilities
from vlmrm.serve.payload import ParsedRequest

logger = logging.getLogger(__name__)


class ScoringFailed(RuntimeError):
    """The scorer raised on this request alone (its batch-mates were scored)."""


@dataclass
class Job:
    request: ParsedRequest
    compare: bool
    future: asyncio.Future

    @property
    def key(self) -> tuple[str, bool, bool]:
        return (self.request.media, self.request.responses is not None, self.request.has_arrays)


@dataclass
class BatchStats:
    """Counters ``/health`` reports: requests and items scored, batches formed, requests in flight."""

    requests: int = 0
    items: int = 0
    batches: int = 0
    in_flight: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class DynamicBatcher:
    scorer: RewardScorer
    max_batch: int
    max_wait_s: float
    stats: BatchStats = field(default_factory=BatchStats)

    def __post_init__(self) -> None:
        if self.max_batch < 1 or self.max_wait_s < 0:
            raise ValueError(f"max_batch {self.max_batch} must be >= 1, max_wait {self.max_wait_s} >= 0")
        self._queue: asyncio.Queue[Job | None] = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vlmrm-scorer")
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Score what is queued, then end the worker (graceful shutdown)."""
        if self._task is not None:
            await self._queue.put(None)
            await self._task
        self._executor.shutdown(wait=True)

    async def submit(self, request: ParsedRequest, compare: bool = False):
        """The score dicts of ``request`` (``RewardScorer.score``'s), or its compare dict."""
        job = Job(request, compare, asyncio.get_running_loop().create_future())
        self.stats.in_flight += 1
        try:
            await self._queue.put(job)
            return await job.future
        finally:
            self.stats.in_flight -= 1

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        stopping = False
        while not stopping:
            first = await self._queue.get()
            if first is None:
                break
            jobs, items = [first], len(first.request.items)
            deadline = loop.time() + self.max_wait_s
            while items < self.max_batch:
                try:
                    job = await asyncio.wait_for(self._queue.get(), max(0.0, deadline - loop.time()))
                except asyncio.TimeoutError:
                    break
                if job is None:
                    stopping = True
                    break
                jobs.append(job)
                items += len(job.request.items)
            outcomes = await loop.run_in_executor(self._executor, self._score_jobs, jobs)
            self.stats.batches += 1
            self.stats.requests += len(jobs)
            self.stats.items += items
            for job, outcome in zip(jobs, outcomes):
                if job.future.done():
                    continue
                if isinstance(outcome, BaseException):
                    job.future.set_exception(outcome)
                else:
                    job.future.set_result(outcome)

    def _score_jobs(self, jobs: list[Job]) -> list:
        """One scorer call per kind of input in the batch; results (or exceptions) in job order."""
        groups: dict[tuple, list[int]] = defaultdict(list)
        for index, job in enumerate(jobs):
            groups[job.key].append(index)
        outcomes: list = [None] * len(jobs)
        for indices in groups.values():
            members = [jobs[i] for i in indices]
            try:
                results = self._score_group(members)
            except Exception as err:
                if len(members) == 1:
                    logger.exception("scoring a request failed")
                    results = [ScoringFailed(f"{type(err).__name__}: {err}")]
                else:
                    results = [self._score_jobs([job])[0] for job in members]
            for i, result in zip(indices, results):
                outcomes[i] = result
        return outcomes

    def _score_group(self, jobs: list[Job]) -> list:
        requests = [job.request for job in jobs]
        prompts = [p for r in requests for p in r.prompts]
        items = [item for r in requests for item in r.items]
        kwargs = {"videos" if requests[0].media == "video" else "images": items}
        if requests[0].has_arrays:
            kwargs["fps"] = [fps for r in requests for fps in r.fps]
        if requests[0].responses is not None:
            kwargs["responses"] = [text for r in requests for text in r.responses]
        scores = self.scorer.score(prompts, batch_size=self.max_batch, **kwargs)
        results, start = [], 0
        for job in jobs:
            own = scores[start : start + len(job.request.items)]
            start += len(own)
            results.append(self._compared(*own) if job.compare else own)
        return results

    def _compared(self, a: dict, b: dict) -> dict[str, dict[str, float]]:
        """``RewardScorer.compare`` from the two items' raw rewards and the batch's tie k."""
        return {
            dim: rao_kupper_probabilities(a["raw"][dim] - b["raw"][dim], float(k))
            for dim, k in zip(self.scorer.spec.eval_dim, self.scorer.last_tie_k)
        }
