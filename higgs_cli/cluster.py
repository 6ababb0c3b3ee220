"""Rendering on Ray: the missing chunks of a job (or of a whole book) as work units on engine actors across a cluster.

The units are the local renderer's: chunks linked by context (a higgs chain) render in order on one worker,
independent chunks (the CPU engines) one per call, and every anchor renders before any chunk that needs it.
A worker is a Ray actor that loads its engine once and keeps it: one per GPU (`num_gpus=1`) for higgs on
CUDA, batching `higgs.batch` chains at a time as the local batched renderer does; `cpus` CPUs each otherwise.
Finished chunks flow back to the driver, which stores them in its content-addressed cache under the keys a
local build uses (or, where every node mounts the cache directory at the same path, the workers store them
there). Assembly then runs on the driver and finds every chunk cached, so a reproducible engine writes the
bytes a local build writes.

Faults: Ray restarts a worker that dies (`max_restarts`) and re-runs the single-chunk call it had in flight
(`max_task_retries`); a chain call that dies is re-sent by the driver, with the chunks that already came back
as context. Only the chunks in flight are lost, and a killed driver resumes from the cache like any build.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from . import engines
from .cache import ChunkCache, Entry
from .errors import EngineUnavailable, HiggsError, RenderError, UsageError
from .options import RAY_ADDRESSES, RAY_CACHE_MODES, RAY_CONNECT_TIMEOUT, RAY_QUEUE, SAMPLE_RATE, RaySettings

RAY_HINT = 'pip install "higgs-cli[ray]"'
RAY_PORT = 6379  # a head node's default GCS port


# --- settings and connection ----------------------------------------------------------------------------------
def settings_from(value: Any, where: str) -> RaySettings:
    """`ray:` in a project file: an address (local, auto, HOST:PORT) or a mapping of RaySettings fields."""
    doc = {"address": value} if isinstance(value, str) else value
    names = [f.name for f in fields(RaySettings)]
    if not isinstance(doc, dict):
        raise UsageError(f"{where}: `ray:` is an address (local, auto or HOST:PORT) or a mapping with {', '.join(names)}")
    unknown = sorted(set(doc) - set(names))
    if unknown:
        raise UsageError(f"{where}: unknown ray setting {unknown[0]!r}; known: {', '.join(names)}")
    try:
        settings = RaySettings(address=str(doc.get("address", "local")),
                               workers=None if doc.get("workers") is None else int(doc["workers"]),
                               cpus=float(doc.get("cpus", 1.0)), cache=str(doc.get("cache", "auto")),
                               retries=int(doc.get("retries", RaySettings.retries)))
    except (TypeError, ValueError) as e:
        raise UsageError(f"{where}: bad ray setting ({e})") from e
    return validate(settings, where)


def validate(settings: RaySettings, where: str = "--ray") -> RaySettings:
    problems = [
        (bool(settings.address.strip()), f"the address is empty; use {' or '.join(RAY_ADDRESSES)} or HOST:PORT"),
        (settings.cache in RAY_CACHE_MODES, f"cache {settings.cache!r}; use one of {', '.join(RAY_CACHE_MODES)}"),
        (settings.workers is None or settings.workers >= 1, f"workers {settings.workers}; use 1 or more"),
        (settings.cpus > 0, f"cpus {settings.cpus}; use a positive number"),
        (settings.retries >= 0, f"retries {settings.retries}; use 0 or more"),
    ]
    for ok, message in problems:
        if not ok:
            raise UsageError(f"{where}: {message}")
    return settings


def import_ray() -> Any:
    try:
        import ray
    except ImportError as e:
        raise EngineUnavailable(f"--ray needs Ray, which is not installed; run `{RAY_HINT}` (or drop --ray)") from e
    return ray


def check(settings: RaySettings) -> None:
    """Cheap checks before anything is planned or rendered: Ray importable, the cluster's head reachable."""
    validate(settings)
    import_ray()
    head = _head(settings.address)
    if head is None:
        return
    try:
        socket.create_connection(head, timeout=RAY_CONNECT_TIMEOUT).close()
    except OSError as e:
        raise UsageError(f"--ray {settings.address}: cannot reach the Ray cluster at {head[0]}:{head[1]} ({e.strerror or e}); "
                         "start it with `ray start --head`, check the address, or use --ray local") from e


