"""Request scheduling for `higgs serve`: each request is a Job (a plan whose chunks land in a chunk store), and one
Scheduler shares warm engines among the jobs, with a bounded number running and a bounded number waiting.

Two schedulers: `WorkerPool` for engines whose chunks are independent (the CPU engines): worker threads, one
engine each, take the next chunk from the running jobs in turn, so every job's first chunk comes early. And
`Batcher` for an engine that batches (higgs): one engine whose batched decoder keeps its rows filled with the
chains of every running job, so requests share the batch (engines.Engine.render_stream).
Consumers follow a job in chunk order with `Job.entries()`; a cancelled job (the client went away, or its time
ran out) stops taking rows and workers, and frees its place at once.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import numpy as np

from . import engines
from .audio import resample
from .cache import ChunkCache, Entry
from .errors import HiggsError, RenderError
from .options import SAMPLE_RATE
from .planning import Plan, all_keys

log = logging.getLogger(__name__)


class QueueFull(HiggsError):
    """Every running and waiting place is taken; `retry_after` is a guess in seconds."""

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


class Cancelled(HiggsError):
    """The job was cancelled (client gone, timeout, shutdown) before the chunk was ready."""


class Job:
    """One request's render: which chunks it still needs, and a way to wait for them in order."""

    _ids = itertools.count(1)

    def __init__(self, plan: Plan, store: ChunkCache):
        self.id = next(self._ids)
        self.plan, self.store = plan, store
        self.keys = all_keys(plan)  # chunks 0.. and anchors -1, -2, ...
        self.anchors = engines.engine_class(plan.engine).anchors(plan)
        self.missing = [i for i in range(len(plan.chunks)) if not store.has(self.keys[i])]
        self.pending = deque(self.missing)  # what a WorkerPool still has to hand out, in order
        self.done: set[int] = set(range(len(plan.chunks))) - set(self.missing)
        self.extras: deque[tuple[engines.ChunkRequest, str]] = deque()  # retakes the quality gate asked for: (request, key)
        self.extras_done: set[str] = set()
        self.error: BaseException | None = None
        self.cancelled = False
        self.created = time.monotonic()
        self.started: float | None = None
        self._cond = threading.Condition()

    @property
    def finished(self) -> bool:
        return self.cancelled or self.error is not None or len(self.done) == len(self.plan.chunks)

    def landed(self, index: int) -> None:
        with self._cond:
            self.done.add(index)
            self._cond.notify_all()

    def landed_extra(self, key: str) -> None:
        with self._cond:
            self.extras_done.add(key)
            self._cond.notify_all()

    def fail(self, error: BaseException) -> None:
        with self._cond:
            if self.error is None:
                self.error = error
            self._cond.notify_all()

    def cancel(self) -> None:
        with self._cond:
            self.cancelled = True
            self._cond.notify_all()

    def wait(self, index: int, deadline: float | None = None) -> None:
        """Block until chunk `index` is in the store; raise the job's error, Cancelled or TimeoutError."""
        self._wait(lambda: index in self.done, deadline)

    def wait_extra(self, key: str, deadline: float | None = None) -> None:
        """Block until the retake stored under `key` is in the store (errors as `wait`)."""
        self._wait(lambda: key in self.extras_done, deadline)

    def _wait(self, ready: Any, deadline: float | None) -> None:
        with self._cond:
            while not ready():
                if self.error is not None:
                    raise self.error
                if self.cancelled:
                    raise Cancelled("the request was cancelled")
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError("the request ran out of time")
                self._cond.wait(min(left, 1.0) if left is not None else 1.0)

    def entries(self, deadline: float | None = None) -> Iterator[tuple[int, Entry]]:
        """(index, entry) in chunk order, each as soon as it has landed."""
        for i in range(len(self.plan.chunks)):
            self.wait(i, deadline)
            entry = self.store.get(self.keys[i])
            if entry is None:
                raise RenderError(f"chunk {i} vanished from the cache while the request ran; send it again")
            yield i, entry


