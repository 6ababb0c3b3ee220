"""The `heart` base voice: hibari-tts's bundled US feminine voice, reshaped in its own source-filter parameters.

hibari (Apache-2.0, distilled from Kokoro's af_heart) is a small ONNX network that predicts, per 12.5 ms
frame, an F0 contour and the log-magnitude/phase parts of a harmonic filter, a noise filter and a free
branch; hibari's numpy vocoder turns those into a waveform. Because the network hands us F0 and spectral
envelopes directly, a voice profile's knobs act on them before vocoding, with no analysis step to lose
quality (the joe base has to be analysed by WORLD first):

- `pitch` scales F0; the filters stay put, so the harmonics slide under the same envelope.
- `formant` stretches every spectral part along frequency (vocal-tract length).
- `tilt` adds a slope in dB/octave about 1 kHz to the magnitude parts.
- `speed` is the network's own duration control.

Only the `heart` model inside the wheel is ever loaded: hibari's other voices are downloaded from the
network on first use, so this module never names them and passes the bundled model file explicitly.
The vocoder's noise comes from a NumPy generator seeded with the chunk's seed, so a request renders to
the same samples every time.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

VOICE = "heart"  # the one hibari voice inside the wheel; every other one would be a download
RATE = 24_000  # hibari's output rate
_REF_HZ = 1000.0  # tilt pivot


def available() -> str | None:
    """None when hibari can run here, else why not."""
    if importlib.util.find_spec("hibari") is None:
        return "Python package hibari-tts is not installed (run `pip install higgs-cli` or `make install`)"
    return None


def model_path() -> Path:
    """The bundled heart model (never hibari's downloader)."""
    spec = importlib.util.find_spec("hibari")
    assert spec is not None and spec.origin
    return Path(spec.origin).parent / "assets" / "hibari.onnx"


class HeartVoice:
    """Loads the heart model once; renders text with per-voice pitch/formant/tilt/speed and a seeded vocoder."""

    sample_rate = RATE

    def __init__(self, threads: int = 1):
        from hibari import Hibari

        self._tts = Hibari(voice=VOICE, model=str(model_path()), threads=threads)

    def render(self, text: str, seed: int, pitch: float = 1.0, formant: float = 1.0, tilt: float = 0.0, speed: float = 1.0) -> np.ndarray:
        """Text -> float32 mono at 24 kHz; sentences follow each other as hibari paces them."""
        from hibari import dsp

        rng = np.random.default_rng(seed)
        pieces = []
        for phonemes in self._tts.phonemize(text):
            ids = self._tts.ids(phonemes)
            if len(ids) < 3:
                continue
            feeds = {"ids": np.asarray([ids], np.int64), "speed": np.asarray([speed], np.float32)}
            lh, theta, ln, lr, phi, f0 = (o[0] for o in self._tts.sess.run(None, feeds))
            lh, theta, ln, lr, phi = reshape_parts((lh, theta, ln, lr, phi), formant, tilt)
            pieces.append(dsp.synth(lh, theta, ln, lr, phi, f0 * np.float32(pitch), rng))
        return np.concatenate(pieces).astype(np.float32) if pieces else np.zeros(0, np.float32)


def reshape_parts(parts: tuple[np.ndarray, ...], formant: float, tilt: float) -> tuple[np.ndarray, ...]:
    """Warp (lh, theta, ln, lr, phi), each [bins, frames], along frequency and tilt the three log-magnitudes."""
    lh, theta, ln, lr, phi = parts
    bins = lh.shape[0]
    if formant != 1.0:
        source = np.minimum(np.arange(bins) / formant, bins - 1)
        low = np.floor(source).astype(np.int64)
        high = np.minimum(low + 1, bins - 1)
        w = (source - low).astype(np.float32)[:, None]
        lh, theta, ln, lr, phi = (p[low] * (1 - w) + p[high] * w for p in (lh, theta, ln, lr, phi))
    if tilt:
        hz = np.linspace(0.0, RATE / 2, bins, dtype=np.float32)
        slope = (tilt / 20.0 * np.log(10.0) * np.log2(np.maximum(hz, 50.0) / _REF_HZ)).astype(np.float32)[:, None]  # dB -> natural log
        lh, ln, lr = lh + slope, ln + slope, lr + slope
    return tuple(np.ascontiguousarray(p, dtype=np.float32) for p in (lh, theta, ln, lr, phi))