def _head(address: str) -> tuple[str, int] | None:
    """(host, port) to probe for an address; None for `local` (nothing to reach) and for `auto` with no cluster known."""
    if address == "local":
        return None
    if address == "auto":
        known = os.environ.get("RAY_ADDRESS") or _current_cluster()
        if not known or known == "auto":
            return None  # ray.init says there is no running instance, at once
        address = known
    address = address.split("://", 1)[-1].rstrip("/")
    host, _, port = address.rpartition(":") if ":" in address else (address, "", "")
    try:
        return host.strip("[]"), int(port) if port else RAY_PORT
    except ValueError:
        raise UsageError(f"--ray {address}: write HOST:PORT (e.g. 10.0.0.5:6379), local or auto") from None


def _current_cluster() -> str | None:
    """The address `ray start` leaves for `auto` on this machine, if any."""
    import tempfile

    path = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


@contextmanager
def connected(settings: RaySettings) -> Iterator[Any]:
    """Ray, started here (`local`) or joined (`auto`, an address); a runtime this process already holds is used as is."""
    ray = import_ray()
    if ray.is_initialized():  # a notebook's or a test's runtime: use it and leave it running
        yield ray
        return
    check(settings)
    local = settings.address == "local"
    kwargs: dict[str, Any] = {"include_dashboard": False} if local else {}
    try:
        ray.init(address="local" if local else settings.address, logging_level=logging.ERROR, log_to_driver=False, **kwargs)
    except ConnectionError as e:
        raise UsageError(f"--ray {settings.address}: {str(e).splitlines()[0]}; start a cluster with `ray start --head` "
                         "or use --ray local") from e
    try:
        yield ray
    finally:
        ray.shutdown()


# --- progress -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class WorkerRate:
    name: str  # w1, w2, ... in start order
    node: str  # the first characters of its Ray node id
    pid: int  # the process rendering now (a restarted worker gets a new one)
    chunks: int
    rate: float  # chunks per second since the pass began


@dataclass(frozen=True)
class ClusterProgress:
    """One progress report across the cluster: chunks done of total, each worker's rate, time left."""

    done: int
    total: int
    elapsed: float
    workers: tuple[WorkerRate, ...]
    restarts: int = 0  # calls lost to a dead worker and sent again

    @property
    def eta(self) -> float | None:
        return None if not self.done else (self.total - self.done) * self.elapsed / self.done


# --- the actor ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Call:
    """What one actor call renders: the plans involved (as object refs), and items in render order
    (request, cached audio for context or None to render, cache key)."""

    plans: tuple[Any, ...]
    items: tuple[tuple[engines.ChunkRequest, engines.ChunkAudio | None, str], ...]
    width: int


