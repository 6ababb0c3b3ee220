"""Orchestration: script -> plan (chunks, cast, seeds, cache keys) -> rendered chunks -> one output file + manifest."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from . import engines
from .audio import AudioWriter, fade_edges, resample, silence, trim_silence
from .cache import ChunkCache, Entry, file_digest, make_key
from .cast import cast
from .chunking import Chunk, chunk_script
from .errors import OutputError, RenderError, VoiceError
from .options import SAMPLE_RATE, RenderOptions
from .transcript import Script
from .voices import Voice

MANIFEST_VERSION = 1


@dataclass(frozen=True)
class Plan:
    """Everything decided before synthesis; `--dry-run` prints it."""

    script: Script
    chunks: tuple[Chunk, ...]
    cast: dict[str, Voice]
    engine: str
    seeds: tuple[int, ...]
    options: RenderOptions
    notes: tuple[Any, ...] = ()  # scripts.Note: warnings made while planning (e.g. letters a voice cannot speak)
    why: dict[str, str] = field(default_factory=dict)  # speaker -> why casting chose its voice (empty when given)

    def request(self, i: int) -> engines.ChunkRequest:
        chunk = self.chunks[i]
        return engines.ChunkRequest(chunk.index, chunk.speaker, chunk.text, self.cast[chunk.speaker], self.seeds[i])


@dataclass(frozen=True)
class Progress:
    done: int
    total: int
    elapsed: float
    chunk: Chunk
    cached: bool


def chunk_seeds(base: int, chunks: tuple[Chunk, ...]) -> tuple[int, ...]:
    """A distinct, recorded seed per chunk, from the base seed and the chunk's own content.

    Content (speaker, text, and which repeat of that text it is), not position, so inserting a
    paragraph does not reseed, and so re-render, every chunk after it.
    """
    seen: dict[tuple[str, str], int] = {}
    seeds = []
    for c in chunks:
        n = seen[(c.speaker, c.text)] = seen.get((c.speaker, c.text), -1) + 1
        digest = hashlib.sha256(f"higgs-chunk:{base}:{c.speaker}:{n}:{c.text}".encode()).digest()
        seeds.append(int.from_bytes(digest[:4], "big") & 0x7FFFFFFF)
    return tuple(seeds)


def make_plan(script: Script, options: RenderOptions, engine: str, voices: dict[str, Voice] | None = None) -> Plan:
    """Chunks, cast and seeds of one job; `voices` (speaker -> Voice, e.g. a whole book's cast) replaces casting."""
    chunks = tuple(chunk_script(script, options.chunk, options.max_words))
    why: dict[str, str] = {}
    if voices is not None:
        voices = {spk: voices[spk] for spk in script.speakers}
    else:
        casting = cast(script.speakers, options.voices, options.default_voice, options.distinct, script_text(script), options.descriptions,
                       script.names)
        voices, why = casting.voices, casting.why
    check_cast(voices, engine)
    chunks, notes = spoken_chunks(chunks, voices, options, engine)
    notes += cast_notes(voices, engine)
    return Plan(script, chunks, voices, engine, chunk_seeds(options.seed, chunks), options, notes, why)


def script_text(script: Script) -> str:
    """All the words of a script, what casting reads for descriptions of its speakers."""
    return "\n".join(s.text for s in script.segments)


def spoken_chunks(chunks: tuple[Chunk, ...], voices: dict[str, Voice], options: RenderOptions,
                  engine: str) -> tuple[tuple[Chunk, ...], tuple[Any, ...]]:
    """Each chunk's text as the engine is given it (numbers read out, lexicon applied); the words as written are kept."""
    from .options import NUMBERS_BY_ENGINE
    from .scripts import Note
    from .textclean import spoken as spoken_text  # not pipeline.spoken (audio)

    numbers = NUMBERS_BY_ENGINE.get(engine, "words") if options.speech.numbers == "auto" else options.speech.numbers
    out, notes = [], []
    for chunk in chunks:
        said, found, heard = spoken_text(chunk.text, voices[chunk.speaker].language or "en", numbers, options.speech.lexicon, engine)
        notes += [Note(chunk.line, kind, message) for kind, message in found]
        out.append(chunk if said == chunk.text else replace(chunk, text=said, written=chunk.text, heard=heard if heard != said else None))
    return tuple(out), tuple(notes)


def check_cast(voices: dict[str, Voice], engine: str) -> None:
    """Every voice's settings for this engine are usable (a profile's `tilt: abc` is named here, not mid-render)."""
    cls = engines.engine_class(engine)
    for voice in {v.name: v for v in voices.values()}.values():
        problem = cls.voice_problem(voice.settings(engine))
        if problem:
            raise VoiceError(f"voice {voice.name!r} ({voice.source}): its profile's engines: {engine}: {problem}; fix {voice.name}.yaml")


def cast_notes(voices: dict[str, Voice], engine: str) -> tuple[Any, ...]:
    """Warnings about the cast: a recorded clip on an engine that cannot clone is not the voice the user will hear."""
    from .scripts import Note

    if engines.engine_class(engine).clones:
        return ()
    return tuple(Note(None, "warning", f"{spk}: voice {voice.name!r} is a recorded clip, but the {engine} engine cannot clone voices; "
                                       f"{spk} speaks in the {engine} engine's default voice instead (clone with the higgs engine, "
                                       f"or give {voice.name}.yaml `engines: {engine}:` settings)")
                 for spk, voice in voices.items() if voice.clip is not None and voice.source in ("path", "user") and not voice.settings(engine))


def voice_fingerprint(voice: Voice, engine: type[engines.Engine]) -> dict[str, Any]:
    """What of a voice this engine hears: cloning engines the clip and its text, others the profile."""
    doc: dict[str, Any] = {"settings": voice.settings(engine.name)}
    if engine.clones:
        doc.update(clip=file_digest(voice.clip) if voice.clip else None, transcript=voice.transcript,
                   description=voice.description, gender=voice.gender)
    return doc


def chunk_keys(plan: Plan) -> list[str]:
    """Cache keys: engine identity, voice, text, seed, and the keys of the chunks (and anchors) in its context."""
    keys = all_keys(plan)
    return [keys[i] for i in range(len(plan.chunks))]


def all_keys(plan: Plan) -> dict[int, str]:
    """Cache keys of the chunks (0, 1, ...) and of the engine's anchors (-1, -2, ...): an anchor hears only its voice."""
    cls = engines.engine_class(plan.engine)
    identity = cls.identity(plan.options.higgs)
    prints = {spk: voice_fingerprint(v, cls) for spk, v in plan.cast.items()}
    everyone = sorted(prints.items()) if cls.conditions_on_cast else None
    keys: dict[int, str] = {}
    for anchor in cls.anchors(plan):
        keys[anchor.index] = make_key({"engine": identity, "voice": prints[anchor.speaker], "anchor": anchor.speaker,
                                       "text": anchor.text, "seed": anchor.seed})
    for i, chunk in enumerate(plan.chunks):
        keys[i] = make_key({
            "engine": identity, "voice": prints[chunk.speaker], "cast": everyone,
            "speaker": chunk.speaker if cls.conditions_on_cast else None,
            "text": chunk.text, "seed": plan.seeds[i], "context": [keys[j] for j in cls.context_of(plan, i)],
        })
    return keys


def gap_before(prev: Chunk | None, chunk: Chunk, options: RenderOptions, heading: bool = False) -> float:
    """Silence before a chunk: explicit [pause] tags replace the automatic gap."""
    explicit = [c.seconds for c in (prev.controls_after if prev else []) + chunk.controls_before if c.kind == "pause"]
    if explicit:
        return sum(explicit)
    if prev is None:
        return 0.0
    if heading and prev.paragraph != chunk.paragraph:
        return options.pause_chapter
    if prev.turn != chunk.turn:
        return options.pause_turn
    if prev.paragraph != chunk.paragraph:
        return options.pause_paragraph
    return options.pause_sentence


def manifest(plan: Plan, output: Path | None, keys: list[str] | None = None, timings: list[tuple[float, float]] | None = None,
             duration: float | None = None, chunk_info: list[dict] | None = None, cache: ChunkCache | None = None) -> dict[str, Any]:
    """The machine-readable account of a job; without timings it is the dry-run plan."""
    cls = engines.engine_class(plan.engine)
    doc: dict[str, Any] = {
        "version": MANIFEST_VERSION,
        "output": str(output) if output else None,
        "sample_rate": SAMPLE_RATE,
        "engine": plan.engine,
        "reproducible": cls.reproducible,
        "chunking": {"method": plan.options.chunk, "max_words": plan.options.max_words},
        "seed": plan.options.seed,
        "words": sum(c.words for c in plan.chunks),
        "speakers": {spk: {"voice": v.name, "source": v.source, "description": v.description,
                           "settings": v.settings(plan.engine), "gender": v.gender, "why": plan.why.get(spk),
                           **({"name": plan.script.names[spk]} if spk in plan.script.names else {})} for spk, v in plan.cast.items()},
    }
    anchors = cls.anchors(plan)
    if anchors:  # rendered once per voice and seed, never heard: what clip-less voices are pinned to
        doc["anchors"] = [{"index": a.index, "speaker": a.speaker, "voice": a.voice.name, "seed": a.seed, "text": a.text}
                          for a in anchors]
    if duration is not None:
        doc["duration"] = round(duration, 3)
    rows = []
    for i, chunk in enumerate(plan.chunks):
        row = {"index": chunk.index, "speaker": chunk.speaker, "voice": plan.cast[chunk.speaker].name,
               "text": chunk.written or chunk.text, "spoken": chunk.text, "words": chunk.words, "line": chunk.line, "seed": plan.seeds[i],
               "reproducible": cls.reproducible}
        if getattr(chunk, "heard", None):  # what a listener should hear (numbers read out, no respellings): `higgs check`
            row["heard"] = chunk.heard
        if keys is not None:
            row["key"] = keys[i][:16]
            if timings is None and cache is not None and cache.enabled:
                row["cached"] = cache.has(keys[i])
        if timings is not None:
            row["start"], row["end"] = round(timings[i][0], 3), round(timings[i][1], 3)
        if chunk_info and chunk_info[i]:
            row.update(chunk_info[i])
        rows.append(row)
    doc["chunks"] = rows
    if timings is not None:
        doc["rendered"] = sum(1 for r in rows if not r.get("cached"))
    first_chunk = {}
    for i, chunk in enumerate(plan.chunks):
        first_chunk.setdefault(chunk.paragraph, i)
    doc["chapters"] = [{"title": title.rstrip("."), "chunk": first_chunk[seg],
                        **({"start": rows[first_chunk[seg]]["start"]} if timings is not None else {})}
                       for seg, title in plan.script.headings if seg in first_chunk]
    notes = [n.doc() for n in plan.script.notes + plan.notes]
    if notes or plan.script.format != "higgs":
        doc["input"] = {"format": plan.script.format, "notes": notes}
    preview = None if timings is not None else cls.preview(plan)
    if preview:
        doc["engine_plan"] = preview
    return doc


# --- rendering ---------------------------------------------------------------------------------------
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


class _Renderer:
    """Yields (index, entry, cached) in chunk order; creates the engine only when a chunk (or anchor) misses.

    Anchors are rendered or fetched first and never yielded. A batching engine with a width above 1
    gets every missing chunk at once (render_batch); finished chunks go to the cache (a temporary one
    under --no-cache) and come back out in order, so memory holds no more than the chunks in flight.
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
            ready, done, n = set(), 0, len(self.plan.chunks)
            for request in _fill(engine, [(0, r) for r in requests], [keys], store, self.width):
                ready.add(request.index)
                while done < n and (done in ready or done not in missing):
                    yield done, self._stored(store, keys[done]), done not in missing
                    done += 1
            for i in range(done, n):
                yield i, self._stored(store, keys[i]), i not in missing

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
        _Renderer._store(cache, where[(request.job, request.index)], engine, result)
        yield request


def _cue_path(name: str | None, plan: Plan) -> str | None:
    """Music named in a transcript is found beside the transcript."""
    if name is None:
        return None
    path = Path(name).expanduser()
    if not path.is_absolute() and plan.script.source and Path(plan.script.source).is_file():
        path = Path(plan.script.source).parent / path
    return str(path)


def _chapters(doc: dict[str, Any], duration: float) -> list[tuple[str, float, float]]:
    marks = doc.get("chapters") or []
    return [(m["title"], m["start"], marks[i + 1]["start"] if i + 1 < len(marks) else duration) for i, m in enumerate(marks)]


@dataclass
class _Timeline:
    """What the speech pass records for the finishing pass: chunk times and music cues (speech timeline)."""

    timings: list[tuple[float, float]]
    infos: list[dict]
    cues: list[tuple[float, str | None]]
    duration: float = 0.0
    plan: Plan | None = None  # the plan as rendered: the quality gate may have changed chunks' takes (seeds)
    keys: list[str] | None = None


def _speech_pass(plan: Plan, target: Path, keys: list[str], cache: ChunkCache, jobs: int, subtype: str | None,
                 on_progress: Callable[[Progress], None] | None, gate: Any = None, takes: list[int] | None = None) -> _Timeline:
    started = time.monotonic()
    line = _Timeline([], [], [(0.0, plan.options.music)] if plan.options.music else [])
    renderer = _Renderer(plan, keys, cache, jobs)
    renderer.takes = list(takes or renderer.takes)
    with AudioWriter(target, SAMPLE_RATE, subtype) as writer:
        for i, entry, hit in renderer:
            chunk = plan.chunks[i]
            qa = None
            if gate is not None:
                entry, hit, qa = gate.settle(renderer, i, entry, hit)
            audio = spoken(plan, entry.audio)
            gap_start = writer.frames / SAMPLE_RATE
            line.cues += [(gap_start, _cue_path(c.music, plan)) for c in chunk.controls_before if c.kind == "music"]
            heading = plan.script.segments[chunk.paragraph].heading
            writer.write(silence(gap_before(plan.chunks[i - 1] if i else None, chunk, plan.options, heading), SAMPLE_RATE))
            start = writer.frames / SAMPLE_RATE
            writer.write(audio)
            end = writer.frames / SAMPLE_RATE
            line.timings.append((start, end))
            line.cues += [(end, _cue_path(c.music, plan)) for c in chunk.controls_after if c.kind == "music"]
            line.infos.append({**entry.info, "cached": hit, **({"take": renderer.takes[i]} if renderer.takes[i] else {}),
                               **({"qa": qa} if qa is not None else {})})
            if on_progress:
                on_progress(Progress(i + 1, len(plan.chunks), time.monotonic() - started, chunk, hit))
        if plan.chunks:
            writer.write(silence(sum(c.seconds for c in plan.chunks[-1].controls_after if c.kind == "pause"), SAMPLE_RATE))
        line.duration = writer.frames / SAMPLE_RATE
    line.plan, line.keys = renderer.plan, renderer.keys
    return line


def render(plan: Plan, output: Path, on_progress: Callable[[Progress], None] | None = None, cache: ChunkCache | None = None,
           jobs: int = 1, subtitles: Path | None = None, stems: Path | None = None, retake_chunks: frozenset[int] = frozenset()) -> dict[str, Any]:
    """Synthesise (or fetch from the cache) every chunk in order and stream the joined speech to `output`.

    Each chunk uses its kept take (takes.py); `retake_chunks` get a new take. The quality gate (`options.qa`)
    hears every chunk as it comes and, in retake mode, re-renders failing ones before they are written.

    The speech goes to a temporary float wav first and the finishing pass (mixing.finish) writes `output`
    atomically: music, the programme loudness and the true-peak limiter, so no output ever clips (every
    output stays at or below the ceiling, -1 dBTP unless a preset asks for less).
    """
    import os

    from .containers import check_output
    from .files import sweep_stale, temp_path
    from .mixing import finish, validate
    from .subtitles import check_subtitle_path, write_subtitles

    check_output(output)
    if subtitles:
        check_subtitle_path(subtitles)
    check_job_files(plan, output, subtitles, stems)
    cache = cache or ChunkCache(None)
    from .takes import prepare

    ready = prepare(plan, cache, chunk_keys, retake_chunks)
    plan = ready.plan
    keys = chunk_keys(plan)
    # everything is written under temp names and the audio renamed into place last, so a late failure
    # (subtitles, stems, a full disk) leaves neither a half-written file nor audio without its companions
    sweep_stale(output)
    staged = temp_path(output, ".staged" + output.suffix.lower())
    try:
        validate(plan.options.finish)
        speech = temp_path(output, ".speech.wav")
        try:
            line = _speech_pass(plan, speech, keys, cache, jobs, "FLOAT", on_progress, ready.gate, ready.takes)
            doc = manifest(line.plan, output, line.keys, line.timings, line.duration, line.infos)
            regions = [(a, b, c.speaker) for (a, b), c in zip(line.timings, plan.chunks, strict=True) if b > a]
            result = finish(speech, staged, speech_regions=regions, music_cues=line.cues, options=plan.options.finish,
                            chapters=_chapters(doc, line.duration), stems=stems)
        finally:
            speech.unlink(missing_ok=True)
        _shift(doc, result["offset"])
        doc["duration"], doc["finish"] = result["duration"], {**result, "output": str(output)}
        ready.summarise(doc)
        if subtitles:
            doc["subtitles"] = {"path": str(subtitles), "cues": write_subtitles(doc["chunks"], subtitles)}
        os.replace(staged, output)
    finally:
        staged.unlink(missing_ok=True)
    return doc


def check_job_files(plan: Plan, output: Path, subtitles: Path | None = None, stems: Path | None = None) -> None:
    """Before any synthesis: no output overwrites an input, and every music file the job names is usable audio."""
    from .files import check_not_input
    from .mixing import check_music

    inputs: dict[str, Path | str | None] = {"transcript": plan.script.source if plan.script.source and Path(plan.script.source).is_file() else None,
                                           "--music file": plan.options.music, "--cover image": plan.options.finish.cover}
    for spk, voice in plan.cast.items():
        inputs[f"voice clip of {spk}"] = voice.clip
    cues = [(c.line, control.music) for c in plan.chunks for control in c.controls_before + c.controls_after
            if control.kind == "music" and control.music]
    for line, name in cues:
        where = f"{plan.script.source or '<text>'}:{line}: [music: {name}]"
        path = _cue_path(name, plan)
        inputs[f"music of {where}"] = path
        check_music(path, where)
    if plan.options.music:
        check_music(plan.options.music)
    check_not_input(output, inputs)
    if subtitles is not None:
        check_not_input(subtitles, {**inputs, "audio output": output}, "subtitles file")
    if stems is not None:
        check_stems_folder(Path(stems), output)


def check_stems_folder(stems: Path, output: Path) -> None:
    """--stems names a folder (new or existing) we can create files in, and not the output itself."""
    import os

    from .files import same_file

    if stems.exists() and not stems.is_dir():
        raise OutputError(f"--stems {stems}: exists and is not a folder; give a new or existing folder for the stems")
    if same_file(stems, output):
        raise OutputError(f"--stems {stems}: is the audio output; give a folder for the stems")
    nearest = stems
    while not nearest.exists() and nearest != nearest.parent:
        nearest = nearest.parent
    if not nearest.is_dir() or not os.access(nearest, os.W_OK):
        raise OutputError(f"--stems {stems}: cannot create files under {nearest} (permission denied); choose another folder")


def _shift(doc: dict[str, Any], offset: float) -> None:
    """Move chunk and chapter times onto the output timeline (a music intro delays the speech)."""
    if not offset:
        return
    for row in doc["chunks"] + doc.get("chapters", []):
        for key in ("start", "end"):
            if key in row:
                row[key] = round(row[key] + offset, 3)


# --- streaming (`-o -`, the server) ----------------------------------------------------------------
def spoken(plan: Plan, audio: np.ndarray) -> np.ndarray:
    """A rendered chunk as it goes into the programme: edges trimmed and faded, long inner pauses shortened."""
    audio = fade_edges(trim_silence(audio, SAMPLE_RATE), SAMPLE_RATE)
    if plan.options.max_silence is not None:
        from .mixing import shorten_silences

        audio = shorten_silences(audio, SAMPLE_RATE, plan.options.max_silence)
    return audio


def speech_pieces(plan: Plan, entries: Iterable[tuple[int, Entry]]) -> Iterator[np.ndarray]:
    """The speech `render` writes before its finishing pass, piece by piece as chunks arrive in order (the gap
    before each chunk, then the chunk, then any closing pause), through the true-peak limiter so that streamed
    audio never clips either (its level stays as rendered: a programme level needs the whole programme)."""
    from .loudness import limit_stream

    def pieces() -> Iterator[np.ndarray]:
        for i, entry in entries:
            chunk = plan.chunks[i]
            heading = plan.script.segments[chunk.paragraph].heading
            yield silence(gap_before(plan.chunks[i - 1] if i else None, chunk, plan.options, heading), SAMPLE_RATE)
            yield spoken(plan, entry.audio)
        if plan.chunks:
            yield silence(sum(c.seconds for c in plan.chunks[-1].controls_after if c.kind == "pause"), SAMPLE_RATE)

    yield from limit_stream(pieces())


def stream(plan: Plan, cache: ChunkCache | None = None, jobs: int = 1,
           on_progress: Callable[[Progress], None] | None = None) -> Iterator[np.ndarray]:
    """Render a plan and yield its speech as each chunk finishes (no finishing pass: music and loudness need
    the whole programme); true peaks are limited to -1 dBTP as they pass (speech_pieces)."""
    from .takes import prepare

    cache = cache or ChunkCache(None)
    started = time.monotonic()
    ready = prepare(plan, cache, chunk_keys)  # kept takes, and the quality gate as `render` has it
    plan = ready.plan
    renderer = _Renderer(plan, chunk_keys(plan), cache, jobs)
    renderer.takes = list(ready.takes or renderer.takes)

    def entries() -> Iterator[tuple[int, Entry]]:
        for i, entry, hit in renderer:
            if ready.gate is not None:
                entry, hit, _ = ready.gate.settle(renderer, i, entry, hit)
            if on_progress:
                on_progress(Progress(i + 1, len(plan.chunks), time.monotonic() - started, plan.chunks[i], hit))
            yield i, entry

    yield from speech_pieces(plan, entries())
