"""`higgs build`: per-chapter renders, no-op rebuilds, one-paragraph edits, binding, bad project files."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import soundfile as sf
import yaml
from typer.testing import CliRunner

from higgs_cli.cli import app

ROOT = Path(__file__).resolve().parents[1]


def project(tmp_path: Path, engine: str = "espeak", **extra) -> Path:
    (tmp_path / "one.txt").write_text("# The Start\n\n[NARRATOR] It began at dawn.\n\n[MAYA] Did it?\n\n[NARRATOR] It did.\n")
    (tmp_path / "two.txt").write_text("# The End\n\n[NARRATOR] It ended at dusk.\n\n[MAYA] Good.\n")
    doc = {"title": "Test Book", "author": "Tests", "engine": engine, "voices": {"NARRATOR": "otis", "MAYA": "ava"},
           "chapters": ["one.txt", {"file": "two.txt", "title": "Finale"}], "build_dir": "out", "output": "book.wav", **extra}
    path = tmp_path / "book.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def build(path: Path, *args: str) -> dict:
    result = CliRunner().invoke(app, ["build", str(path), "--json", "--quiet", "--cache", str(path.parent / "cache"), *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_build_then_noop_then_edit_one_paragraph(tmp_path):
    path = project(tmp_path, engine="piper")
    first = build(path)
    assert [c["built"] for c in first["chapters"]] == [True, True] and first["book"]["built"]
    book = tmp_path / "out" / "book.wav"
    assert [c["title"] for c in first["book"]["chapters"]] == ["The Start", "Finale"]
    assert abs(sf.info(str(book)).duration - first["book"]["duration"]) < 0.01
    before = book.read_bytes()

    started = time.monotonic()
    again = build(path)
    assert time.monotonic() - started < 5
    assert [c["built"] for c in again["chapters"]] == [False, False] and not again["book"]["built"]
    assert book.read_bytes() == before

    (tmp_path / "two.txt").write_text((tmp_path / "two.txt").read_text().replace("ended at dusk", "ended at night"))
    edited = build(path)
    assert [c["built"] for c in edited["chapters"]] == [False, True] and edited["book"]["built"]
    manifest = json.loads((tmp_path / "out" / "two.json").read_text())
    assert manifest["rendered"] == 1 and [c["cached"] for c in manifest["chunks"]] == [True, False, True]


def test_sample_book_plans(tmp_path):
    from higgs_cli.build import load_project

    spec = load_project(ROOT / "transcripts" / "book" / "book.yaml")
    assert len(spec.chapters) == 3 and all(c.source.is_file() for c in spec.chapters)
    assert spec.title and spec.output.suffix == ".wav"


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"chapters": []}, "at least one"),
        ({"colour": "blue"}, "unknown field"),
        ({"format": "doc"}, "not supported"),
        ({"chapters": ["missing.txt"]}, "not found"),
        ({"max_words": "many"}, "must be a whole number"),
    ],
)
def test_bad_project_files(tmp_path, change, fragment):
    path = project(tmp_path, **change)
    result = CliRunner().invoke(app, ["build", str(path), "--cache", str(tmp_path / "cache")])
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and fragment in lines[0]
    assert not (tmp_path / "out" / "book.wav").exists()


def test_bind_wav_chapters(tmp_path):
    path = project(tmp_path)
    build(path)
    out = tmp_path / "joined.flac"
    files = [str(tmp_path / "out" / "one.wav"), str(tmp_path / "out" / "two.wav")]
    result = CliRunner().invoke(app, ["bind", *files, "-o", str(out), "--gap", "1", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    lengths = [sf.info(f).duration for f in files]
    assert abs(doc["duration"] - (sum(lengths) + 1.0)) < 0.01
    assert doc["chapters"][1]["start"] == pytest.approx(lengths[0] + 1.0, abs=0.01)


def test_one_cast_for_the_whole_book(tmp_path):
    """A speaker keeps its voice in every chapter file, and the voice map may name speakers a chapter lacks."""
    from higgs_cli.build import book_cast
    from higgs_cli.options import RenderOptions
    from higgs_cli.pipeline import make_plan
    from higgs_cli.transcript import parse_transcript

    scripts = [parse_transcript("[NARRATOR] Dawn.\n\n[MAYA] Hi."), parse_transcript("[NARRATOR] Dusk.\n\n[TOM] Bye.")]
    options = RenderOptions(engine="piper", voices={"MAYA": "nell"})
    voices = book_cast(scripts, options)
    plans = [make_plan(s, options, "piper", voices) for s in scripts]
    assert plans[0].cast["NARRATOR"] == plans[1].cast["NARRATOR"]
    assert plans[0].cast["MAYA"].name == "nell"
    assert len({voices[s].name for s in ("NARRATOR", "MAYA", "TOM")}) == 3  # TOM does not get MAYA's voice
    assert set(plans[1].cast) == {"NARRATOR", "TOM"}


def test_retake_chunks_on_build_rerenders_those_chunks_then_that_chapter_and_the_book(tmp_path):
    path = project(tmp_path)  # espeak: one.txt has 4 chunks (heading + 3), two.txt 3
    first = build(path)
    one, book = tmp_path / "out" / "one.wav", tmp_path / "out" / "book.wav"
    one_bytes, one_mtime = one.read_bytes(), one.stat().st_mtime_ns
    seeds = [c["seed"] for c in json.loads((tmp_path / "out" / "two.json").read_text())["chunks"]]

    redo = build(path, "--retake-chunks", "2:1", "--retake-chunks", "two:2")  # by number and by file stem
    assert [c["built"] for c in redo["chapters"]] == [False, True] and redo["book"]["built"]
    two = json.loads((tmp_path / "out" / "two.json").read_text())
    assert two["rendered"] == 2 and [c.get("retake") for c in two["chunks"]] == [None, "asked", "asked"]
    assert two["chunks"][0]["seed"] == seeds[0] and all(two["chunks"][i]["seed"] != seeds[i] for i in (1, 2))
    assert one.read_bytes() == one_bytes and one.stat().st_mtime_ns == one_mtime  # the other chapter is not touched
    assert redo["book"]["duration"] == pytest.approx(first["book"]["duration"], abs=1.0)

    again = build(path)  # the new takes are kept: nothing to do
    assert [c["built"] for c in again["chapters"]] == [False, False] and not again["book"]["built"]

    runner = CliRunner()
    book_before = book.read_bytes()
    for args, message in ((["--retake-chunks", "3:0"], "has no chapter '3'"), (["--retake-chunks", "one:9"], "one:9: that chapter has chunks 0..3"),
                          (["--retake-chunks", "1,2"], "name the chapter")):
        bad = runner.invoke(app, ["build", str(path), "--cache", str(tmp_path / "cache"), *args])
        assert bad.exit_code == 2 and message in bad.output and "Traceback" not in bad.output, bad.output
    assert book.read_bytes() == book_before
