"""Planning: a script becomes a Plan (chunks, cast, per-chunk seeds and cache keys), and the manifest that describes a job."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from . import engines
from .cache import ChunkCache, file_digest, make_key
from .cast import cast
from .chunking import Chunk, chunk_script
from .errors import VoiceError
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
        if plan.script.names:  # the source's speaker names -> ours (`Maya: ...` -> SPEAKER0)
            doc["input"]["speakers"] = {name: spk for spk, name in plan.script.names.items()}
    preview = None if timings is not None else cls.preview(plan)
    if preview:
        doc["engine_plan"] = preview
    return doc
