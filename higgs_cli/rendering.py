"""Rendering: the chunks of a plan, from the cache or an engine (in order, in worker processes, or batched), into the cache."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from . import engines
from .audio import resample
from .cache import ChunkCache, Entry
from .errors import RenderError
from .options import SAMPLE_RATE
from .planning import Plan, all_keys, chunk_keys, chunk_seeds

_WORKER: dict[str, Any] = {}


def _worker_start(engine: str, settings: Any, parent: int | None = None) -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops the pool
    if parent is not None:
        _die_with_parent(parent)
    _WORKER["engine"] = engines.create(engine, settings)


def _die_with_parent(parent: int) -> None:
    """A worker never outlives its parent, even one killed with SIGKILL (Linux: PR_SET_PDEATHSIG; elsewhere the pool's own checks)."""
    import os
    import signal
    import sys

    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # 1 = PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # the parent died before the death signal was armed
        os._exit(1)


def _worker_render(request: engines.ChunkRequest, key: str, cache_root: Path | None) -> Entry:
    engine = _WORKER["engine"]
    result = engine.synthesize(request)
    entry = Entry(resample(result.audio, engine.sample_rate, SAMPLE_RATE), result.info, result.state)
    ChunkCache(cache_root).put(key, entry)  # stored by the worker: a killed parent loses nothing
    return entry


class Renderer:
    """Yields (index, entry, cached) in chunk order; creates the engine only when a chunk (or anchor) misses.

    Anchors are rendered or fetched first and never yielded. A batching engine with a width above 1
    gets every missing chunk at once (render_batch); finished chunks go to the cache (a temporary one
    under --no-cache) and come back out in order, so memory holds no more than the chunks in flight.
    When the quality gate retakes (`settle_after_batch()`), the batch runs to its end first and the chunks
    then come out one by one as in a sequential render, so a retake, and every later chunk of its chain
    whose context held the rejected take, renders one at a time on the engine restarted in the kept context.
    """

    def __init__(self, plan: Plan, keys: list[str], cache: ChunkCache, jobs: int):
        self.plan, self.keys, self.cache = plan, keys, cache
        self.cls = engines.engine_class(plan.engine)
        self.jobs = jobs if self.cls.parallel else 1
        self.width = plan.options.higgs.batch if self.cls.batches else 1
        self.anchors = self.cls.anchors(plan)
        self.anchor_keys = all_keys(plan) if self.anchors else {}
        self.engine: engines.Engine | None = None
        self.replay: list[tuple[engines.ChunkRequest, Entry]] = []
        # the quality gate's hooks (takes.Gate): the take of each chunk, and what a context engine was fed, to rewind it
        self.takes = [0] * len(plan.chunks)
        self.retakes_inline = self.width <= 1
        self.context = bool(self.anchors) or self.cls.context_of.__func__ is not engines.Engine.context_of.__func__
        self.fed: list[tuple[engines.ChunkRequest, Entry]] = []
        self.anchor_fed: dict[str, tuple[engines.ChunkRequest, Entry]] = {}
        self._settle_after_batch = False

    def settle_after_batch(self) -> None:
        """The gate will retake: with a batch, finish it before the first chunk comes out (see the class doc)."""
        self._settle_after_batch = self.retakes_inline = True

    def __iter__(self) -> Iterator[tuple[int, Entry, bool]]:
        try:
            if self.width > 1:
                yield from self._batched()
            else:
                yield from (self._parallel() if self.jobs > 1 else self._sequential())
        finally:
            if self.engine is not None:
                self.engine.close()

    def _sequential(self) -> Iterator[tuple[int, Entry, bool]]:
        for i in range(len(self.plan.chunks)):
            request = self.plan.request(i)
            entry = self.cache.get(self.keys[i])
            if entry is not None:
                self._reused(request, entry)
                yield i, entry, True
                continue
            yield i, self._render(request, self.keys[i]), False

    def _reused(self, request: engines.ChunkRequest, entry: Entry) -> None:
        self._remember(request, entry)
        if self.engine is None:  # fed to the engine if it is ever created: state only, never the audio
            self.replay.append((request, Entry(np.zeros(0, np.float32), entry.info, entry.state)))  # not a view: frees the audio
        else:
            self.engine.reuse(request, engines.ChunkAudio(entry.audio, entry.info, entry.state))

    def _start_engine(self, anchors: bool = True) -> engines.Engine:
        """Create the engine on the first miss: anchors (fetched or rendered) first, then the cached chunks' state."""
        if self.engine is None:
            engine = self.engine = engines.create(self.plan.engine, self.plan.options.higgs)
            engine.begin(self.plan)
            for anchor in self.anchors if anchors else []:
                key = self.anchor_keys[anchor.index]
                entry = self.cache.get(key)
                if entry is None:
                    entry = self._store(self.cache, key, engine, engine.synthesize(anchor))
                else:
                    engine.reuse(anchor, engines.ChunkAudio(entry.audio, entry.info, entry.state))
                self.anchor_fed[anchor.speaker] = (anchor, entry)
            for old, entry in self.replay:
                self.engine.reuse(old, engines.ChunkAudio(entry.audio, entry.info, entry.state))
            self.replay.clear()
        return self.engine

    def _render(self, request: engines.ChunkRequest, key: str) -> Entry:
        engine = self._start_engine()
        result = engine.synthesize(request)
        entry = self._store(self.cache, key, engine, result)
        self._remember(request, entry)
        return entry

    # --- takes: the quality gate's hooks (see takes.Gate) ---
    def _remember(self, request: engines.ChunkRequest, entry: Entry) -> None:
        if self.context and request.index >= 0:  # state only: what a rewind feeds back
            self.fed.append((request, Entry(np.zeros(0, np.float32), entry.info, entry.state)))

    def _rewind(self, i: int) -> None:
        """Put the engine's context back to just before chunk `i`: restart the job and feed it what came before."""
        self.fed = [(r, e) for r, e in self.fed if r.index < i]
        self.replay = [(r, e) for r, e in self.replay if r.index < i]
        if self.engine is None or not self.context:
            return
        self.engine.begin(self.plan)
        for anchor, entry in self.anchor_fed.values():
            self.engine.reuse(anchor, engines.ChunkAudio(entry.audio, entry.info, entry.state))
        for request, entry in self.fed:
            self.engine.reuse(request, engines.ChunkAudio(entry.audio, entry.info, entry.state))

    def _retarget(self, i: int, take: int) -> None:
        from .takes import take_seed

        seeds = list(self.plan.seeds)
        seeds[i] = take_seed(self.base_seeds[i], take)
        self.plan = replace(self.plan, seeds=tuple(seeds))
        self.keys, self.takes[i] = chunk_keys(self.plan), take

    def take(self, i: int, take: int) -> tuple[Entry, bool]:
        """Take `take` of chunk `i` (from the cache, or rendered in the context the kept earlier chunks give);
        later chunks' keys, and so their context, follow it."""
        self._retarget(i, take)
        self._rewind(i)
        request, entry = self.plan.request(i), self.cache.get(self.keys[i])
        if entry is not None:
            self._reused(request, entry)
            return entry, True
        return self._render(request, self.keys[i]), False

    def keep(self, i: int, take: int, entry: Entry) -> None:
        """Settle on an earlier take of chunk `i` after later ones were tried."""
        self._retarget(i, take)
        self._rewind(i)
        self._reused(self.plan.request(i), entry)

    @property
    def base_seeds(self) -> tuple[int, ...]:
        return chunk_seeds(self.plan.options.seed, self.plan.chunks)

    def base_key(self, i: int) -> str:
        """Chunk `i`'s key at take 0, in the context of the takes kept before it: its record's key."""
        seeds = list(self.plan.seeds)
        seeds[i] = self.base_seeds[i]
        return chunk_keys(replace(self.plan, seeds=tuple(seeds)))[i]

    def anchor_audio(self, speaker: str) -> np.ndarray | None:
        """The audio of a clip-less speaker's anchor: what the voice check compares that speaker's chunks with."""
        if speaker in self.anchor_fed:
            return self.anchor_fed[speaker][1].audio
        anchor = next((a for a in self.anchors if a.speaker == speaker), None)
        entry = self.cache.get(self.anchor_keys[anchor.index]) if anchor is not None else None
        return entry.audio if entry is not None else None

    @staticmethod
    def _store(cache: ChunkCache, key: str, engine: engines.Engine, result: engines.ChunkAudio) -> Entry:
        entry = Entry(resample(result.audio, engine.sample_rate, SAMPLE_RATE), result.info, result.state)
        cache.put(key, entry)
        return entry

    def _batched(self) -> Iterator[tuple[int, Entry, bool]]:
        """Every missing chunk through render_batch; results in chunk order as soon as each one's turn comes."""
        import tempfile

        keys = all_keys(self.plan)
        requests = self.anchors + [self.plan.request(i) for i in range(len(self.plan.chunks))]
        missing = {r.index for r in requests if not self.cache.has(keys[r.index])}
        if not missing:
            yield from self._sequential()
            return
        with tempfile.TemporaryDirectory(prefix="higgs-batch-") as scratch:
            store = self.cache if self.cache.enabled else ChunkCache(Path(scratch))
            engine = self._start_engine(anchors=False)  # render_batch takes them with the chunks
            if self._settle_after_batch:
                for _ in _fill(engine, [(0, r) for r in requests], [keys], store, self.width):
                    pass
                self.cache = store
                self._restart(engine)
                for i, entry, hit in self._sequential():  # a chunk the batch rendered is no cache hit
                    yield i, entry, hit and not (i in missing and self.keys[i] == keys[i])
                return
            ready, done, n = set(), 0, len(self.plan.chunks)
            for request in _fill(engine, [(0, r) for r in requests], [keys], store, self.width):
                ready.add(request.index)
                while done < n and (done in ready or done not in missing):
                    yield done, self._stored(store, keys[done]), done not in missing
                    done += 1
            for i in range(done, n):
                yield i, self._stored(store, keys[i]), i not in missing

    def _restart(self, engine: engines.Engine) -> None:
        """After a batch pass: the engine begins the job afresh with the anchors' state, as `_start_engine` leaves it."""
        engine.begin(self.plan)
        for anchor in self.anchors:
            entry = self._stored(self.cache, self.anchor_keys[anchor.index])
            engine.reuse(anchor, engines.ChunkAudio(entry.audio, entry.info, entry.state))
            self.anchor_fed[anchor.speaker] = (anchor, entry)
        self.replay.clear()

    @staticmethod
    def _stored(store: ChunkCache, key: str) -> Entry:
        entry = store.get(key)
        if entry is None:
            raise RenderError("a chunk of the batch was not rendered; run the job again (finished chunks are cached)")
        return entry

    def _parallel(self) -> Iterator[tuple[int, Entry, bool]]:
        """Independent chunks (no context) in worker processes; results still come out in order."""
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        missing = [i for i in range(len(self.plan.chunks)) if not self.cache.has(self.keys[i])]
        if not missing:
            yield from self._sequential()
            return
        import os

        context = multiprocessing.get_context("spawn")
        pool = ProcessPoolExecutor(min(self.jobs, len(missing)), mp_context=context, initializer=_worker_start,
                                   initargs=(self.plan.engine, self.plan.options.higgs, os.getpid()))
        try:
            futures = {i: pool.submit(_worker_render, self.plan.request(i), self.keys[i], self.cache.root) for i in missing}
            for i in range(len(self.plan.chunks)):
                if i in futures:
                    yield i, futures.pop(i).result(), False
                    continue
                entry = self.cache.get(self.keys[i])
                yield (i, entry, True) if entry is not None else (i, self._render(self.plan.request(i), self.keys[i]), False)
        except BaseException:  # Ctrl-C, SIGTERM, an error or an abandoned job: stop the workers now, not after their chunks
            for proc in list((getattr(pool, "_processes", None) or {}).values()):
                proc.kill()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def prerender(plans: list[Plan], cache: ChunkCache, on_chunk: Callable[[int, int], None] | None = None) -> list[int]:
    """Render the missing chunks of several plans (a book's chapter files) as one batch into `cache`; how many, per plan.

    For an engine that batches, with `higgs.batch` > 1 and a cache to fill; otherwise nothing happens and
    each plan renders on its own later. Anchors shared by several plans (same voice, same seed) render once.
    Afterwards `render()` of each plan finds every chunk cached and only assembles.
    """
    counts = [0] * len(plans)
    if not plans or not cache.enabled:
        return counts
    cls = engines.engine_class(plans[0].engine)
    width = plans[0].options.higgs.batch
    if not cls.batches or width <= 1:
        return counts
    keys = [all_keys(plan) for plan in plans]
    chunks = [(j, plan.request(i)) for j, plan in enumerate(plans) for i in range(len(plan.chunks))]
    missing = [(j, r) for j, r in chunks if not cache.has(keys[j][r.index])]
    if not missing:
        return counts
    engine = engines.create(plans[0].engine, plans[0].options.higgs)
    try:
        engine.begin(plans[0])
        jobs = [0] + [engine.add_job(plan) for plan in plans[1:]]
        anchors = [(j, replace(a, job=jobs[j])) for j, plan in enumerate(plans) for a in cls.anchors(plan)]
        for _ in _fill(engine, list({keys[j][a.index]: (j, a) for j, a in anchors}.values()), keys, cache, width):
            pass
        for request in _fill(engine, anchors + [(j, replace(r, job=jobs[j])) for j, r in chunks], keys, cache, width):
            if request.index >= 0:
                counts[request.job] += 1
                if on_chunk:
                    on_chunk(sum(counts), len(missing))
    finally:
        engine.close()
    return counts


def _fill(engine: engines.Engine, requests: list[tuple[int, engines.ChunkRequest]], keys: list[dict[int, str]],
          cache: ChunkCache, width: int) -> Iterator[engines.ChunkRequest]:
    """One render_batch over these requests: cached ones rejoin as context, the rest are rendered, stored, yielded."""
    items, where = [], {}
    for j, r in requests:
        entry = cache.get(keys[j][r.index])
        items.append((r, None if entry is None else engines.ChunkAudio(np.zeros(0, np.float32), entry.info, entry.state)))
        where[(r.job, r.index)] = keys[j][r.index]
    for request, result in engine.render_batch(items, width):
        Renderer._store(cache, where[(request.job, request.index)], engine, result)
        yield request
