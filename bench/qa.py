"""The quality gate measured: false flags on clean renders of the bundled voices, detection of damaged renders,
the voice check's separation, and the gate's cost as a ratio to rendering, per CPU engine.

For each engine the sentences of bench/long_text.txt (its speakers cast to the bundled voices) are rendered
twice through the real pipeline into fresh caches: `--qa off` and `--qa report`; the ratio of the two wall
times is the overhead, and the report pass's manifest gives the false flags. Then the first `--damaged`
chunks are damaged four ways (silenced; another chunk's audio in its place; cut to half and to three
quarters; a second of loud white noise mixed into the middle) and checked with the same expectations.
The voice check (speaker embeddings) compares chunks with their own voice's clip and the other voices'.

    .venv/bin/python bench/qa.py [--chunks 100] [--damaged 20] [--engines piper espeak:50] [--offset 0] [--no-write]

An engine may carry its own chunk count (`espeak:50`).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, md_table, update_section  # noqa: E402

TEXT = ROOT / "bench" / "long_text.txt"
DAMAGES = ("silenced", "swapped", "truncated to 1/2", "truncated to 3/4", "noise burst")


MAX_WORDS = 20  # sentence chunks of up to 20 words (~6 s): 100 of them keep the bench to minutes


OFFSET = 0  # --offset: the first chunk of the text to use (chunks after those the thresholds were set on are unseen text)


def plan_for(engine: str, chunks: int, qa: str):
    from higgs_cli.options import QaOptions, RenderOptions
    from higgs_cli.pipeline import make_plan
    from higgs_cli.transcript import read_transcript

    options = RenderOptions(engine=engine, chunk="sentence", max_words=MAX_WORDS, qa=QaOptions(mode=qa))
    plan = make_plan(read_transcript(TEXT), options, engine)
    return replace(plan, chunks=plan.chunks[OFFSET:OFFSET + chunks], seeds=plan.seeds[OFFSET:OFFSET + chunks])


def timed_render(engine: str, chunks: int, qa: str, folder: Path) -> tuple[float, dict]:
    from higgs_cli.cache import ChunkCache
    from higgs_cli.pipeline import render

    plan = plan_for(engine, chunks, qa)
    started = time.perf_counter()
    doc = render(plan, folder / f"{engine}-{qa}.wav", cache=ChunkCache(folder / f"cache-{qa}"))
    return time.perf_counter() - started, doc


def damage(kind: str, audio: np.ndarray, other: np.ndarray, rng: np.random.Generator, rate: int) -> np.ndarray:
    if kind == "silenced":
        return np.zeros_like(audio)
    if kind == "swapped":
        return other
    if kind.startswith("truncated"):
        return audio[: int(len(audio) * (0.5 if kind.endswith("1/2") else 0.75))]
    out = audio.copy()
    mid, n = len(out) // 2, min(rate, len(out) // 2)
    out[mid - n // 2: mid - n // 2 + n] += rng.normal(0, 0.25, n).astype(np.float32)
    return np.clip(out, -1, 1)


def chunk_audio(doc: dict, wav: np.ndarray, rate: int, i: int) -> np.ndarray:
    row = doc["chunks"][i]
    return wav[round(row["start"] * rate): round(row["end"] * rate)]


def detect(engine: str, doc: dict, wav: np.ndarray, n: int) -> tuple[dict[str, int], Counter]:
    """Damage the first n chunks each way; count the flagged ones and the reasons given."""
    from higgs_cli.check import Expectations
    from higgs_cli.options import SAMPLE_RATE
    from higgs_cli.qa import Checker

    checker, expect, rng = Checker(), Expectations(doc), np.random.default_rng(13)
    caught, reasons = dict.fromkeys(DAMAGES, 0), Counter()
    rows = doc["chunks"]
    for i in range(n):
        audio = chunk_audio(doc, wav, SAMPLE_RATE, i)
        j = next(k for k in range(i + 1, i + len(rows)) if rows[k % len(rows)]["text"] != rows[i]["text"]) % len(rows)
        for kind in DAMAGES:
            verdict = checker.check(damage(kind, audio, chunk_audio(doc, wav, SAMPLE_RATE, j), rng, SAMPLE_RATE), SAMPLE_RATE, expect.of(rows[i]))
            caught[kind] += not verdict.passed
            reasons.update(f"{kind}: {r.split(':')[0]}" for r in verdict.reasons)
    return caught, reasons


def voice_separation(doc: dict, wav: np.ndarray, n: int) -> dict:
    """Similarity of chunks to their own voice's clip and to every other bundled voice's clip."""
    from higgs_cli.audio import read_audio
    from higgs_cli.options import QA_VOICE_MIN, SAMPLE_RATE
    from higgs_cli.qa import VoiceMatcher
    from higgs_cli.voices import resolve

    matcher, own, other, seconds = VoiceMatcher(), [], [], []
    voices = sorted({v["voice"] for v in doc["speakers"].values()})
    clips = {v: read_audio(resolve(v).clip) for v in voices}
    rows = [r for r in doc["chunks"] if r["end"] - r["start"] >= 1.5][:n]
    for row in rows:
        audio = chunk_audio(doc, wav, SAMPLE_RATE, row["index"])
        for v in voices:
            started = time.perf_counter()
            s = matcher.similarity(audio, SAMPLE_RATE, v, *clips[v])
            seconds.append(time.perf_counter() - started)
            (own if v == row["voice"] else other).append(s)
    return {"chunks": len(rows), "voices": len(voices), "own_min": min(own), "own_median": float(np.median(own)),
            "other_max": max(other), "other_median": float(np.median(other)), "threshold": QA_VOICE_MIN,
            "own_flagged": sum(s < QA_VOICE_MIN for s in own), "other_passed": sum(s >= QA_VOICE_MIN for s in other),
            "other_pairs": len(other), "embed_seconds_median": float(np.median(seconds[len(voices):]))}


def run_engine(engine: str, chunks: int, damaged: int, folder: Path) -> dict:
    import soundfile as sf

    off_s, off = timed_render(engine, chunks, "off", folder)
    on_s, on = timed_render(engine, chunks, "report", folder)
    wav, _ = sf.read(str(folder / f"{engine}-off.wav"), dtype="float32")
    flagged = [(r["index"], r["voice"], r["qa"]["reasons"], r["text"], r["qa"]["asr"]) for r in on["chunks"] if not r["qa"]["passed"]]
    wers = [r["qa"]["wer"] for r in on["chunks"] if r["qa"]["wer"] is not None]
    caught, reasons = detect(engine, off, wav, damaged)
    return {"engine": engine, "chunks": len(on["chunks"]), "speech_s": round(on["duration"], 1), "off_s": round(off_s, 1),
            "report_s": round(on_s, 1), "ratio": round(on_s / off_s, 2), "flagged": flagged,
            "wer_median": float(np.median(wers)), "wer_p95": float(np.percentile(wers, 95)), "wer_max": max(wers),
            "voices": sorted({r["voice"] for r in on["chunks"]}), "damaged": damaged, "caught": caught,
            "reasons": dict(reasons), "doc": off, "wav": wav}


def report(results: list[dict], voice: dict | None, args: argparse.Namespace) -> str:
    rows = [[r["engine"], r["chunks"], ", ".join(r["voices"]), f"{len(r['flagged'])} of {r['chunks']}",
             f"{r['wer_median']:.2f} / {r['wer_p95']:.2f} / {r['wer_max']:.2f}", r["speech_s"], r["off_s"], r["report_s"],
             f"{r['ratio']:.2f}x"] for r in results]
    command = f"bench/qa.py --chunks {args.chunks} --damaged {args.damaged} --engines {' '.join(args.engines)} --voice-chunks {args.voice_chunks}"
    command += f" --offset {args.offset}" if args.offset else ""
    body = [f"Command: `.venv/bin/python {command}` "
            f"(sentences of bench/long_text.txt, at most {MAX_WORDS} words a chunk, its speakers cast to the bundled voices; Whisper tiny.en int8 on the CPU; "
            "the machine was shared with other jobs, so wall times are noisy).",
            "",
            md_table(["engine", "chunks", "voices", "false flags", "WER median / p95 / max", "speech s", "render s (--qa off)",
                      "render s (--qa report)", "overhead"], rows), ""]
    for r in results:
        for index, voice_name, why, text, heard in r["flagged"]:
            body.append(f"- {r['engine']} chunk {index} ({voice_name}) flagged: {'; '.join(why)}; text \"{text}\", heard \"{heard}\"")
    body += ["", f"Damaged renders (the first {results[0]['damaged']} chunks of each engine, each damaged every way):", "",
             md_table(["engine", *DAMAGES], [[r["engine"], *(f"{r['caught'][k]} of {r['damaged']}" for k in DAMAGES)] for r in results]),
             "", "Reasons given (count over all damaged chunks): "
             + "; ".join(f"{r['engine']}: " + ", ".join(f"{k} {v}" for k, v in sorted(r["reasons"].items())) for r in results)]
    if voice:
        body += ["", f"Voice check (Resemblyzer GE2E embeddings, cosine similarity; piper chunks of >= 1.5 s against the clips of "
                 f"{voice['voices']} bundled voices): own voice min {voice['own_min']:.3f}, median {voice['own_median']:.3f}; "
                 f"other voices max {voice['other_max']:.3f}, median {voice['other_median']:.3f}. At the threshold "
                 f"{voice['threshold']}: {voice['own_flagged']} of {voice['chunks']} own-voice pairs flagged, "
                 f"{voice['other_passed']} of {voice['other_pairs']} other-voice pairs passed. One embedding: "
                 f"{voice['embed_seconds_median']:.2f} s median (after the first)."]
    return "\n".join(body)


def signal_only(voice: str, chunks: int) -> None:
    """The signal checks alone on the Piper chunks of one voice (no recogniser): how many would they flag?"""
    from higgs_cli import engines
    from higgs_cli.audio import resample, trim_silence
    from higgs_cli.options import SAMPLE_RATE
    from higgs_cli.qa import signal_reasons

    plan, engine = plan_for("piper", chunks, "off"), engines.create("piper")
    mine = [i for i in range(len(plan.chunks)) if plan.cast[plan.chunks[i].speaker].name == voice]
    flagged, peaks = 0, []
    for i in mine:
        audio = trim_silence(resample(engine.synthesize(plan.request(i)).audio, engine.sample_rate, SAMPLE_RATE), SAMPLE_RATE)
        flagged += bool(signal_reasons(audio, SAMPLE_RATE))
        peaks.append(float(np.abs(audio).max()))
    print(f"{voice}: {len(mine)} chunks, {flagged} flagged by the signal checks; peaks over 1.0 in {sum(p > 1 for p in peaks)}, "
          f"highest {max(peaks):.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", type=int, default=100)
    parser.add_argument("--damaged", type=int, default=20)
    parser.add_argument("--engines", nargs="+", default=["piper", "espeak"])
    parser.add_argument("--voice-chunks", type=int, default=15, help="chunks for the voice check (0 skips it)")
    parser.add_argument("--offset", type=int, default=0, help="start at this chunk of the text (0..163 for bench/long_text.txt)")
    parser.add_argument("--no-write", action="store_true", help="print, do not update BENCHMARKS.md")
    parser.add_argument("--signal-only", metavar="VOICE", help="only the signal checks on the first --chunks chunks' Piper renders of VOICE")
    args = parser.parse_args()
    global OFFSET
    OFFSET = args.offset
    if args.signal_only:
        signal_only(args.signal_only, args.chunks)
        return
    results = []
    with tempfile.TemporaryDirectory(prefix="higgs-bench-qa-") as tmp:
        for spec in args.engines:
            engine, _, count = spec.partition(":")
            results.append(run_engine(engine, int(count or args.chunks), args.damaged, Path(tmp)))
            print(json.dumps({k: v for k, v in results[-1].items() if k not in ("doc", "wav")}, indent=1), flush=True)
        first = next((r for r in results if r["engine"] == "piper"), None)
        voice = voice_separation(first["doc"], first["wav"], args.voice_chunks) if first and args.voice_chunks else None
    text = report(results, voice, args)
    print(text)
    if not args.no_write:
        update_section("Quality gate: false flags, detection, overhead (issue 13)", text)


if __name__ == "__main__":
    main()
