"""The Higgs engine's context budget on checkpoints whose configs say what the published ones say (2048 positions).

The converted config's max_position_embeddings (2048) is transformers' default, not a limit of the model: the
budget uses `--context-limit` (8192) instead, fits rolling context against the frames a chunk is expected to
need rather than the whole --max-new-tokens, and says what it trimmed once per job.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import numpy as np
import pytest

from higgs_cli.engines.higgs_budget import Fit, TrimReport, expected_frames, fit_chunk

pytestmark = pytest.mark.filterwarnings("ignore:running Higgs Audio v2 on the CPU")


# --- the arithmetic (pure) ------------------------------------------------------------------------
def test_expected_frames_follow_the_words_with_a_margin_and_stop_at_max_new_tokens():
    assert expected_frames("Hello there, how are you?", 2048) == 5 * 20 + 50  # 150 words a minute, doubled, + 2 s
    sixty = " ".join(["word"] * 60)
    assert expected_frames(sixty, 2048) == 1250  # 50 s kept free for a 60-word chunk (about 24 s of speech)
    assert expected_frames(sixty, 600) == 600


def test_fit_keeps_context_that_leaves_the_expected_frames_and_allows_the_rest():
    assert fit_chunk(base=2300, costs=[600, 600], expected=170, max_new_tokens=2048, limit=8192) == Fit(2, 2048, 0, False)
    # 5500 + 2 x 600 + 2048 > 8192 would have dropped context; 170 expected frames do not need to
    assert fit_chunk(base=5500, costs=[600, 600], expected=170, max_new_tokens=2048, limit=8192) == Fit(2, 1492, 0, False)
    assert fit_chunk(base=7400, costs=[600, 600], expected=170, max_new_tokens=2048, limit=8192) == Fit(1, 192, 1, False)
    assert fit_chunk(base=8100, costs=[600], expected=170, max_new_tokens=2048, limit=8192) == Fit(0, 92, 1, True)


def test_the_trim_report_is_one_line_with_the_numbers():
    report = TrimReport(8192)
    assert report.message() is None
    report.note(0, Fit(0, 2048, 0, False), 2400)
    report.note(1, Fit(1, 900, 1, False), 7300)
    report.note(2, Fit(0, 92, 2, True), 8100)
    message = report.message()
    assert "trimmed on 2 of 3 chunks (3 earlier chunks left out, first at chunk 1)" in message
    assert "1 chunks had less room" in message and "chunk 2" in message
    assert "--context-limit 8192 (largest prompt 8100 positions)" in message and "\n" not in message


# --- on tiny checkpoints that say 2048 positions ------------------------------------------------
@pytest.fixture(scope="module")
def tiny_dirs():
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from .higgs_tiny import hub_dirs

    return hub_dirs()


def test_the_tiny_checkpoint_says_what_the_converted_one_says(tiny_dirs):
    from .higgs_tiny import CONVERTED_POSITIONS, CONVERTED_ROPE

    config = json.loads((tiny_dirs[0] / "config.json").read_text())
    assert config["max_position_embeddings"] == CONVERTED_POSITIONS == 2048
    assert {k: config["rope_parameters"][k] for k in CONVERTED_ROPE} == CONVERTED_ROPE


def test_2048_is_not_a_limit_the_rotary_frequencies_are_upstreams_131072_ones(tiny_dirs):
    """The converted rope settings (factor 32, low 0.125, high 0.5, original 1024) and the original Llama-3.2 ones
    (factor 32, low 1, high 4, original 8192) give the same rotary embedding at every position up to 8192."""
    import torch
    from transformers import HiggsAudioV2Config
    from transformers.models.higgs_audio_v2.modeling_higgs_audio_v2 import HiggsAudioV2RotaryEmbedding

    from .higgs_tiny import CONVERTED_POSITIONS, CONVERTED_ROPE, ORIGINAL_POSITIONS, ORIGINAL_ROPE

    def rotary(positions: int, rope: dict) -> tuple[torch.Tensor, torch.Tensor]:
        config = HiggsAudioV2Config(hidden_size=64, num_attention_heads=1, num_key_value_heads=1, head_dim=64,
                                    num_hidden_layers=1, intermediate_size=8, vocab_size=16, max_position_embeddings=positions,
                                    rope_parameters={"rope_theta": 500000.0, **rope})
        return HiggsAudioV2RotaryEmbedding(config)(torch.zeros(1), torch.arange(8192)[None])

    converted, original = rotary(CONVERTED_POSITIONS, CONVERTED_ROPE), rotary(ORIGINAL_POSITIONS, ORIGINAL_ROPE)
    for a, b in zip(converted, original, strict=True):
        torch.testing.assert_close(a, b)


def speechlike_clip(path: Path, seconds: float, f0: float, seed: int) -> Path:
    """A voiced, syllable-shaped test signal (harmonics of f0 under a 4 Hz envelope) with its transcript beside it."""
    import soundfile as sf

    rate = 24_000
    t = np.arange(int(seconds * rate)) / rate
    rng = np.random.default_rng(seed)
    pitch = f0 * (1 + 0.05 * np.sin(2 * np.pi * 0.7 * t))
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    voice = sum(np.sin(k * phase) / k for k in range(1, 8))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t + rng.uniform(0, 6))
    audio = (0.3 * voice * envelope + 0.01 * rng.standard_normal(len(t))).astype(np.float32)
    sf.write(path, audio, rate)
    path.with_suffix(".txt").write_text("The sun rises in the east and sets in the west, as it always has.\n")
    return path


def test_three_speaker_dialogue_keeps_its_context_with_three_long_references(tiny_dirs, tmp_path, caplog):
    """Three 28 s references take about 2,100 positions: past the config's 2048, every chunk used to fail; now
    every chunk after the first keeps its rolling context and nothing is trimmed or cut short."""
    from typer.testing import CliRunner

    from higgs_cli.cli import app

    clip = speechlike_clip(tmp_path / "v.wav", 28.0, 140.0, 0)  # one clip for all three: encoded once (CPU time)
    script = "[SPEAKER0] Hello there.\n[SPEAKER1] How are you?\n[SPEAKER2] It was the night.\n[SPEAKER0] Hooray!\n"
    out = tmp_path / "d.wav"
    args = ["dialogue", "--text", script, "-o", str(out), "--json", "--quiet", "--engine", "higgs",
            "--model", str(tiny_dirs[0]), "--codec", str(tiny_dirs[1]), "--device", "cpu", "--max-new-tokens", "8",
            *[f"--voice=SPEAKER{i}={clip}" for i in range(3)]]
    with caplog.at_level(logging.WARNING, logger="higgs_cli"):
        result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    chunks = json.loads(result.stdout)["chunks"]
    assert [c["context"] for c in chunks] == [[], [0], [0, 1], [1, 2]]
    assert all(c["frames"] > 0 for c in chunks)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text


def test_trimming_is_said_once_per_job_with_the_numbers(tiny_dirs, caplog):
    from higgs_cli.engines import ChunkRequest
    from higgs_cli.engines.higgs import HiggsEngine
    from higgs_cli.options import HiggsSettings, RenderOptions
    from higgs_cli.pipeline import make_plan
    from higgs_cli.transcript import parse_transcript

    settings = HiggsSettings(model=str(tiny_dirs[0]), codec=str(tiny_dirs[1]), device="cpu", max_new_tokens=10)
    texts = ["One.", "Two.", "Three.", "Four."]
    plan = make_plan(parse_transcript("\n".join(f"[{'AB'[i % 2]}] {t}" for i, t in enumerate(texts))),
                     RenderOptions(engine="higgs", higgs=settings, chunk="sentence"), "higgs")
    engine = HiggsEngine(settings)
    engine.begin(plan)
    requests = [ChunkRequest(i, c.speaker, c.text, plan.cast[c.speaker], 10 + i) for i, c in enumerate(plan.chunks)]
    for request in requests[:2]:
        engine.synthesize(request)
    chain = engine._chain_for(requests[2])
    context = chain.state.context()
    one = engine._positions(chain.state.prompt("A", "Three.", context[1:]), chain)
    limit = one + expected_frames("Three.", 10) + 8  # room for the newest context chunk only (a context chunk costs > 20)
    engine.settings = dataclasses.replace(settings, context_limit=limit)
    engine._jobs[0].report.limit = limit
    with caplog.at_level(logging.WARNING, logger="higgs_cli"):
        results = [engine.synthesize(r) for r in requests[2:]]
        assert not caplog.records  # nothing per chunk
        engine.close()
    assert [len(r.info["context"]) for r in results] == [1, 1]
    assert len(caplog.records) == 1
    assert f"trimmed on 2 of 4 chunks (2 earlier chunks left out, first at chunk 2) to fit --context-limit {limit}" in caplog.text
