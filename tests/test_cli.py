import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import soundfile as sf
from typer.testing import CliRunner

from higgs_cli.cli import app
from higgs_cli.transcript import read_transcript

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "transcripts" / "demo_dialogue.txt"
THREE = "[SPEAKER0] Good evening.\n[SPEAKER1] Is it? It is raining.\n[SPEAKER2] Rain is good for the garden.\n"


def run(*args: str, input: str | None = None):
    return CliRunner().invoke(app, list(args), input=input)


def one_line_error(result, code: int = 2) -> str:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    return lines[0]


def test_help_does_not_import_torch():
    code = ("import sys\nfrom higgs_cli.cli import app\ntry:\n    app(['--help'], prog_name='higgs')\n"
            "except SystemExit:\n    pass\nassert 'torch' not in sys.modules and 'transformers' not in sys.modules\n"
            "assert 'onnxruntime' not in sys.modules")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "generate" in proc.stdout


def test_generate_text_to_wav_with_manifest(tmp_path):
    out = tmp_path / "hello.wav"
    result = run("generate", "--text", "Hello there. This is a test.", "-o", str(out), "--json", "--quiet")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    info = sf.info(str(out))
    assert info.samplerate == doc["sample_rate"] == 24_000
    assert abs(info.duration - doc["duration"]) < 0.01 and 1.0 < info.duration < 6.0
    assert doc["engine"] == "piper" and doc["output"] == str(out)
    for chunk in doc["chunks"]:
        assert {"index", "speaker", "voice", "text", "start", "end", "seed"} <= set(chunk)
        assert 0 <= chunk["start"] < chunk["end"] <= doc["duration"]
    assert result.stderr == ""  # --quiet


def test_dialogue_gives_three_speakers_three_voices_and_accounts_for_every_word(tmp_path):
    out = tmp_path / "d.flac"
    transcript = tmp_path / "t.txt"
    transcript.write_text(THREE)
    result = run("dialogue", "-t", str(transcript), "-o", str(out), "--json", "--engine", "espeak")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    voices = {s: v["voice"] for s, v in doc["speakers"].items()}
    assert len(set(voices.values())) == 3
    assert [c["speaker"] for c in doc["chunks"]] == ["SPEAKER0", "SPEAKER1", "SPEAKER2"]
    words = " ".join(c["text"] for c in doc["chunks"]).split()
    assert words == " ".join(s.text for s in read_transcript(transcript).segments).split()
    starts = [c["start"] for c in doc["chunks"]]
    assert starts == sorted(starts) and doc["chunks"][1]["start"] - doc["chunks"][0]["end"] >= 0.4  # turn pause
    assert sf.info(str(out)).format == "FLAC"
    assert "rendering" in result.stderr or "wrote" in result.stderr  # progress and messages on stderr


