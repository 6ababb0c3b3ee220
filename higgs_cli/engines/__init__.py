"""The engine interface, the registry of engines, and `auto` selection.

An engine turns one chunk of text in one voice into float32 mono audio at its `sample_rate`.
Engines may keep state across calls within one job (the higgs engine keeps audio context), so a
job calls `begin(plan)` once, `synthesize(request)` per chunk in order (after the engine's
`anchors(plan)`, which are rendered and cached like chunks but never heard), then `close()`.
An engine that `batches` can instead take a whole job in `render_batch`.
Adding an engine means one module here plus one line in `_REGISTRY`.
"""

from __future__ import annotations

import importlib
import importlib.util
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ..errors import EngineUnavailable, UsageError
from ..voices import Voice

_REGISTRY = {
    "higgs": "higgs_cli.engines.higgs:HiggsEngine",
    "piper": "higgs_cli.engines.piper:PiperEngine",
    "espeak": "higgs_cli.engines.espeak:EspeakEngine",
}
CPU_FALLBACK = ("piper", "espeak")


@dataclass(frozen=True)
class ChunkRequest:
    """One unit of synthesis: text (normalised, may hold sound-event markup) for one speaker."""

    index: int
    speaker: str
    text: str
    voice: Voice
    seed: int
    job: int = 0  # which plan, when an engine renders several at once (add_job)


@dataclass
class ChunkAudio:
    """What an engine returns for a chunk: audio, manifest info, and state later chunks need.

    `state` holds engine-internal arrays (e.g. audio codes) that are cached with the chunk so a
    cache hit can be fed back as context without re-rendering.
    """

    audio: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)
    state: dict[str, np.ndarray] = field(default_factory=dict)


class Engine(ABC):
    """One synthesis back end. `check()` must stay cheap: no heavy imports, no model loading."""

    name: ClassVar[str]
    summary: ClassVar[str]
    clones: ClassVar[bool] = False  # can it speak in the voice of an arbitrary reference clip?
    reproducible: ClassVar[bool] = False  # same request + seed -> same samples?
    parallel: ClassVar[bool] = False  # may chunks render in separate worker processes?
    conditions_on_cast: ClassVar[bool] = False  # does a chunk's audio depend on the other speakers' voices?
    batches: ClassVar[bool] = False  # does render_batch() do better than chunk after chunk?
    process_global: ClassVar[bool] = False  # one synthesiser per process (a C library's global state): share one instance
    native_modules: ClassVar[tuple[str, ...]] = ()  # imported by create() with Ctrl-C held: see interrupts.py
    sample_rate: int

    @classmethod
    def identity(cls, settings: Any) -> dict[str, Any]:
        """What, besides the request, decides this engine's audio (versions, model, sampling)."""
        return {"engine": cls.name}

    @classmethod
    def context_of(cls, plan: Any, index: int) -> list[int]:
        """Indices of earlier chunks (or anchors, < 0) whose output conditions chunk `index` (none by default)."""
        return []

    @classmethod
    def anchors(cls, plan: Any) -> list[ChunkRequest]:
        """Requests rendered before a job's chunks to fix its voices (indices -1, -2, ...); none by default."""
        return []

    @classmethod
    @abstractmethod
    def check(cls) -> str | None:
        """None when this engine can run here, else one line saying why not and how to fix it."""

    @classmethod
    def check_settings(cls, settings: Any) -> str | None:
        """Like check(), for a job that named this engine explicitly with these settings."""
        return cls.check()

    @classmethod
    def voice_problem(cls, settings: dict[str, Any]) -> str | None:
        """None when a voice profile's `engines: <name>:` settings are usable, else what is wrong (checked before rendering)."""
        return None

    @classmethod
    def preview(cls, plan: Any) -> dict[str, Any] | None:
        """What `--dry-run --json` shows of this engine's input (e.g. the prompt), without loading."""
        return None

    def begin(self, plan: Any) -> None:  # noqa: B027 - optional hook
        """Called once before a job's first chunk."""

    @abstractmethod
    def synthesize(self, request: ChunkRequest) -> ChunkAudio:
        """Render one chunk."""

    def add_job(self, plan: Any) -> int:
        """Render another plan alongside the one given to begin(); its requests carry the returned job number.
        Only engines that batch take more than one."""
        raise NotImplementedError(f"the {self.name} engine renders one job at a time")

    def render_batch(self, items: list[tuple[ChunkRequest, ChunkAudio | None]], width: int) -> Iterator[tuple[ChunkRequest, ChunkAudio]]:
        """Render every item that has no cached audio (anchors first, then chunks in plan order); a cached
        item is reused in place. Yields (request, audio) per rendered item, in any order."""
        for request, cached in items:
            if cached is None:
                yield request, self.synthesize(request)
            else:
                self.reuse(request, cached)

    def chains(self, items: list[tuple[ChunkRequest, ChunkAudio | None]]) -> list[list[tuple[ChunkRequest, ChunkAudio | None]]]:
        """A job's items (after add_job, anchors rendered) split into the chains render_stream runs; one by default."""
        return [items]

    def render_stream(self, take: Callable[[], list[list[tuple[ChunkRequest, ChunkAudio | None]]]],
                      width: int) -> Iterator[tuple[ChunkRequest, ChunkAudio]]:
        """Like render_batch for work that keeps arriving (a server): `take()` is polled between steps for new
        chains (each a list of items done in order, from chains()); the call ends once everything taken is done
        and take() has nothing more. A batching engine fills its rows with chains of different jobs."""
        while groups := take():
            for group in groups:
                for request, cached in group:
                    if cached is None:
                        yield request, self.synthesize(request)
                    else:
                        self.reuse(request, cached)

    def end_job(self, job: int) -> None:  # noqa: B027 - optional hook
        """A job from add_job is over; an engine that keeps per-job state drops it."""

    def reuse(self, request: ChunkRequest, cached: ChunkAudio) -> None:  # noqa: B027 - optional hook
        """A chunk came from the cache: take its state into context as if it had been rendered."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources at the end of a job."""