class Scheduler:
    """Admission (running + waiting limits), readiness, and the job list the engines work from."""

    def __init__(self, engine: str, settings: Any, max_running: int, max_waiting: int):
        self.engine, self.settings = engine, settings
        self.max_running, self.max_waiting = max_running, max_waiting
        self.running: list[Job] = []
        self.waiting: deque[Job] = deque()
        self.ready = threading.Event()
        self.load_error: BaseException | None = None
        self._lock = threading.Condition()
        self._stopping = False
        self._durations: deque[float] = deque(maxlen=20)

    # lifecycle -------------------------------------------------------------------------------------
    def start(self) -> None:
        """Load the engine(s) and start working; sets `ready` (or `load_error`). Blocks while loading."""
        raise NotImplementedError

    def close(self) -> None:
        with self._lock:
            self._stopping = True
            for job in self.running + list(self.waiting):
                job.cancel()
            self._lock.notify_all()

    # jobs ------------------------------------------------------------------------------------------
    def submit(self, plan: Plan, store: ChunkCache) -> Job:
        """Admit a job; a fully cached one needs no place. Raises QueueFull when every place is taken."""
        job = Job(plan, store)
        if not job.missing:
            return job
        with self._lock:
            if len(self.running) < self.max_running:
                self._run(job)
            elif len(self.waiting) < self.max_waiting:
                self.waiting.append(job)
            else:
                raise QueueFull(f"the server is busy ({len(self.running)} requests rendering, {len(self.waiting)} waiting); "
                                "retry later", self.retry_after())
            self._lock.notify_all()
        return job

    def release(self, job: Job) -> None:
        """A job is over (done, failed or cancelled): free its place and start the next waiting one."""
        if not job.finished:
            job.cancel()
        with self._lock:
            if job in self.running:
                self.running.remove(job)
                if job.started is not None:
                    self._durations.append(time.monotonic() - job.started)
            elif job in self.waiting:
                self.waiting.remove(job)
            while self.waiting and len(self.running) < self.max_running:
                self._run(self.waiting.popleft())
            self._lock.notify_all()

    inline_retakes = False  # whether retake() can render one chunk again while the job runs (the quality gate)

    def retake(self, job: Job, request: engines.ChunkRequest, key: str, deadline: float | None = None,
               plan: Plan | None = None) -> Entry:
        """Render `request` (a chunk of `plan`, the job's plan with the takes kept so far: another take's seed, or a
        chunk whose context held a retaken one) for `job` into its store under `key`, ahead of other work."""
        raise RenderError(f"the {self.engine} engine's scheduler cannot retake single chunks")

    def _admit_now(self, job: Job) -> None:
        """A retake never queues: a job that was fully cached, or still waiting, takes a running place for it."""
        if job in self.waiting:
            self.waiting.remove(job)
        if job not in self.running:
            self._run(job)

    def retry_after(self) -> int:
        """Seconds until a place is likely to free up: recent render times spread over the running places."""
        typical = sorted(self._durations)[len(self._durations) // 2] if self._durations else 5.0
        return max(1, min(600, round(typical * (1 + len(self.waiting)) / max(1, self.max_running))))

    def load(self) -> dict[str, Any]:
        with self._lock:
            return {"running": len(self.running), "waiting": len(self.waiting)}

    def _run(self, job: Job) -> None:
        job.started = time.monotonic()
        self.running.append(job)


def _extra_entry(job: Job, request: engines.ChunkRequest, key: str, deadline: float | None) -> Entry:
    job.wait_extra(key, deadline)
    entry = job.store.get(key)
    if entry is None:
        raise RenderError(f"a retake of chunk {request.index} vanished from the cache while the request ran; send it again")
    return entry


def _store(job: Job, key: str, engine: engines.Engine, result: engines.ChunkAudio) -> None:
    job.store.put(key, Entry(resample(result.audio, engine.sample_rate, SAMPLE_RATE), result.info, result.state))


class WorkerPool(Scheduler):
    """Worker threads with one warm engine each; each free worker takes the next chunk of the running jobs in turn.

    For engines whose chunks are independent (`parallel`: no context, no anchors), such as piper and espeak.
    """

    def __init__(self, engine: str, settings: Any, workers: int, max_running: int, max_waiting: int):
        super().__init__(engine, settings, max_running, max_waiting)
        self.workers = workers
        self._threads: list[threading.Thread] = []
        self._engines: list[engines.Engine] = []

    def start(self) -> None:
        try:
            if engines.engine_class(self.engine).process_global:  # one synthesiser, its calls serialised by the engine
                created = [engines.create(self.engine, self.settings)] * self.workers
            else:
                created = [engines.create(self.engine, self.settings) for _ in range(self.workers)]
        except BaseException as e:  # noqa: BLE001 - reported by /health and the server's start-up
            self.load_error = e
            raise
        self._engines = list({id(e): e for e in created}.values())
        for n, engine in enumerate(created):
            thread = threading.Thread(target=self._work, args=(engine,), name=f"higgs-worker-{n}", daemon=True)
            thread.start()
            self._threads.append(thread)
        self.ready.set()

    def close(self) -> None:
        super().close()
        for thread in self._threads:
            thread.join(timeout=5)  # a chunk in flight finishes first
        for engine in self._engines:
            engine.close()

    inline_retakes = True

    def retake(self, job: Job, request: engines.ChunkRequest, key: str, deadline: float | None = None,
               plan: Plan | None = None) -> Entry:
        """A retake goes before every first take (its request's audio is held up by it) and never queues."""
        with self._lock:
            self._admit_now(job)
            job.extras.append((request, key))
            self._lock.notify_all()
        return _extra_entry(job, request, key, deadline)

    def _next(self) -> tuple[Job, engines.ChunkRequest, str, bool] | None:
        """The next chunk to render: a retake if any job asked for one, else from the running job that has been handed
        the fewest so far (the earliest admitted among equals), so every job's first chunk comes before anyone's
        second. (job, request, key, is a retake); None when stopping."""
        while not self._stopping:
            live = [j for j in self.running if not j.cancelled and j.error is None]
            retaking = [j for j in live if j.extras]
            if retaking:
                job = retaking[0]
                request, key = job.extras.popleft()
                return job, request, key, True
            live = [j for j in live if j.pending]
            if live:
                job = min(live, key=lambda j: (len(j.missing) - len(j.pending), j.started or 0.0))
                i = job.pending.popleft()
                return job, job.plan.request(i), job.keys[i], False
            self._lock.wait(1.0)
        return None

    def _work(self, engine: engines.Engine) -> None:
        while True:
            with self._lock:
                task = self._next()
            if task is None:
                return
            job, request, key, extra = task
            i = request.index
            try:
                _store(job, key, engine, engine.synthesize(request))
                job.landed_extra(key) if extra else job.landed(i)
            except BaseException as e:  # noqa: BLE001 - the job reports it; the worker lives on
                log.warning("job %d chunk %d failed: %s", job.id, i, e)
                job.fail(e if isinstance(e, HiggsError) else RenderError(f"chunk {i} failed: {e.__class__.__name__}: {e}"))


class Batcher(Scheduler):
    """One engine that batches (higgs) whose decoder rows are filled from the chains of every running job.

    Each job joins the engine (add_job), renders its anchors (clip-less voices) first, then offers its chains;
    a row that finishes a chunk takes its chain's next chunk, or any job's next chain, so requests that arrive
    while others render fill the free rows at the next chunk boundary. A retake (the quality gate) joins as a job
    of its own: the anchors and the kept chunks before it as context, then the one chunk, in the next free row.
    """

    def __init__(self, engine: str, settings: Any, width: int, max_running: int, max_waiting: int):
        super().__init__(engine, settings, max_running, max_waiting)
        self.width = width
        self._engine: engines.Engine | None = None
        self._thread: threading.Thread | None = None
        self._joined: dict[int, int] = {}  # job id -> engine job number
        self._offered: set[int] = set()  # job ids whose chains are offered (anchors done)
        self._anchoring: dict[int, set[int]] = {}  # job id -> anchor indices still rendering
        self._rendered: dict[int, set[int]] = {}  # job id -> anchor indices rendered here so far
        self._outbox: list[list[tuple[engines.ChunkRequest, engines.ChunkAudio | None]]] = []
        self._owner: dict[tuple[int, int], Job] = {}  # (engine job, chunk index) -> Job
        self._asked: list[tuple[Job, Plan, engines.ChunkRequest, str]] = []  # retakes not yet given to the engine
        self._extra: dict[tuple[int, int], tuple[Job, str]] = {}  # (engine job of a retake, chunk index) -> (Job, key)
        self._spent: list[int] = []  # engine jobs of retakes that are done
        self.stats = {"runs": 0, "max_jobs_in_a_run": 0}  # decoding runs, and the most requests one run served

    def start(self) -> None:
        try:
            self._engine = engines.create(self.engine, self.settings)
        except BaseException as e:  # noqa: BLE001
            self.load_error = e
            raise
        self._thread = threading.Thread(target=self._work, name="higgs-batcher", daemon=True)
        self._thread.start()
        self.ready.set()

    def _work(self) -> None:
        engine = self._engine
        assert engine is not None
        while True:
            with self._lock:
                while not self._stopping and not self._has_work():
                    self._lock.wait(1.0)
                if self._stopping:
                    engine.close()
                    return
            served: set[int] = set()
            try:
                for request, result in engine.render_stream(self._take, self.width):
                    served.add(request.job)
                    self._landed(engine, request, result)
            except BaseException as e:  # noqa: BLE001 - fail the jobs in flight; the engine lives on
                log.warning("batch failed: %s", e)
                with self._lock:
                    for job in list(self.running):
                        job.fail(e if isinstance(e, HiggsError) else RenderError(f"the batch failed: {e.__class__.__name__}: {e}"))
            self.stats["runs"] += 1
            self.stats["max_jobs_in_a_run"] = max(self.stats["max_jobs_in_a_run"], len(served))

    def load(self) -> dict[str, Any]:
        return {**super().load(), "batch": {"width": self.width, **self.stats}}

    inline_retakes = True

    def retake(self, job: Job, request: engines.ChunkRequest, key: str, deadline: float | None = None,
               plan: Plan | None = None) -> Entry:
        with self._lock:
            self._admit_now(job)
            self._asked.append((job, plan or job.plan, request, key))
            self._lock.notify_all()
        return _extra_entry(job, request, key, deadline)

    def _has_work(self) -> bool:
        return any(self._joinable(j) for j in self.running) or bool(self._outbox) or bool(self._asked)

    def _joinable(self, job: Job) -> bool:
        return job.id not in self._joined and not job.cancelled and job.error is None

    def _take(self) -> list[list[tuple[engines.ChunkRequest, engines.ChunkAudio | None]]]:
        """Called by the engine between decoding steps: new groups (anchor chains, then a job's chains) to run."""
        with self._lock:
            for job in self.running:
                if self._joinable(job):
                    self._join(job)
            for asked in self._asked:
                self._retake(*asked)
            self._asked = []
            self._forget_cancelled()
            groups, self._outbox = self._outbox, []
        return groups

    def _join(self, job: Job) -> None:
        engine = self._engine
        assert engine is not None
        number = self._joined[job.id] = engine.add_job(job.plan)
        todo = [replace(a, job=number) for a in job.anchors if not job.store.has(job.keys[a.index])]
        for a in job.anchors:
            self._owner[(number, a.index)] = job
        for i in job.missing:
            self._owner[(number, i)] = job
        self._anchoring[job.id] = {a.index for a in todo}
        if todo:
            self._outbox.extend([[(a, None)] for a in todo])
        else:
            self._offer(job, set())

    def _offer(self, job: Job, rendered: set[int]) -> None:
        """The job's anchors are done: its chains (cached chunks rejoin as context) go to the engine, after the
        anchors it found in the store (the ones `rendered` here are already known to the engine)."""
        number = self._joined[job.id]
        items = [(replace(a, job=number), _cached(job.store.get(job.keys[a.index]))) for a in job.anchors if a.index not in rendered]
        for i in range(len(job.plan.chunks)):
            request = replace(job.plan.request(i), job=number)
            items.append((request, None if i in job.missing else _cached(job.store.get(job.keys[i]))))
        self._offered.add(job.id)
        self._outbox.extend(self._engine.chains(items))  # type: ignore[union-attr]

    def _retake(self, job: Job, plan: Plan, request: engines.ChunkRequest, key: str) -> None:
        """A retake as an engine job of its own: the anchors and every kept chunk before it as context (chains are
        the engine's business: it feeds each chain its own), then the chunk."""
        if job.cancelled or job.error is not None:
            return
        engine = self._engine
        assert engine is not None
        number = engine.add_job(plan)
        self._extra[(number, request.index)] = (job, key)
        keys = all_keys(plan)
        items = [(replace(a, job=number), _cached(job.store.get(keys[a.index]))) for a in job.anchors]
        items += [(replace(plan.request(j), job=number), _cached(job.store.get(keys[j]))) for j in range(request.index)]
        self._outbox.extend(engine.chains(items + [(replace(request, job=number), None)]))

    def _landed(self, engine: engines.Engine, request: engines.ChunkRequest, result: engines.ChunkAudio) -> None:
        with self._lock:
            extra = self._extra.pop((request.job, request.index), None)
            if extra is not None:
                self._spent.append(request.job)
        if extra is not None:
            if not extra[0].cancelled:
                _store(extra[0], extra[1], engine, result)
                extra[0].landed_extra(extra[1])
            return
        with self._lock:
            job = self._owner.pop((request.job, request.index), None)
        if job is None or job.cancelled:
            return
        _store(job, job.keys[request.index], engine, result)
        if request.index >= 0:
            job.landed(request.index)
            return
        with self._lock:
            left = self._anchoring.get(job.id)
            if left is None or request.index not in left:
                return
            left.discard(request.index)
            self._rendered.setdefault(job.id, set()).add(request.index)
            if not left:
                self._offer(job, self._rendered.pop(job.id))

    def _forget_cancelled(self) -> None:
        """Jobs that are over leave the engine (their chains stop at the next chunk boundary)."""
        engine = self._engine
        assert engine is not None
        live = {j.id for j in self.running if not j.cancelled}
        for key in [k for k, (job, _) in self._extra.items() if job.id not in live]:
            self._spent.append(key[0])
            del self._extra[key]
        for number in self._spent:
            engine.end_job(number)
        self._spent = []
        for job_id in [k for k in self._joined if k not in live]:
            number = self._joined.pop(job_id)
            engine.end_job(number)
            self._offered.discard(job_id)
            self._anchoring.pop(job_id, None)
            self._rendered.pop(job_id, None)
            for key in [k for k in self._owner if k[0] == number]:
                del self._owner[key]


def _cached(entry: Entry | None) -> engines.ChunkAudio | None:
    """A stored chunk as context for the engine: its state only, never its audio."""
    if entry is None:
        return None
    return engines.ChunkAudio(np.zeros(0, np.float32), entry.info, entry.state)


def scheduler(engine: str, settings: Any, workers: int, max_running: int, max_waiting: int) -> Scheduler:
    """The scheduler that suits this engine: a shared batch for one that batches, else a worker pool."""
    cls = engines.engine_class(engine)
    if cls.batches:
        return Batcher(engine, settings, max(1, getattr(settings, "batch", 1)), max_running, max_waiting)
    if not cls.parallel:
        raise RenderError(f"the {engine} engine can neither batch nor run chunks side by side; it cannot be served")
    return WorkerPool(engine, settings, workers, max_running, max_waiting)