def test_dialogue_voice_mapping(tmp_path):
    result = run("dialogue", "--text", THREE, "--voice", "speaker1=brock", "--voice", "SPEAKER0=nell", "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["speakers"]["SPEAKER1"]["voice"] == "brock" and doc["speakers"]["SPEAKER0"]["voice"] == "nell"
    assert doc["speakers"]["SPEAKER2"]["voice"] not in ("brock", "nell")


def test_dry_run_json_plans_without_synthesis(tmp_path):
    out = tmp_path / "never.wav"
    result = run("generate", "-t", str(DEMO), "-o", str(out), "--dry-run", "--json", "--chunk", "sentence")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert not out.exists()
    assert "duration" not in doc and all("start" not in c for c in doc["chunks"])
    assert len(doc["speakers"]) == 4 and len({v["voice"] for v in doc["speakers"].values()}) == 4
    assert sum(c["words"] for c in doc["chunks"]) == doc["words"] > 90


@pytest.mark.parametrize("ext", [".wav", ".flac", ".ogg", ".mp3"])
def test_output_formats(tmp_path, ext):
    out = tmp_path / f"x{ext}"
    result = run("generate", "--text", "Format test.", "-o", str(out), "--engine", "espeak", "--quiet")
    assert result.exit_code == 0, result.output
    info = sf.info(str(out))
    assert info.samplerate == 24_000 and info.channels == 1 and info.duration > 0.3
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # no temp files left


def test_stdin_transcript(tmp_path):
    result = run("generate", "-t", "-", "--dry-run", "--json", input="[MAYA] From stdin.\n")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["chunks"][0]["speaker"] == "MAYA"


def test_seeds_are_distinct_per_chunk_and_follow_the_base_seed():
    a = json.loads(run("generate", "--text", "One. Two. Three.", "--chunk", "sentence", "--dry-run", "--json", "--seed", "7").stdout)
    b = json.loads(run("generate", "--text", "One. Two. Three.", "--chunk", "sentence", "--dry-run", "--json", "--seed", "8").stdout)
    seeds = [c["seed"] for c in a["chunks"]]
    assert len(set(seeds)) == 3 and seeds != [c["seed"] for c in b["chunks"]]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["generate", "-t", "missing.txt", "-o", "x.wav"], "not found"),
        (["generate", "--text", "hi", "-o", "x.xyz"], "unsupported output format"),
        (["generate", "--text", "hi", "-o", "/nonexistent-dir/x.wav"], "does not exist"),
        (["generate", "--text", "hi", "-o", "x.wav", "--voice", "nobody"], "unknown voice"),
        (["generate", "--text", "hi", "-o", "x.wav", "--voice", "../../etc"], "not found"),
        (["dialogue", "--text", THREE, "-o", "x.wav", "--voice", "SPEAKER9=joe"], "not in the transcript"),
        (["generate", "--text", "hi", "-o", "x.wav", "--temperature", "3"], "--temperature"),
        (["generate", "--text", "hi", "-o", "x.wav", "--top-k", "500"], "--top-k"),
        (["generate", "--text", "hi", "-o", "x.wav", "--top-p", "0.01"], "--top-p"),
        (["generate", "--text", "hi", "-o", "x.wav", "--chunk", "words"], "--chunk"),
        (["generate", "--text", "hi", "-o", "x.wav", "--engine", "higgs"], "higgs"),
        (["generate", "--text", "   ", "-o", "x.wav"], "no text"),
        (["generate", "-o", "x.wav"], "exactly one of"),
        (["generate", "--text", "hi"], "no output file"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, monkeypatch, args, fragment):
    monkeypatch.chdir(tmp_path)
    line = one_line_error(run(*args))
    assert fragment in line
    assert list(tmp_path.iterdir()) == []


def test_bad_transcript_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("bin.txt").write_bytes(bytes(range(256)) * 10)
    Path("latin.txt").write_bytes("[SPEAKER0] Caf\xe9 au lait".encode("latin-1"))
    Path("empty.txt").write_text("")
    Path("tag.txt").write_text("[SPEAKER0] Hi.\n[SPEAKER1]\n")
    assert "binary" in one_line_error(run("generate", "-t", "bin.txt", "-o", "o.wav"))
    assert "latin.txt:1" in (line := one_line_error(run("generate", "-t", "latin.txt", "-o", "o.wav"))) and "UTF-8" in line
    assert "no text" in one_line_error(run("generate", "-t", "empty.txt", "-o", "o.wav"))
    assert "tag.txt:2" in one_line_error(run("generate", "-t", "tag.txt", "-o", "o.wav"))
    assert not Path("o.wav").exists()


