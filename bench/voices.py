"""Are the bundled piper voices distinct and intelligible? Speaker-embedding similarity and ASR word error rate.

Renders one sentence with every bundled voice (once per seed, to measure how much a render varies) and with the
first automatic variants, then measures pairwise cosine similarity of resemblyzer embeddings and the
word error rate of pocketsphinx on each render. Writes its tables to BENCHMARKS.md.

    .venv/bin/python bench/voices.py [--renders 3] [--no-write]
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

SENTENCE = (
    "On Monday morning the old green bus stopped near the bakery, and seven children climbed "
    "aboard with their books, their lunch boxes, and one very noisy puppy."
)
DISTINCT = 0.75  # target: every pair of distinct bundled voices below this
CLEARLY = 0.70  # clearly different
AUTO_VARIANTS = 3
ASR_RATE = 16_000


def words(text: str) -> list[str]:
    return re.sub(r"[^a-z' ]+", " ", text.lower()).split()


def edit_distance(ref: list[str], hyp: list[str]) -> int:
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1]


class Recogniser:
    """pocketsphinx with its bundled en-us model, fed 16 kHz int16 audio."""

    def __init__(self):
        from pocketsphinx import Decoder

        self._decoder = Decoder(loglevel="FATAL")

    def __call__(self, audio: np.ndarray, rate: int) -> str:
        from higgs_cli.audio import resample

        pcm = (np.clip(resample(audio, rate, ASR_RATE), -1, 1) * 32767).astype(np.int16)
        self._decoder.start_utt()
        self._decoder.process_raw(pcm.tobytes(), full_utt=True)
        self._decoder.end_utt()
        hyp = self._decoder.hyp()
        return hyp.hypstr if hyp else ""


def render_all(renders: int) -> tuple[dict[str, list[np.ndarray]], dict[str, dict]]:
    from higgs_cli.engines.piper import PiperEngine
    from higgs_cli.voices import auto_voice, library

    os.environ["HIGGS_VOICES_DIR"] = tempfile.mkdtemp()  # empty: measure the bundled voices, never user ones
    engine = PiperEngine()
    voices = [v for v in library() if v.source == "bundled"]
    voices += [auto_voice(k) for k in range(AUTO_VARIANTS)]
    audio, settings = {}, {}
    for voice in voices:
        audio[voice.name] = [render_clip(engine, voice, SENTENCE, seed) for seed in range(renders)]
        settings[voice.name] = voice.settings("piper")
    return audio, settings


def embed(audio: dict[str, list[np.ndarray]], rate: int) -> dict[str, np.ndarray]:
    from resemblyzer import VoiceEncoder, preprocess_wav

    encoder = VoiceEncoder("cpu", verbose=False)
    return {name: np.stack([encoder.embed_utterance(preprocess_wav(a, source_sr=rate)) for a in clips])
            for name, clips in audio.items()}


def cosine(a: np.ndarray, b: np.ndarray, same: bool) -> float:
    """Mean cosine over render pairs (embeddings are unit length); same voice: distinct renders only."""
    sims = a @ b.T
    if same:
        sims = sims[~np.eye(len(a), dtype=bool)]
    return float(np.mean(sims))


def measure(renders: int) -> dict:
    from higgs_cli.options import SAMPLE_RATE

    started = time.monotonic()
    audio, settings = render_all(renders)
    emb = embed(audio, SAMPLE_RATE)
    asr = Recogniser()
    ref = words(SENTENCE)
    wer, hyps = {}, {}
    for name, clips in audio.items():
        texts = [asr(a, SAMPLE_RATE) for a in clips]
        wer[name] = sum(edit_distance(ref, words(t)) for t in texts) / (len(ref) * len(texts))
        hyps[name] = texts[0]
    names = list(audio)
    sim = {(a, b): cosine(emb[a], emb[b], a == b) for a in names for b in names}
    seconds = {n: np.mean([len(a) / SAMPLE_RATE for a in clips]) for n, clips in audio.items()}
    return {"names": names, "settings": settings, "sim": sim, "wer": wer, "hyps": hyps,
            "seconds": seconds, "elapsed": time.monotonic() - started}


def clip_similarity() -> tuple[list[str], dict]:
    """Cosine between the bundled reference clips themselves (what the higgs engine clones from)."""
    from resemblyzer import VoiceEncoder, preprocess_wav

    from higgs_cli.options import BUNDLED_VOICES_DIR

    encoder = VoiceEncoder("cpu", verbose=False)
    clips = sorted(BUNDLED_VOICES_DIR.glob("*.wav"))
    emb = {c.stem: encoder.embed_utterance(preprocess_wav(c)) for c in clips}
    return list(emb), {(a, b): float(emb[a] @ emb[b]) for a in emb for b in emb}


def report(r: dict, renders: int, clip_names: list[str], clip_sim: dict) -> str:
    names, sim = r["names"], r["sim"]
    bundled = [n for n in names if not n.startswith("auto-")]
    autos = [n for n in names if n.startswith("auto-")]
    profile = md_table(
        ["voice", "piper pitch", "formant", "tilt", "speed", "seconds", "WER", "self-similarity (2 renders)", "closest other bundled voice"],
        [[n, *(r["settings"][n].get(k, d) for k, d in (("pitch", 1.0), ("formant", 1.0), ("tilt", 0), ("speed", 1.0))), f"{r['seconds'][n]:.2f}",
          f"{r['wer'][n]:.2f}", f"{sim[n, n]:.3f}",
          "{} {:.3f}".format(*max(((m, sim[n, m]) for m in bundled if m != n), key=lambda x: x[1]))]
         for n in names])
    matrix = md_table(["cosine"] + bundled, [[a] + [f"{sim[a, b]:.3f}" for b in bundled] for a in bundled])
    pairs = sorted(((sim[a, b], a, b) for a, b in itertools.combinations(bundled, 2)), reverse=True)
    worst = ", ".join(f"{a}/{b} {s:.3f}" for s, a, b in pairs[:3])
    verdict = "all below" if pairs[0][0] < DISTINCT else "NOT all below"
    clear = sum(s < CLEARLY for s, _, _ in pairs)
    auto = md_table(["auto variant"] + bundled, [[a] + [f"{sim[a, b]:.3f}" for b in bundled] for a in autos])
    clips = md_table(["clip cosine"] + clip_names, [[a] + [f"{clip_sim[a, b]:.3f}" for b in clip_names] for a in clip_names])
    return f"""What: each voice speaks the same {len(words(SENTENCE))}-word sentence through the piper engine,