def range_problems(settings: dict[str, Any], ranges: dict[str, tuple[float, float]]) -> str | None:
    """The first numeric setting that is not a number inside its range, described; None when all are fine."""
    import math

    for key, (lo, hi) in ranges.items():
        if key not in settings:
            continue
        value = settings[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or not lo <= value <= hi:
            return f"{key}: {value!r:.30} must be a number from {lo:g} to {hi:g}"
    return None


def engine_class(name: str) -> type[Engine]:
    if name not in _REGISTRY:
        raise UsageError(f"unknown engine {name!r}; use one of: auto, {', '.join(_REGISTRY)}")
    module, cls = _REGISTRY[name].split(":")
    return getattr(importlib.import_module(module), cls)


def names() -> list[str]:
    return list(_REGISTRY)


def status() -> list[tuple[str, str, str | None]]:
    """(name, summary, why-not or None) for every engine."""
    rows = []
    for name in _REGISTRY:
        cls = engine_class(name)
        rows.append((name, cls.summary, cls.check()))
    return rows


def choose(requested: str, settings: Any = None) -> tuple[str, str | None]:
    """Resolve `auto` to a runnable engine; returns (name, note for stderr)."""
    if requested != "auto":
        cls = engine_class(requested)
        why = cls.check() if settings is None else cls.check_settings(settings)
        if why:
            raise EngineUnavailable(f"engine {requested!r} cannot run here: {why}")
        return requested, None
    why_not_higgs = engine_class("higgs").check()
    if why_not_higgs is None:
        return "higgs", "engine: higgs"
    for name in CPU_FALLBACK:
        if engine_class(name).check() is None:
            return name, f"engine: {name} (higgs not used: {why_not_higgs})"
    raise EngineUnavailable("no engine can run here; run `make install` (or `pip install higgs-cli`) to get the CPU engines")


def create(name: str, settings: Any = None) -> Engine:
    """Instantiate an engine by name with engine settings (only the higgs engine reads them)."""
    from ..interrupts import held

    cls = engine_class(name)
    with held():  # a Ctrl-C inside a native extension's import would abort the process instead of stopping it
        for module in cls.native_modules:
            if importlib.util.find_spec(module) is not None:  # a missing one is the engine's own error to report
                importlib.import_module(module)
    return cls(settings)
