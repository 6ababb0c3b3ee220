"""Finishing through the CLI: music bed + ducking, programme loudness, m4b chapters, subtitles, stems, inspect."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from higgs_cli.cli import app

SCRIPT = "# Chapter One\n\n[MAYA] The harbour lights came on.\n\n[TOM] The fog rolled in. [pause:1.5] Nobody came.\n\n# Chapter Two\n\n[MAYA] Then the ferry arrived.\n"


def music(path: Path, seconds: float = 4.0) -> Path:
    t = np.arange(int(seconds * 24_000)) / 24_000
    tone = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.2 * np.sin(2 * np.pi * 330 * t)
    sf.write(path, tone.astype(np.float32), 24_000)
    return path


def seconds(stamp: str) -> float:
    h, m, rest = stamp.split(":")
    return int(h) * 3600 + int(m) * 60 + float(rest.replace(",", "."))


def run(*args: str):
    return CliRunner().invoke(app, list(args))


def test_podcast_mix_with_music_subtitles_and_stems(tmp_path):
    out, srt, stems = tmp_path / "show.flac", tmp_path / "show.srt", tmp_path / "stems"
    (tmp_path / "t.txt").write_text(SCRIPT)
    result = run("dialogue", "-t", str(tmp_path / "t.txt"), "-o", str(out), "--engine", "espeak", "--music", str(music(tmp_path / "m.wav")),
                 "--music-intro", "2", "--loudness", "podcast", "--subtitles", str(srt), "--stems", str(stems), "--json", "--quiet")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    loud = doc["finish"]["loudness"]
    assert abs(loud["integrated_lufs"] - -16.0) <= 0.5 and loud["true_peak_dbtp"] <= -1.0
    assert doc["finish"]["offset"] == 2.0 and doc["chunks"][0]["start"] >= 2.0  # speech starts after the intro
    assert doc["finish"]["music"]["under_speech_db"] < doc["finish"]["music"]["clear_db"] - 6  # ducked under speech
    cues = [block.splitlines() for block in srt.read_text().strip().split("\n\n")]
    for cue, chunk in zip(cues, doc["chunks"], strict=False):  # one cue per (short) chunk, at its manifest times
        begin, _, end = cue[1].partition(" --> ")
        assert seconds(begin) == pytest.approx(chunk["start"], abs=0.002) and seconds(end) == pytest.approx(chunk["end"], abs=0.002)
        assert chunk["speaker"] in cue[2]
    assert len(cues) == len(doc["chunks"])
    mix = sf.read(str(out))[0]
    parts = [sf.read(str(p))[0] for p in sorted(stems.glob("*.wav"))]
    assert len(parts) == 4  # NARRATOR, MAYA, TOM, music
    assert np.max(np.abs(np.sum(parts, axis=0) - mix)) < 2e-3  # 16-bit flac mix vs float stems
    assert [c["title"] for c in doc["chapters"]] == ["Chapter One", "Chapter Two"]


def test_m4b_with_chapters_and_metadata(tmp_path):
    from higgs_cli.containers import probe

    out = tmp_path / "book.m4b"
    (tmp_path / "t.txt").write_text(SCRIPT)
    result = run("generate", "-t", str(tmp_path / "t.txt"), "-o", str(out), "--engine", "espeak", "--loudness", "audiobook",
                 "--title", "Fog", "--author", "Tests", "--json", "--quiet")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    info = probe(out)
    assert [c["title"] for c in info["chapters"]] == ["Chapter One", "Chapter Two"]
    assert info["chapters"][1]["start"] == pytest.approx(doc["chapters"][1]["start"], abs=0.05)
    assert info["tags"].get("title") == "Fog" and "Tests" in (info["tags"].get("artist", "") + info["tags"].get("album_artist", ""))
    assert doc["finish"]["loudness"]["acx_ok"] is True


def test_inspect_reads_the_manifest_and_draws(tmp_path):
    out = tmp_path / "x.wav"
    (tmp_path / "t.txt").write_text(SCRIPT)
    result = run("dialogue", "-t", str(tmp_path / "t.txt"), "-o", str(out), "--engine", "espeak", "--music", str(music(tmp_path / "m.wav")),
                 "--json", "--quiet")
    (tmp_path / "x.json").write_text(result.stdout)
    shown = run("inspect", str(out), "--png", str(tmp_path / "x.png"), "--json")
    assert shown.exit_code == 0, shown.output
    doc = json.loads(shown.stdout)
    assert set(doc["speakers"]) == {"NARRATOR", "MAYA", "TOM"} and doc["music"]["duck_db"] == 12.0
    assert (tmp_path / "x.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--loudness", "loud"], "unknown loudness"),
        (["--music-gain", "-200"], "music"),
        (["--music", "nope.ogg"], "not found"),
        (["--duck", "-3"], "duck"),
        (["--subtitles", "x.txt"], "srt"),
    ],
)
def test_bad_finishing_input(tmp_path, monkeypatch, args, fragment):
    monkeypatch.chdir(tmp_path)
    result = run("generate", "--text", "Hello.", "-o", "x.wav", "--engine", "espeak", *args)
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and fragment in lines[0].lower(), lines
    assert list(tmp_path.iterdir()) == []


def test_silent_music_is_refused_and_nothing_is_left(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sf.write("silent.wav", np.zeros(48_000, np.float32), 24_000)
    result = run("generate", "--text", "Hello.", "-o", "x.wav", "--engine", "espeak", "--music", "silent.wav")
    assert result.exit_code == 2 and "silent" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["silent.wav"]