rendered like a reference clip (trim, peak {0.8}, 8 ms fades), {renders} renders per voice. Similarity is the
cosine of resemblyzer speaker embeddings, averaged over render pairs; the diagonal (self-similarity) compares
different renders of the same voice and is the baseline. WER is pocketsphinx (bundled en-us model, 16 kHz)
against the sentence, lower-cased without punctuation, pooled over the renders. Render i uses seed i, so a run
is repeatable; other seeds move the figures by about +-0.01 (cosine) and +-0.04 (WER, one word).

Sentence: "{SENTENCE}"

Command:

    .venv/bin/python bench/voices.py --renders {renders}

{profile}

Pairwise cosine, bundled voices (target: every distinct pair < {DISTINCT}; clearly different < {CLEARLY}):
{verdict} {DISTINCT}; {clear} of {len(pairs)} pairs < {CLEARLY}; closest pairs: {worst}.

{matrix}

Automatic variants (`auto_voice(0..{AUTO_VARIANTS - 1})`, used after the five bundled voices) against the bundled voices:

{auto}

The bundled reference clips `voices/*.wav` (each speaks its own `.txt`) against each other:

{clips}

Run time: {r['elapsed']:.0f} s.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--renders", type=int, default=2, help="renders per voice (>= 2 for the self-similarity baseline)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = parser.parse_args()
    result = measure(max(2, args.renders))
    clip_names, clip_sim = clip_similarity()
    body = report(result, max(2, args.renders), clip_names, clip_sim)
    print(body)
    for name in result["names"]:
        print(f"{name}: {result['hyps'][name]}", file=sys.stderr)
    if not args.no_write:
        update_section("Voice distinctness and intelligibility (piper engine)", body)


if __name__ == "__main__":
    main()