def test_unwritable_output_is_caught_before_synthesis(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as a user who can write anywhere")
        assert "cannot write" in one_line_error(run("generate", "--text", "hi", "-o", str(locked / "x.wav")))
    finally:
        locked.chmod(0o700)


def test_clone_on_cpu_engine_explains_and_save_as_adds_the_voice(tmp_path):
    from .test_voices import speech_clip

    clip = speech_clip(tmp_path / "ref.wav")
    line = one_line_error(run("clone", "--ref", str(clip), "--text", "Hello.", "-o", str(tmp_path / "c.wav")))
    assert "higgs engine" in line and "--save-as" in line
    result = run("clone", "--ref", str(clip), "--ref-text", "This is a short recording.", "--save-as", "mine")
    assert result.exit_code == 0, result.output
    listed = json.loads(run("voices", "list", "--json").stdout)
    assert {"mine", "joe", "ava"} <= {v["name"] for v in listed}
    shown = json.loads(run("voices", "show", "mine", "--json").stdout)
    assert shown["source"] == "user" and shown["sample_rate"] == 24_000 and shown["transcript"].startswith("This is")
    assert not (tmp_path / "c.wav").exists()


def test_clone_rejects_corrupt_reference(tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio at all" * 100)
    assert "not a readable audio file" in one_line_error(run("clone", "--ref", str(bad), "--ref-text", "x", "--save-as", "bad"))


def test_voices_add_and_remove_via_cli(tmp_path):
    from .test_voices import speech_clip

    clip = speech_clip(tmp_path / "ref.wav")
    assert run("voices", "add", "narr", "--audio", str(clip), "--text", "Words.").exit_code == 0
    assert run("voices", "remove", "narr").exit_code == 0
    assert "bundled" in one_line_error(run("voices", "remove", "joe"))


def test_engines_json():
    doc = json.loads(run("engines", "--json").stdout)
    by_name = {e["name"]: e for e in doc}
    assert by_name["piper"]["available"] and by_name["piper"]["auto"]
    assert not by_name["higgs"]["available"] and by_name["higgs"]["reason"]


def test_reference_multi_speaker_transcripts(reference, tmp_path):
    for path in sorted((reference / "transcript" / "multi_speaker").glob("*.txt")):
        out = tmp_path / f"{path.stem}.wav"
        result = run("dialogue", "-t", str(path), "-o", str(out), "--json", "--quiet", "--engine", "espeak")
        assert result.exit_code == 0, result.output
        doc = json.loads(result.stdout)
        assert len({v["voice"] for v in doc["speakers"].values()}) == len(doc["speakers"]) >= 2
        assert sf.info(str(out)).duration > 5


def test_ctrl_c_exits_130_and_leaves_no_file(tmp_path):
    out = tmp_path / "long.wav"
    text = " ".join(f"Sentence number {i} of a long text that takes a while." for i in range(200))
    proc = subprocess.Popen([sys.executable, "-m", "higgs_cli", "generate", "--text", text, "-o", str(out),
                             "--chunk", "sentence", "--engine", "piper"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".long.wav.*")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    assert list(tmp_path.iterdir()) == []


def test_one_megabyte_single_line_transcript_plans_cleanly(tmp_path):
    big = tmp_path / "big.txt"
    big.write_text(("All work and no play makes a dull day, they said. " * 20000)[:1_000_000])
    result = run("generate", "-t", str(big), "--dry-run", "--json")
    assert result.exit_code == 0, result.output[-500:]
    doc = json.loads(result.stdout)
    assert max(c["words"] for c in doc["chunks"]) <= 60
    assert doc["words"] == sum(c["words"] for c in doc["chunks"]) > 150_000


def test_check_of_a_missing_or_folder_audio_says_so(tmp_path):
    result = run("generate", "--text", "Hi there.", "-o", str(tmp_path / "ok.wav"), "--engine", "espeak", "--json", "--quiet")
    manifest = tmp_path / "ok.json"
    manifest.write_text(result.stdout)
    assert "audio file not found" in one_line_error(run("check", str(tmp_path / "nope.wav"), "--manifest", str(manifest)))
    assert "is a folder" in one_line_error(run("check", str(tmp_path), "--manifest", str(manifest)))
