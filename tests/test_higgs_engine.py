"""The higgs engine on tiny random checkpoints: prompts, delay pattern, context, voice lock, seeds, seams, end to end."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from higgs_cli import prompt as P
from higgs_cli.engines.higgs import JobState, validate_settings
from higgs_cli.errors import UsageError
from higgs_cli.options import HiggsSettings, RenderOptions
from higgs_cli.voices import Voice

pytestmark = pytest.mark.filterwarnings("ignore:running Higgs Audio v2 on the CPU")
CLIP_VOICE = Voice(name="ava", source="bundled", clip=Path("/voices/ava.wav"), transcript="Hello from Ava.")
BARE_VOICE = Voice(name="auto-1", source="auto")


# --- prompts (pure, no torch) -------------------------------------------------------------------
def test_single_speaker_without_reference_is_smart_voice_in_upstreams_quiet_room():
    state = JobState({"NARRATOR": BARE_VOICE}, HiggsSettings())
    prompt = state.prompt("NARRATOR", "Hello there.", [])
    assert prompt.render() == (  # upstream's examples/generation.py with its default scene (quiet_indoor)
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nGenerate audio following instruction."
        "\n\n<|scene_desc_start|>\nAudio is recorded from a quiet room.\n<|scene_desc_end|><|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nHello there.<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n<|audio_out_bos|>"
    )
    assert prompt.audio_items() == []


@pytest.mark.parametrize("off", [None, "", "none", "None"])
def test_the_scene_can_be_turned_off(off):
    text = JobState({"A": BARE_VOICE}, HiggsSettings(scene=off)).prompt("A", "Hi.", []).render()
    assert "scene_desc" not in text and "quiet room" not in text


def test_scene_emotion_and_speed_go_into_the_scene_description():
    settings = HiggsSettings(scene="Audio is recorded from a quiet room.", emotion="happy", speed=1.2)
    text = JobState({"A": BARE_VOICE}, settings).prompt("A", "Hi.", []).render()
    assert ("\n\n<|scene_desc_start|>\nAudio is recorded from a quiet room.\n"
            "The speech sounds happy, and the speaking pace is fast.\n<|scene_desc_end|><|eot_id|>") in text


def test_multi_speaker_without_references_uses_tags_and_alternating_descriptions():
    state = JobState({"ALICE": BARE_VOICE, "BOB": BARE_VOICE}, HiggsSettings())
    prompt = state.prompt("BOB", "Hi Alice.", [])
    text = prompt.render()
    assert text.startswith(P.BOS + "<|start_header_id|>system<|end_header_id|>\n\n" + P.SYSTEM_MULTI)
    assert ("<|scene_desc_start|>\nAudio is recorded from a quiet room.\n\nSPEAKER0: feminine\nSPEAKER1: masculine\n"
            "<|scene_desc_end|>") in text  # upstream joins scene and speaker lines with a blank line
    assert "<|start_header_id|>user<|end_header_id|>\n\n[SPEAKER1] Hi Alice.<|eot_id|>" in text


def test_references_are_turn_pairs_by_default_and_scene_items_with_ref_in_system():
    cast = {"A": CLIP_VOICE, "B": dataclasses.replace(CLIP_VOICE, clip=Path("/voices/b.wav"), transcript=None)}
    pairs = JobState(cast, HiggsSettings()).prompt("A", "Go.", [])
    conv = pairs.conversation()
    assert conv[1] == {"role": "scene", "content": [{"type": "text", "text": "Audio is recorded from a quiet room."},
                                                    {"type": "text", "text": "SPEAKER1:"}, {"type": "audio", "path": "/voices/b.wav"}]}
    assert conv[2] == {"role": "user", "content": [{"type": "text", "text": "[SPEAKER0] Hello from Ava."}]}
    assert conv[3] == {"role": "assistant", "content": [{"type": "audio", "path": "/voices/ava.wav"}]}
    assert [a.clip for a in pairs.audio_items()] == ["/voices/b.wav", "/voices/ava.wav"]  # text order
    in_system = JobState(cast, HiggsSettings(ref_in_system=True)).prompt("A", "Go.", []).render()
    # as transformers' chat template renders scene audio: generated-audio tokens (README, "reference clips in the scene")
    assert (f"<|scene_desc_start|>\nAudio is recorded from a quiet room.\n\nSPEAKER0: {P.AUDIO_SPAN}\nSPEAKER1: {P.AUDIO_SPAN}"
            "\n<|scene_desc_end|>") in in_system
    assert P.AUDIO_SPAN == "<|audio_out_bos|><|AUDIO_OUT|><|audio_eos|>"
    assert in_system.count("<|start_header_id|>user") == 1


def test_voice_lock_pins_the_first_chunk_of_a_speaker_without_a_clip():
    state = JobState({"A": BARE_VOICE, "B": CLIP_VOICE}, HiggsSettings(context_chunks=1))
    state.record(0, "A", "First words.")
    state.record(1, "B", "Reply.")
    assert state.reference("A") == P.Reference(P.AudioRef(chunk=0), "First words.")
    state.record(2, "A", "More words.")
    assert state.reference("A").audio.chunk == 0  # the lock never moves
    assert [c.index for c in state.context()] == [2]
    conv = state.prompt("A", "Next.", state.context()).conversation()
    audio = [item for m in conv for item in m["content"] if item["type"] == "audio"]
    assert audio == [{"type": "audio", "chunk": 0}, {"type": "audio", "path": "/voices/ava.wav"}, {"type": "audio", "chunk": 2}]


def test_context_window_keeps_the_newest_chunks_and_zero_disables_it():
    state = JobState({"B": CLIP_VOICE}, HiggsSettings(context_chunks=2))
    for i in range(5):
        state.record(i, "B", f"chunk {i}")
    assert [c.index for c in state.context()] == [3, 4]
    off = JobState({"B": CLIP_VOICE}, HiggsSettings(context_chunks=0))
    off.record(0, "B", "x")
    assert off.context() == []


def test_budget_guard_drops_oldest_context_first():
    assert P.fit_context(base=100, costs=[50, 50, 50], new_tokens=100, limit=400) == 3
    assert P.fit_context(base=100, costs=[50, 50, 50], new_tokens=100, limit=320) == 2
    assert P.fit_context(base=100, costs=[50, 50, 50], new_tokens=100, limit=150) == 0
    assert P.audio_positions(frames=100, num_codebooks=8) == 109


@pytest.mark.parametrize(("field", "value", "match"), [
    ("temperature", 1.6, "--temperature"), ("temperature", -0.1, "--temperature"), ("top_k", 101, "--top-k"),
    ("top_k", -2, "--top-k"), ("top_p", 0.05, "--top-p"), ("top_p", 1.1, "--top-p"),
    ("ras_window", -1, "--ras-window"), ("max_new_tokens", 0, "--max-new-tokens"),
    ("context_chunks", -1, "--context-chunks"), ("emotion", "bored", "--emotion"), ("speed", 3.0, "--speed"),
])
def test_invalid_sampling_settings_name_the_option(field, value, match):
    with pytest.raises(UsageError, match=match):
        validate_settings(HiggsSettings(**{field: value}))


def test_valid_edges_pass():
    validate_settings(HiggsSettings(temperature=0.0, top_k=-1, top_p=1.0, ras_window=0))
    validate_settings(HiggsSettings(temperature=1.5, top_k=100, top_p=0.1, emotion="sad", speed=0.5))


def test_check_does_not_import_torch_without_weights(tmp_path):
    code = ("import sys; from higgs_cli.engines.higgs import HiggsEngine; why = HiggsEngine.check(); "
            "print(why); print('torch' in sys.modules)")
    env = {"HF_HUB_CACHE": str(tmp_path), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=root, check=True).stdout.split("\n")
    assert "higgs model download" in out[0]
    assert out[1] == "False"


# --- on the tiny model ---------------------------------------------------------------------------
@pytest.fixture(scope="session")
def torch_available():
    pytest.importorskip("torch")
    pytest.importorskip("transformers")


@pytest.fixture(scope="session")
def tiny_dirs(torch_available):
    from .higgs_tiny import hub_dirs

    return hub_dirs()


@pytest.fixture
def settings(tiny_dirs):
    return HiggsSettings(model=str(tiny_dirs[0]), codec=str(tiny_dirs[1]), device="cpu", max_new_tokens=20)


@pytest.fixture
def engine(settings):
    from higgs_cli.engines.higgs import HiggsEngine

    return HiggsEngine(settings)


def test_cpu_is_allowed_with_a_warning(settings):
    from higgs_cli import model
    from higgs_cli.engines.higgs import HiggsEngine

    model.clear_cache()
    with pytest.warns(RuntimeWarning, match="50x slower than real time"):
        engine = HiggsEngine(settings)
    assert engine.sample_rate == 24000 and str(engine._m.device) == "cpu"


def _plan(text: str, settings: HiggsSettings, **voices):
    from higgs_cli.pipeline import make_plan
    from higgs_cli.transcript import parse_transcript

    options = RenderOptions(engine="higgs", higgs=settings, chunk="sentence", voices=voices)
    return make_plan(parse_transcript(text), options, "higgs")


def test_delay_pattern_matches_the_processor_and_round_trips(engine):
    import torch

    from higgs_cli.engines.higgs import extract_codes, with_stream_markers

    codes = torch.randint(0, 64, (2, 7))
    ours = with_stream_markers(codes, 64, 65)  # stream BOS/EOS right after the codes
    marked = torch.cat([torch.full((2, 1), 64), codes, torch.full((2, 1), 65)], dim=1)
    theirs = engine._m.processor.build_delay_pattern(marked[None])[0].T
    assert torch.equal(ours, theirs)
    assert ours.shape == (7 + 2 + 1, 2)
    assert torch.equal(extract_codes(ours, 64, 65), codes)
    assert torch.equal(extract_codes(ours[:-2], 64, 65), codes[:, :-1])  # cut before EOS: complete frames only


def test_same_seed_same_codes_and_different_seed_different(engine, settings):
    from higgs_cli.engines import ChunkRequest

    plan = _plan("Hello there.", settings)
    voice = plan.cast["NARRATOR"]

    def render(seed: int) -> np.ndarray:
        engine.begin(plan)
        return engine.synthesize(ChunkRequest(0, "NARRATOR", "Hello there.", voice, seed)).audio

    a, b, c = render(7), render(7), render(8)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_budget_fits_context_against_the_expected_frames_then_refuses(engine, settings):
    from higgs_cli.engines import ChunkRequest
    from higgs_cli.engines.higgs_budget import expected_frames
    from higgs_cli.errors import RenderError

    plan = _plan("[A] One.\n[B] Two.", settings)
    engine.begin(plan)
    engine.synthesize(ChunkRequest(0, "A", "One.", plan.cast["A"], 1))
    engine.settings = dataclasses.replace(settings, max_new_tokens=2048)  # the default: most of it is never needed
    request = ChunkRequest(1, "B", "Two.", plan.cast["B"], 2)
    chain = engine._chain_for(request)
    context = chain.state.context()
    assert [c.index for c in context] == [0]
    bare = engine._positions(chain.state.prompt("B", "Two.", []), chain)
    full = engine._positions(chain.state.prompt("B", "Two.", context), chain)
    want = expected_frames("Two.", 2048)
    assert want == 70  # one word: 10 frames doubled, plus 50
    for limit, kept, frames in [(full + 2048, context, 2048), (full + want, context, want), (full + want - 1, [], full + want - 1 - bare),
                                (bare + 40, [], 40)]:
        engine.settings = dataclasses.replace(engine.settings, context_limit=limit)
        assert engine._fit(request, chain)[1:] == (kept, frames), limit  # context goes only when the expected frames need it
    engine.settings = dataclasses.replace(engine.settings, context_limit=bare + 5)
    with pytest.raises(RenderError, match="--context-limit"):
        engine._fit(request, chain)


def test_chunk_decode_with_left_context_has_no_seam(engine):
    import torch

    from higgs_cli.engines.higgs import LEFT_CONTEXT_FRAMES, decode_joined

    codec, hop = engine._m.codec, engine._m.hop_length

    def decode(codes):
        with torch.no_grad():
            return codec.decode(codes[None]).audio_values[0, 0].numpy()

    torch.manual_seed(0)
    a, b = torch.randint(0, 64, (2, 60)), torch.randint(0, 64, (2, 40))
    whole = decode(torch.cat([a, b], dim=1))
    joined = decode_joined(decode, b, a[:, -LEFT_CONTEXT_FRAMES:], hop)
    naive = decode_joined(decode, b, None, hop)
    start, window = 60 * hop, 4 * hop  # the first 160 ms of the second chunk
    reference = whole[start:start + window]
    err_joined = np.abs(joined[:window] - reference).max()
    err_naive = np.abs(naive[:window] - reference).max()
    assert len(joined) == 40 * hop
    assert err_joined <= 1e-3 * max(np.abs(reference).max(), 1e-6) + 1e-6
    assert err_naive > 10 * err_joined


def test_preview_shows_the_conversation_for_the_first_chunks(settings):
    from higgs_cli.engines.higgs import HiggsEngine

    plan = _plan("[A] One. Two.\n[B] Three.", settings)
    preview = HiggsEngine.preview(plan)
    assert [p["chunk"] for p in preview["prompts"]] == [0, 1, 2]
    json.dumps(preview)  # `--dry-run --json` must be able to print it
    last = preview["prompts"][-1]["conversation"]
    assert last[-1]["content"][0]["text"].startswith("[SPEAKER1] Three")


def test_render_three_chunks_end_to_end(settings, tmp_path):
    import soundfile as sf

    from higgs_cli.pipeline import render

    plan = _plan("[NARRATOR] The sun rises. It sets in the west.\n[BOB] Hooray!", settings)
    assert len(plan.chunks) == 3
    out = tmp_path / "out.wav"
    manifest = render(plan, out)
    audio, rate = sf.read(out)
    assert rate == 24000 and len(audio) > 0
    infos = [{k: c[k] for k in ("frames", "context", "voice_lock")} for c in manifest["chunks"]]
    assert all(0 < i["frames"] <= 20 for i in infos)
    assert infos[1]["context"] == [0] and infos[2]["context"] == [0, 1]
    assert manifest["duration"] > sum(i["frames"] for i in infos) / 25 * 0.5


@pytest.mark.gpu
def test_renders_on_cuda_in_bfloat16(tiny_dirs):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    from higgs_cli.engines import ChunkRequest
    from higgs_cli.engines.higgs import HiggsEngine

    engine = HiggsEngine(HiggsSettings(model=str(tiny_dirs[0]), codec=str(tiny_dirs[1]), device="cuda", max_new_tokens=20))
    assert engine._m.dtype in (torch.bfloat16, torch.float16)
    result = engine.synthesize(ChunkRequest(0, "A", "Hello.", BARE_VOICE, 3))
    assert result.audio.dtype == np.float32 and result.info["frames"] > 0
