"""The quality gate in `higgs serve`: every chunk of a request is heard (takes.Gate, as `render` does) before it is
sent; in retake mode a failing chunk is rendered again by the server's own engines with the next take (and, with
audio context, the later chunks that heard the rejected take, in the kept context); verdicts go
to the response (an `X-Higgs-QA` header, or the SSE done event) and the access log.

Modes are the CLI's: `auto` is the engine's default (or $HIGGS_QA), `report` only hears, `retake` re-renders a failing
chunk up to `--retakes` times and sends the best take, `strict` does the same but fails the request (500,
code `quality_failed`; a stream breaks off, SSE gets an error event) when a chunk still fails: a client never gets
audio the gate rejected. Retakes go to the scheduler (serving.py): the CPU engines' worker pool renders them ahead of
other work; the shared higgs batch takes each as a job of its own in its next free row.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import numpy as np

from . import engines
from .cache import Entry
from .errors import HiggsError, RenderError
from .options import QaOptions
from .takes import Gate, TakeStore, take_seed

log = logging.getLogger("higgs.server")


class QualityFailed(HiggsError):
    """strict: a chunk still fails the gate after its retakes; the request gets no audio for it."""


class _Serialised:
    """The Checker with one check at a time: requests share one recogniser (and its CPU threads)."""

    def __init__(self, checker: Any):
        self._checker, self._lock = checker, threading.Lock()
        self.model = checker.model

    def check(self, *args: Any) -> Any:
        with self._lock:
            return self._checker.check(*args)


class ServerGate:
    """The server's gate: its mode for this engine, retakes, and the one recogniser every request shares."""

    def __init__(self, qa: QaOptions, engine: str, settings: Any = None):
        from . import asr
        from .qa import Checker
        from .takes import device_for, resolve_mode

        self.mode, self.retakes, self.engine = resolve_mode(qa, engine), qa.retakes, engine
        why = asr.unavailable() if self.mode != "off" else None
        if why and qa.mode == "auto":
            log.warning("quality gate off: %s", why)
            self.mode = "off"
        elif why:
            raise asr.QaUnavailable(why)
        self.clones = engines.engine_class(engine).clones
        self.checker = _Serialised(Checker(qa.model, device_for(engine, settings))) if self.mode != "off" else None

    @property
    def on(self) -> bool:
        return self.checker is not None

    def load(self) -> None:
        """Load the recogniser now (start-up), so a bad --qa-model fails before the server listens."""
        if self.checker is not None:
            self.checker._checker.asr  # noqa: B018, SLF001 - loading is the point

    def for_job(self, job: Any, sched: Any, takes: list[int]) -> JobGate | None:
        return JobGate(self, job, sched, takes) if self.on else None


class JobGate:
    """One request under the gate: what takes.Gate needs of a renderer (its plan and keys as takes change; a
    retake asked of the scheduler), and the verdicts collected on the way."""

    def __init__(self, gate: ServerGate, job: Any, sched: Any, takes: list[int]):
        from .planning import chunk_keys

        self.job, self.sched, self.mode = job, sched, gate.mode
        self.plan, self.keys, self.takes = job.plan, chunk_keys(job.plan), list(takes)
        self.retakes_inline = sched.inline_retakes
        self.gate = Gate(job.plan, TakeStore(job.store.root), gate.mode, gate.retakes, gate.checker, gate.clones)
        self.rows: list[dict[str, Any]] = []
        self.deadline: float | None = None

    def entries(self, deadline: float | None = None) -> Iterator[tuple[int, Entry]]:
        """The job's chunks in order, each once its verdict is in (and, retaking, as the best take)."""
        self.deadline = deadline
        for i in range(len(self.plan.chunks)):
            entry, hit = self._entry(i)
            entry, _, qa = self.gate.settle(self, i, entry, hit)
            self.rows.append({"index": i, **qa})
            if self.mode == "strict" and not qa["passed"]:
                tried = f" after {qa['takes']} takes" if qa["takes"] > 1 else ""
                raise QualityFailed(f"chunk {i} failed the quality gate{tried} ({'; '.join(qa['reasons'])}); the server is in strict "
                                    "mode: retry with another seed, or ask the operator for --qa retake")
            yield i, entry

    def _entry(self, i: int) -> tuple[Entry, bool]:
        """Chunk `i` as the job rendered it, or, when its context held a retaken chunk (its key changed), rendered anew
        in the kept context (engines with audio context)."""
        if self.keys[i] == self.job.keys[i]:
            self.job.wait(i, self.deadline)
            entry, hit = self.job.store.get(self.keys[i]), i not in self.job.missing
        else:
            entry = self.job.store.get(self.keys[i])
            hit = entry is not None
            entry = entry or self.sched.retake(self.job, self.plan.request(i), self.keys[i], self.deadline, self.plan)
        if entry is None:
            raise RenderError(f"chunk {i} vanished from the cache while the request ran; send it again")
        return entry, hit

    def settle_all(self, deadline: float | None = None) -> None:
        for _ in self.entries(deadline):
            pass

    def summary(self) -> dict[str, Any]:
        """What the manifest's `qa` says (takes.Prepared.summarise), for the chunks heard so far."""
        flagged = [r["index"] for r in self.rows if not r["passed"]]
        return {"mode": self.mode, "checked": len(self.rows), "flagged": len(flagged), "flagged_chunks": flagged,
                "retaken": sum(1 for r in self.rows if r["takes"] > 1)}

    def log_doc(self) -> dict[str, Any]:
        """The summary plus, per flagged or retaken chunk, its kept take and reasons (the access log's `qa`)."""
        chunks = [{"index": r["index"], "take": r["take"], "takes": r["takes"], "passed": r["passed"], "reasons": r["reasons"]}
                  for r in self.rows if not r["passed"] or r["takes"] > 1]
        return {**self.summary(), **({"chunks": chunks} if chunks else {})}

    # --- takes.Renderer ---
    def take(self, i: int, take: int) -> tuple[Entry, bool]:
        self._retarget(i, take)
        entry = self.job.store.get(self.keys[i])
        if entry is not None:
            return entry, True
        return self.sched.retake(self.job, self.plan.request(i), self.keys[i], self.deadline, self.plan), False

    def keep(self, i: int, take: int, entry: Entry) -> None:
        self._retarget(i, take)

    def base_key(self, i: int) -> str:
        from .planning import chunk_keys, chunk_seeds

        seeds = list(self.plan.seeds)
        seeds[i] = chunk_seeds(self.plan.options.seed, self.plan.chunks)[i]
        return chunk_keys(replace(self.plan, seeds=tuple(seeds)))[i]

    def anchor_audio(self, speaker: str) -> np.ndarray | None:
        from .planning import all_keys

        anchor = next((a for a in engines.engine_class(self.plan.engine).anchors(self.plan) if a.speaker == speaker), None)
        entry = self.job.store.get(all_keys(self.plan)[anchor.index]) if anchor is not None else None
        return entry.audio if entry is not None else None

    def _retarget(self, i: int, take: int) -> None:
        from .planning import chunk_keys, chunk_seeds

        seeds = list(self.plan.seeds)
        seeds[i] = take_seed(chunk_seeds(self.plan.options.seed, self.plan.chunks)[i], take)
        self.plan = replace(self.plan, seeds=tuple(seeds))
        self.keys, self.takes[i] = chunk_keys(self.plan), take
