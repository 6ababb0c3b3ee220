"""End-to-end check of a real multi-speaker render, as a listener would judge it, by measurement:
render a dialogue transcript with the CLI (stems on), then per speaker stem: resemblyzer
embeddings (are the speakers clearly distinct?), Whisper tiny.en WER per chunk (is it intelligible?),
DNSMOS of the mix (signal quality), and pyloudnorm loudness plus the true peak the file reports.

Usage: .venv/bin/python bench/dialogue.py [TRANSCRIPT] [--engine piper]
Prints Markdown on stdout. Needs the tools in bench/requirements.txt.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent))
from voices import ASR_RATE, Judges, edit_distance, words  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("transcript", nargs="?", default=str(ROOT / "transcripts" / "demo_dialogue.txt"))
    parser.add_argument("--engine", default="piper")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="higgs-dialogue-") as tmp:
        out, stems = Path(tmp) / "mix.wav", Path(tmp) / "stems"
        env = {**os.environ, "HIGGS_CACHE_DIR": str(Path(tmp) / "cache")}
        started = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "higgs_cli", "dialogue", "-t", args.transcript, "-o", str(out), "--engine",
                               args.engine, "--stems", str(stems), "--json", "--quiet"], cwd=ROOT, env=env, capture_output=True, text=True)
        wall = time.monotonic() - started
        if proc.returncode:
            raise SystemExit(proc.stderr)
        doc = json.loads(proc.stdout)
        mix, rate = sf.read(str(out), dtype="float32")
        import soxr

        judges = Judges()
        emb, errors, total = {}, 0, 0
        for speaker in doc["speakers"]:
            track, _ = sf.read(str(stems / f"{speaker}.wav"), dtype="float32")
            spans = [track[round(c["start"] * rate): round(c["end"] * rate)] for c in doc["chunks"] if c["speaker"] == speaker]
            emb[speaker] = judges.embed(np.concatenate(spans), rate)
            for c, span in zip([c for c in doc["chunks"] if c["speaker"] == speaker], spans, strict=True):
                ref = words(c["text"])
                errors += edit_distance(ref, words(judges.transcribe(soxr.resample(span, rate, ASR_RATE))))
                total += len(ref)
        import pyloudnorm

        lufs = pyloudnorm.Meter(rate).integrated_loudness(mix.astype(np.float64))
        ovrl = judges.dnsmos(soxr.resample(mix, rate, ASR_RATE))["ovrl"]
        peak = ((doc.get("finish") or {}).get("loudness") or {}).get("true_peak_dbtp")
    voices = ", ".join(f"{s}={v['voice']}" for s, v in doc["speakers"].items())
    print(f"Transcript `{Path(args.transcript).name}`, engine `{doc['engine']}`, voices {voices}.\n")
    print("| audio | wall (incl. start-up) | RTF | WER (Whisper tiny.en, all chunks) | DNSMOS OVRL (mix) | integrated loudness | true peak (manifest) |")
    print("|---|---|---|---|---|---|---|")
    wer = f"{errors / total:.2f} ({errors}/{total} words)"
    print(f"| {doc['duration']:.1f} s | {wall:.1f} s | {wall / doc['duration']:.3f} | {wer} | {ovrl:.2f} | {lufs:.1f} LUFS | {peak} dBTP |")
    print("\n| speaker pair | resemblyzer cosine |\n|---|---|")
    for a, b in itertools.combinations(emb, 2):
        print(f"| {a} / {b} | {float(emb[a] @ emb[b]):.3f} |")


if __name__ == "__main__":
    main()
