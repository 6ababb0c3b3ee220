"""`higgs generate/dialogue/clone --engine higgs` end to end through the CLI, on tiny random checkpoints."""

from __future__ import annotations

import json

import pytest
import soundfile as sf
from typer.testing import CliRunner

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from higgs_cli.cli import app  # noqa: E402

from .higgs_tiny import hub_dirs  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:running Higgs Audio v2 on the CPU")


@pytest.fixture(scope="module")
def tiny():
    model, codec = hub_dirs()
    return ["--engine", "higgs", "--model", str(model), "--codec", str(codec), "--device", "cpu", "--max-new-tokens", "16"]


def run(*args: str):
    return CliRunner().invoke(app, list(args))


def test_generate_writes_24k_audio_and_a_manifest_with_seeds_and_voice_locks(tiny, tmp_path):
    from higgs_cli.voices import user_voices_dir

    user_voices_dir().mkdir(parents=True, exist_ok=True)  # a described voice with no clip: the model picks one
    (user_voices_dir() / "calm.yaml").write_text("description: calm, low voice\ngender: masculine\n")
    out = tmp_path / "g.wav"
    result = run("generate", "--text", "The sun rises. It sets again.", "--chunk", "sentence", "--voice", "calm",
                 "-o", str(out), "--json", "--quiet", *tiny)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["engine"] == "higgs" and sf.info(str(out)).samplerate == 24_000
    first, second = doc["chunks"]
    assert first["seed"] != second["seed"]
    assert first["voice_lock"] == second["voice_lock"] == -1  # the clip-less voice is pinned to its anchor
    assert [(a["index"], a["voice"]) for a in doc["anchors"]] == [(-1, "calm")]
    assert second["context"] == [0] and 0 < first["frames"] <= 16  # chunk 0 is context now, not the lock


def test_dialogue_with_a_bundled_clip_voice(tiny, tmp_path):
    out = tmp_path / "d.flac"
    text = "[SPEAKER0] Good evening.\n[SPEAKER1] Is it?\n"
    result = run("dialogue", "--text", text, "-o", str(out), "--json", "--quiet", "--voice", "SPEAKER1=ava", *tiny)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert [c["speaker"] for c in doc["chunks"]] == ["SPEAKER0", "SPEAKER1"]
    assert doc["chunks"][1]["voice_lock"] is None  # ava has a clip: no lock needed
    assert sf.info(str(out)).duration > 0


def test_clone_from_a_reference_clip(tiny, tmp_path):
    from higgs_cli.options import BUNDLED_VOICES_DIR

    out = tmp_path / "c.wav"
    ref = BUNDLED_VOICES_DIR / "otis.wav"
    result = run("clone", "--ref", str(ref), "--ref-text", (BUNDLED_VOICES_DIR / "otis.txt").read_text(),
                 "--text", "Now in this voice.", "-o", str(out), "--json", "--quiet", *tiny)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["speakers"]["NARRATOR"]["source"] == "path" and out.is_file()


def test_dry_run_shows_the_conversation(tiny):
    result = run("generate", "--text", "Hello there.", "--dry-run", "--json", "--voice", "ava", *tiny)
    assert result.exit_code == 0, result.output
    convo = json.loads(result.stdout)["engine_plan"]["prompts"][0]["conversation"]
    roles = [turn["role"] for turn in convo]
    assert roles[0] == "system" and "assistant" in roles  # reference clip as a user/assistant pair
    assert any(item.get("path", "").endswith("ava.wav") for turn in convo for item in turn["content"] if isinstance(item, dict))


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (["--temperature", "2"], "--temperature"),
        (["--top-p", "0"], "--top-p"),
        (["--model", "/nonexistent/model"], "model"),
    ],
)
def test_bad_values_and_missing_model_fail_with_one_line(tiny, tmp_path, extra, fragment):
    args = [*tiny, *extra]
    result = run("generate", "--text", "Hi.", "-o", str(tmp_path / "x.wav"), *args)
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and fragment in lines[0]
    assert not (tmp_path / "x.wav").exists()


def test_unknown_layout_fails_with_one_line(tiny, tmp_path):
    bogus = tmp_path / "bogus"
    bogus.mkdir()
    (bogus / "config.json").write_text(json.dumps({"model_type": "bert"}))
    args = [*tiny[:2], "--model", str(bogus), *tiny[4:]]
    result = run("generate", "--text", "Hi.", "-o", str(tmp_path / "x.wav"), *args)
    assert result.exit_code == 2, result.output
    assert "error:" in result.stderr and "Traceback" not in result.output


def test_dry_run_json_shows_the_default_scene_and_scene_none_turns_it_off(tiny):
    shown = run("generate", "--text", "Hello there.", "--dry-run", "--json", *tiny)
    assert shown.exit_code == 0, shown.output
    plan = json.loads(shown.stdout)["engine_plan"]
    assert plan["scene"] == "Audio is recorded from a quiet room." and plan["context_limit"] == 8192
    scene = next(turn for turn in plan["prompts"][0]["conversation"] if turn["role"] == "scene")
    assert scene["content"][0] == {"type": "text", "text": "Audio is recorded from a quiet room."}
    off = run("generate", "--text", "Hello there.", "--dry-run", "--json", "--scene", "none", "--context-limit", "4096", *tiny)
    plan = json.loads(off.stdout)["engine_plan"]
    assert plan["scene"] is None and plan["context_limit"] == 4096
    assert all(turn["role"] != "scene" for p in plan["prompts"] for turn in p["conversation"])
    bad = run("generate", "--text", "Hi.", "--dry-run", "--context-limit", "100", *tiny)
    assert bad.exit_code == 2 and "--context-limit 100 is out of range" in bad.output