class EngineWorker:
    """The body of a Ray actor: one engine, created once, rendering every call it is sent."""

    def __init__(self, engine: str, settings: Any, cache_root: str | None, probe: str | None):
        self.engine = engines.create(engine, settings)
        self.store = _shared_store(cache_root, probe)
        self.plans: dict[str, Any] = {}

    def hello(self) -> dict[str, Any]:
        import ray

        return {"pid": os.getpid(), "node": ray.get_runtime_context().get_node_id()[:8], "shared": self.store is not None}

    def render(self, call: _Call) -> list[tuple[int, int, Entry | None, int]]:
        return list(self.stream(call))

    def stream(self, call: _Call) -> Iterator[tuple[int, int, Entry | None, int]]:
        """Yields (job, index, entry or None when stored in the shared cache, pid) per rendered item."""
        from .audio import resample

        engine = self.engine
        plans = [self._plan(ref) for ref in call.plans]
        engine.begin(plans[0])
        for plan in plans[1:]:
            engine.add_job(plan)
        keys = {(r.job, r.index): key for r, _, key in call.items}
        items = [(r, cached) for r, cached, _ in call.items]
        # width 1 renders chunk after chunk with synthesize(), as the local renderer does; wider goes through the batch
        run = engine.render_batch(items, call.width) if call.width > 1 else engines.Engine.render_batch(engine, items, 1)
        try:
            for request, result in run:
                entry = Entry(resample(result.audio, engine.sample_rate, SAMPLE_RATE), result.info, result.state)
                if self.store is not None:
                    self.store.put(keys[(request.job, request.index)], entry)
                    entry = None
                yield request.job, request.index, entry, os.getpid()
        finally:
            engine.close()

    def _plan(self, ref: Any) -> Any:
        import ray

        if ref.hex() not in self.plans:
            if len(self.plans) > 64:
                self.plans.clear()
            self.plans[ref.hex()] = ray.get(ref)
        return self.plans[ref.hex()]


def _shared_store(root: str | None, probe: str | None) -> ChunkCache | None:
    """The driver's cache dir, when this node sees it at the same path (the driver left a token file there)."""
    if root is None or probe is None:
        return None
    name, _, token = probe.partition(":")
    try:
        return ChunkCache(Path(root)) if (Path(root) / name).read_text() == token else None
    except OSError:
        return None


