"""Re-checking a finished render: each chunk cut out by the manifest's timings and put through the quality gate's checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .errors import UsageError
from .options import SAMPLE_RATE


def check_render(audio: Path, manifest: Path, model: str | None = None) -> dict[str, Any]:
    """A report: every timed chunk's verdict, and `flagged` (index and reasons of each failing chunk)."""
    from .audio import read_audio, resample
    from .inspection import load_manifest, manifest_mismatch
    from .qa import Checker

    doc = load_manifest(Path(audio), Path(manifest))
    rows = [r for r in doc.get("chunks") or [] if isinstance(r, dict) and r.get("start") is not None and r.get("end") is not None]
    if not rows:
        raise UsageError(f"{manifest}: no chunk timings in this manifest; give the JSON a render wrote (--json), not a --dry-run plan")
    wav, rate = read_audio(Path(audio))
    wav = resample(wav, rate, SAMPLE_RATE)
    duration = len(wav) / SAMPLE_RATE
    _check_timings(rows, duration, manifest)
    problem = manifest_mismatch(doc, duration)
    if problem:
        raise UsageError(f"{manifest}: {problem}; is this the manifest of {audio}? give the JSON written with it")
    checker, expect = Checker(model), Expectations(doc)
    report: dict[str, Any] = {"file": str(audio), "manifest": str(manifest), "chunks": [], "flagged": []}
    for row in rows:
        piece = wav[round(float(row["start"]) * SAMPLE_RATE): round(float(row["end"]) * SAMPLE_RATE)]
        verdict = checker.check(piece, SAMPLE_RATE, expect.of(row))
        report["chunks"].append({"index": row.get("index"), "speaker": row.get("speaker"), **verdict.doc()})
        if not verdict.passed:
            report["flagged"].append({"index": row.get("index"), "line": row.get("line"), "reasons": verdict.reasons})
    return report


def _check_timings(rows: list[dict[str, Any]], duration: float, manifest: Path) -> None:
    """Every chunk's start and end are seconds inside the file, start before end (an edited manifest is named, not trusted)."""
    import math

    for row in rows:
        start, end = row.get("start"), row.get("end")
        numbers = all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in (start, end))
        if not numbers or not 0 <= start < end <= duration + 0.5:
            raise UsageError(f"{manifest}: chunk {row.get('index', '?')} runs from {start!r} to {end!r} s, which is not a stretch "
                             f"of this {duration:.1f} s file; give the manifest written with it (unedited)")


class Expectations:
    """Per speaker: the voice's rate window and, for an engine that clones, its clip as the voice reference."""

    def __init__(self, doc: dict[str, Any]):
        from . import engines

        speakers = doc.get("speakers")
        self.speakers = {k: v for k, v in speakers.items() if isinstance(v, dict)} if isinstance(speakers, dict) else {}
        try:
            self.clones = engines.engine_class(str(doc.get("engine"))).clones
        except UsageError:
            self.clones = False
        self._cache: dict[str, Any] = {}

    def of(self, row: dict[str, Any]) -> Any:
        from dataclasses import replace

        speaker = str(row.get("speaker"))
        if speaker not in self._cache:
            self._cache[speaker] = self._voice(speaker)
        return replace(self._cache[speaker], text=str(row.get("heard") or row.get("spoken") or row.get("text") or ""))

    def _voice(self, speaker: str) -> Any:
        from .audio import read_audio
        from .errors import VoiceError
        from .qa import Expected, voice_rate_window
        from .transcript import parse_transcript
        from .voices import resolve

        name = (self.speakers.get(speaker) or {}).get("voice")
        try:
            voice = resolve(name) if isinstance(name, str) and name else None
        except VoiceError:
            voice = None  # a voice since removed: the checks that need it are skipped
        if voice is None or voice.clip is None:
            return Expected("", voice.language if voice else "en")
        clip, rate = read_audio(voice.clip)
        window = voice_rate_window(len(clip) / rate, parse_transcript(voice.transcript).words if voice.transcript else 0)
        reference = np.asarray(clip, dtype=np.float32) if self.clones else None
        return Expected("", voice.language or "en", window, f"{speaker}:{voice.name}", reference, rate)