# --- planning the work ----------------------------------------------------------------------------------------
def _groups(cls: type[engines.Engine], plan: Any) -> list[list[int]]:
    """Chunks that must render together, in order: linked by context (a chain), else one each."""
    parent = list(range(len(plan.chunks)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(len(plan.chunks)):
        for j in cls.context_of(plan, i):
            if j >= 0:
                parent[root(i)] = root(j)
    groups: dict[int, list[int]] = {}
    for i in range(len(plan.chunks)):
        groups.setdefault(root(i), []).append(i)
    return list(groups.values())


def _units(cls: type[engines.Engine], plans: list[Any], keys: list[dict[int, str]], cache: ChunkCache
           ) -> tuple[list[list[tuple[int, int]]], list[list[tuple[int, int]]]]:
    """Missing anchors (one unit each, shared by plans with the same key) and the groups with a missing chunk."""
    anchors: dict[str, tuple[int, int]] = {}
    for j, plan in enumerate(plans):
        for a in cls.anchors(plan):
            if not cache.has(keys[j][a.index]):
                anchors.setdefault(keys[j][a.index], (j, a.index))
    groups = []
    for j, plan in enumerate(plans):
        for group in _groups(cls, plan):
            missing = [n for n, i in enumerate(group) if not cache.has(keys[j][i])]
            if missing:
                groups.append([(j, i) for i in group[:missing[-1] + 1]])  # cached chunks after the last miss are not needed
    return [[a] for a in anchors.values()], groups


def _bundles(groups: list[list[tuple[int, int]]], width: int, workers: int) -> list[list[tuple[int, int]]]:
    """Chains per call: up to `width` (one batch), fewer when that spreads them over more workers."""
    if width <= 1 or len(groups) <= 1:
        return groups
    size = max(1, min(width, -(-len(groups) // max(workers, 1))))
    return [[item for group in groups[k:k + size] for item in group] for k in range(0, len(groups), size)]


# --- running it -----------------------------------------------------------------------------------------------
def prerender(plans: list[Any], cache: ChunkCache, settings: RaySettings,
              on_progress: Callable[[ClusterProgress], None] | None = None) -> list[int]:
    """Render the missing chunks of several plans (a book's stale chapters) on Ray into `cache`; how many, per plan.

    `render()` of each plan afterwards finds every chunk cached and only assembles.
    """
    counts = [0] * len(plans)
    for j, i in render_missing(plans, cache, settings, on_progress):
        if i >= 0:
            counts[j] += 1
    return counts


def render_missing(plans: list[Any], cache: ChunkCache, settings: RaySettings,
                   on_progress: Callable[[ClusterProgress], None] | None = None) -> set[tuple[int, int]]:
    """(plan, chunk index) of everything rendered (anchors < 0); nothing starts when nothing is missing.

    Each chunk renders in the take the job keeps (takes.py); retakes asked for now, and the quality gate's, come
    later, from the driver's own engine during assembly.
    """
    from .planning import all_keys, chunk_keys
    from .takes import TakeStore, resolve

    if not plans or not cache.enabled:
        raise RenderError("rendering on Ray needs a cache folder to collect chunks in")  # callers pass a scratch one
    plans = [resolve(plan, TakeStore(cache.root), chunk_keys)[0] for plan in plans]
    cls = engines.engine_class(plans[0].engine)
    keys = [all_keys(plan) for plan in plans]
    anchors, groups = _units(cls, plans, keys, cache)
    if not anchors and not groups:
        return set()
    width = plans[0].options.higgs.batch if cls.batches else 1
    with connected(settings) as ray, _Pool(ray, settings, plans, keys, cache, width, max(len(anchors), len(groups)), on_progress) as pool:
        pool.total = sum(1 for group in groups for j, i in group if not cache.has(keys[j][i]))
        pool.run(anchors)
        pool.run(_bundles(groups, width, len(pool.actors)))
    return pool.rendered


def render(plan: Any, output: Path, settings: RaySettings, cache: ChunkCache | None = None,
           on_progress: Callable[[ClusterProgress], None] | None = None, subtitles: Path | None = None,
           stems: Path | None = None, retake_chunks: frozenset[int] = frozenset()) -> dict[str, Any]:
    """pipeline.render with the chunks rendered on Ray first; the manifest marks them rendered, as a local run would."""
    import tempfile

    from .containers import check_output
    from .mixing import validate as validate_finish
    from .pipeline import render as assemble
    from .subtitles import check_subtitle_path

    check_output(output)  # everything pipeline.render checks, before the cluster spends anything
    if subtitles:
        check_subtitle_path(subtitles)
    validate_finish(plan.options.finish)  # every output goes through the finishing pass
    cache = cache or ChunkCache(None)
    with tempfile.TemporaryDirectory(prefix="higgs-ray-") as scratch:
        store = cache if cache.enabled else ChunkCache(Path(scratch))
        fresh = {i for _, i in render_missing([plan], store, settings, on_progress)}
        doc = assemble(plan, output, cache=store, subtitles=subtitles, stems=stems, retake_chunks=retake_chunks)
    for row in doc["chunks"]:
        row["cached"] = row["cached"] and row["index"] not in fresh
    doc["rendered"] = sum(1 for row in doc["chunks"] if not row["cached"])
    return doc


class _Pool:
    """The actors, the calls in flight on each, and the chunks that came back (stored in the driver's cache)."""

    def __init__(self, ray: Any, settings: RaySettings, plans: list[Any], keys: list[dict[int, str]], cache: ChunkCache,
                 width: int, calls: int, on_progress: Callable[[ClusterProgress], None] | None = None):
        self.ray, self.settings, self.plans, self.keys, self.cache, self.width = ray, settings, plans, keys, cache, width
        self.on_progress = on_progress
        self.cls = engines.engine_class(plans[0].engine)
        self.refs = [ray.put(plan) for plan in plans]
        self.rendered: set[tuple[int, int]] = set()
        self.total, self.done, self.restarts = 0, 0, 0
        self.flight: dict[Any, tuple[int, list[tuple[int, int]]]] = {}  # call (ref or generator) -> (actor, unit)
        self.probe, self.actors = self._leave_probe(), []
        self.actors = self._start(calls)

    def __enter__(self) -> _Pool:
        return self

    def __exit__(self, *exc: Any) -> None:
        for handle in self.flight:  # Ctrl-C or an error: calls still queued are dropped, not retried
            try:
                self.ray.cancel(handle)
            except Exception:  # noqa: BLE001 - best effort; the kill below ends them anyway
                pass
        for actor in self.actors:  # nothing keeps rendering behind our back
            self.ray.kill(actor, no_restart=True)
        if self.probe:
            (self.cache.root / self.probe.partition(":")[0]).unlink(missing_ok=True)

    def _leave_probe(self) -> str | None:
        if self.settings.cache == "driver":
            return None
        name, token = f".ray-probe-{secrets.token_hex(4)}", secrets.token_hex(16)
        self.cache.root.mkdir(parents=True, exist_ok=True)
        (self.cache.root / name).write_text(token)
        return f"{name}:{token}"

    def _start(self, calls: int) -> list[Any]:
        plan = self.plans[0]
        higgs = plan.options.higgs
        gpu = plan.engine == "higgs" and not str(higgs.device).startswith("cpu")
        resources = self.ray.available_resources()  # what is free now: an actor asked beyond it would wait forever
        if gpu and resources.get("GPU", 0) < 1:
            raise EngineUnavailable("the Ray cluster has no free GPU for the higgs engine; add GPU nodes, or set higgs device: cpu")
        if gpu and str(higgs.device).startswith("cuda"):
            higgs = replace(higgs, device="cuda")  # each actor sees only its own GPU, as cuda:0
        fits = int(resources.get("GPU", 0)) if gpu else max(1, int(resources.get("CPU", 1) // self.settings.cpus))
        count = max(1, min(self.settings.workers or fits, fits, calls))
        shape = {"num_cpus": self.settings.cpus, **({"num_gpus": 1} if gpu else {})}
        actor = self.ray.remote(max_restarts=self.settings.retries, max_task_retries=self.settings.retries, **shape)(EngineWorker)
        root = str(self.cache.root) if self.probe else None
        actors = [actor.remote(plan.engine, higgs, root, self.probe) for _ in range(count)]
        self.actors = actors
        try:
            hello = self.ray.get([a.hello.remote() for a in actors])
        except self.ray.exceptions.RayError as e:
            self.__exit__()
            raise RenderError(f"a Ray worker could not start the {plan.engine} engine: {_cause(e)}") from e
        if self.settings.cache == "shared" and not all(h["shared"] for h in hello):
            self.__exit__()
            raise UsageError(f"ray cache: shared, but a worker cannot see {self.cache.root}; mount it at the same path on "
                             "every node, or use cache: driver")
        self.names = [f"w{n + 1}" for n in range(count)]
        self.nodes, self.pids = [h["node"] for h in hello], [h["pid"] for h in hello]
        self.chunks, self.started = [0] * count, time.monotonic()
        return actors

    # dispatch -------------------------------------------------------------------------------------------------
    def run(self, units: list[list[tuple[int, int]]]) -> None:
        """Every unit to a free actor (RAY_QUEUE single-chunk calls, or one chain call, each); results as they come."""
        queue, attempts = deque(units), {}
        flight = self.flight
        load = [0] * len(self.actors)
        self._report()
        while queue or flight:
            for a in sorted(range(len(self.actors)), key=load.__getitem__):
                while queue and load[a] < (RAY_QUEUE if len(queue[0]) == 1 else 1):
                    unit = queue.popleft()
                    call = self._call(unit)
                    if call is None:
                        continue
                    method = self.actors[a].render if len(unit) == 1 else self.actors[a].stream.options(max_task_retries=0)
                    flight[method.remote(call)] = (a, unit)
                    load[a] += 1
            ready, _ = self.ray.wait(list(flight), num_returns=1, timeout=1.0)
            for handle in ready:
                a, unit = flight[handle]
                try:
                    finished = self._collect(handle, a, unit)
                except (self.ray.exceptions.RayActorError, self.ray.exceptions.ObjectLostError) as e:
                    attempts[id(unit)] = attempts.get(id(unit), 0) + 1
                    if attempts[id(unit)] > self.settings.retries:
                        raise RenderError(f"a Ray worker died {attempts[id(unit)]} times on chunk {unit[0][1]}; run the job again "
                                          f"(finished chunks are cached): {_cause(e)}") from e
                    self.restarts += 1
                    queue.appendleft(unit)  # what came back is cached now and goes as context
                    finished = True
                if finished:
                    del flight[handle]
                    load[a] -= 1

    def _collect(self, handle: Any, a: int, unit: list[tuple[int, int]]) -> bool:
        """Store what `handle` (a call on actor `a`) has ready; True when the call is over."""
        if isinstance(handle, self.ray.ObjectRefGenerator):
            try:
                ref = next(handle)
            except StopIteration:
                return True
            results = [self._get(ref)]
        else:
            results = self._get(handle)
        jobs = list(dict.fromkeys(j for j, _ in unit))
        for job, index, entry, pid in results:
            self._store(jobs[job], index, entry)
            self.pids[a] = pid  # a restarted actor answers from a new process
            if index >= 0:
                self.done, self.chunks[a] = self.done + 1, self.chunks[a] + 1
                self._report()
        return not isinstance(handle, self.ray.ObjectRefGenerator)

    def _get(self, ref: Any) -> Any:
        try:
            return self.ray.get(ref)
        except self.ray.exceptions.RayTaskError as e:  # the engine itself failed: its own message, once
            cause = getattr(e, "cause", None)
            if isinstance(cause, HiggsError):
                raise cause from None
            raise RenderError(f"a Ray worker failed: {_cause(e)}") from e

    def _store(self, j: int, index: int, entry: Entry | None) -> None:
        key = self.keys[j][index]
        if entry is not None:
            self.cache.put(key, entry)
        elif not self.cache.has(key):
            raise RenderError(f"a worker stored chunk {index} in its cache dir but {self.cache.root} does not have it; "
                              "use ray cache: driver unless every node mounts that folder")
        self.rendered.add((j, index))

    def _report(self) -> None:
        if not self.on_progress:
            return
        elapsed = time.monotonic() - self.started
        rates = tuple(WorkerRate(self.names[n], self.nodes[n], self.pids[n], self.chunks[n], self.chunks[n] / max(elapsed, 1e-9))
                      for n in range(len(self.pids)))
        self.on_progress(ClusterProgress(self.done, self.total, elapsed, rates, self.restarts))

    def _call(self, unit: list[tuple[int, int]]) -> _Call | None:
        """The payload for a unit, built when it is sent: cached chunks (and every anchor) go as context only."""
        jobs = list(dict.fromkeys(j for j, _ in unit))
        local = {j: n for n, j in enumerate(jobs)}
        items = []
        if any(i >= 0 for _, i in unit):
            for j in jobs:
                for anchor in self.cls.anchors(self.plans[j]):
                    items.append((replace(anchor, job=local[j]), self._context(j, anchor.index), self.keys[j][anchor.index]))
        todo = False
        for j, i in unit:
            key = self.keys[j][i]
            request = next(a for a in self.cls.anchors(self.plans[j]) if a.index == i) if i < 0 else self.plans[j].request(i)
            cached = self.cache.get(key) if self.cache.has(key) else None
            todo |= cached is None
            items.append((replace(request, job=local[j]), None if cached is None else _as_context(cached), key))
        return _Call(tuple(self.refs[j] for j in jobs), tuple(items), self.width) if todo else None

    def _context(self, j: int, index: int) -> engines.ChunkAudio:
        entry = self.cache.get(self.keys[j][index])
        if entry is None:
            raise RenderError(f"anchor {index} is missing from the cache after the anchor pass; run the job again")
        return _as_context(entry)


def _as_context(entry: Entry) -> engines.ChunkAudio:
    """A cached chunk as the engine takes it back: its state and info, never its audio (which stays here)."""
    return engines.ChunkAudio(np.zeros(0, np.float32), entry.info, entry.state)


def _cause(error: BaseException) -> str:
    text = str(getattr(error, "cause", None) or error).strip()
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else error.__class__.__name__
