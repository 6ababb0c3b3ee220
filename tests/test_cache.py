"""The chunk cache: what invalidates a key, corrupt entries, kill -9 and resume, concurrent writers, cache commands."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from higgs_cli.cache import ChunkCache, Entry
from higgs_cli.cli import app
from higgs_cli.options import HiggsSettings, RenderOptions
from higgs_cli.pipeline import chunk_keys, make_plan, render
from higgs_cli.transcript import parse_transcript

ROOT = Path(__file__).resolve().parents[1]
BOOK = "[NARRATOR] One small step.\n\n[MAYA] Two birds sing.\n\n[NARRATOR] Three ships sail.\n\n[MAYA] Four cats sleep.\n"


def keys(text: str = BOOK, engine: str = "piper", **opts) -> list[str]:
    options = RenderOptions(engine=engine, chunk="paragraph", **opts)
    return chunk_keys(make_plan(parse_transcript(text), options, engine))


def changed(a: list[str], b: list[str]) -> list[int]:
    return [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]


def test_editing_one_paragraph_changes_only_its_key():
    assert changed(keys(), keys(BOOK.replace("Three ships", "Three boats"))) == [2]


def test_seed_and_voice_changes_invalidate_exactly_their_chunks():
    base = keys()
    assert changed(base, keys(seed=1)) == [0, 1, 2, 3]
    assert changed(base, keys(voices={"MAYA": "otis"})) == [1, 3]


def test_things_that_do_not_shape_audio_keep_keys():
    base = keys()
    assert keys(pause_turn=2.0, pause_paragraph=0.1) == base
    assert keys(higgs=HiggsSettings(temperature=0.3)) == base  # higgs sampling means nothing to piper
    inserted = keys("[NARRATOR] A new opening line.\n\n" + BOOK)
    assert inserted[1:] == base  # content-derived seeds: nothing after the insertion re-renders


def test_voice_profile_change_invalidates(monkeypatch, tmp_path):
    from higgs_cli import voices

    folder = voices.user_voices_dir()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "mine.yaml").write_text("engines:\n  piper: {pitch: 1.1}\n")
    first = keys(voices={"MAYA": "mine"})
    (folder / "mine.yaml").write_text("engines:\n  piper: {pitch: 1.2}\n")
    assert changed(first, keys(voices={"MAYA": "mine"})) == [1, 3]


def test_higgs_keys_follow_context_and_sampling():
    settings = HiggsSettings(context_chunks=1)
    base = keys(engine="higgs", higgs=settings)
    # chunk 2 changes; chunk 3 has it in context and as the decoder's left context
    assert changed(base, keys(BOOK.replace("Three ships", "Three boats"), engine="higgs", higgs=settings)) == [2, 3]
    assert changed(base, keys(engine="higgs", higgs=replace(settings, temperature=0.5))) == [0, 1, 2, 3]


def test_corrupt_and_truncated_entries_are_rendered_again(tmp_path):
    cache = ChunkCache(tmp_path / "cache")
    plan = make_plan(parse_transcript(BOOK), RenderOptions(engine="piper", chunk="paragraph"), "piper")
    first = render(plan, tmp_path / "a.wav", cache=cache)
    assert first["rendered"] == 4
    entries = cache.entries()
    assert len(entries) == 4
    by_key = {p.stem[:16]: p for p in entries}
    damaged = [by_key[first["chunks"][1]["key"]], by_key[first["chunks"][3]["key"]]]
    damaged[0].write_bytes(damaged[0].read_bytes()[:200])  # truncated
    blob = bytearray(damaged[1].read_bytes())
    blob[-3000] ^= 0xFF  # one flipped byte deep in the audio
    damaged[1].write_bytes(bytes(blob))
    second = render(plan, tmp_path / "b.wav", cache=cache)
    assert [c["cached"] for c in second["chunks"]] == [True, False, True, False]
    assert (tmp_path / "a.wav").read_bytes() == (tmp_path / "b.wav").read_bytes()


def test_entries_round_trip_with_state(tmp_path):
    cache = ChunkCache(tmp_path)
    entry = Entry(np.linspace(-1, 1, 100, dtype=np.float32), {"frames": 3}, {"codes": np.arange(12, dtype=np.int16).reshape(2, 6)})
    cache.put("ab" * 32, entry)
    back = cache.get("ab" * 32)
    assert np.array_equal(back.audio, entry.audio) and back.info == {"frames": 3}
    assert np.array_equal(back.state["codes"], entry.state["codes"])
    assert ChunkCache(None).get("ab" * 32) is None


def _higgs_cli(*args: str, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "higgs_cli", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_kill_9_then_resume_reuses_finished_chunks_and_matches_an_uninterrupted_render(tmp_path):
    text = "\n\n".join(f"[{'MAYA' if i % 2 else 'NARRATOR'}] Paragraph {i} is short." for i in range(14))
    (tmp_path / "t.txt").write_text(text)
    env = {**os.environ, "HIGGS_CACHE_DIR": str(tmp_path / "cache")}
    args = ["generate", "-t", str(tmp_path / "t.txt"), "-o", str(tmp_path / "out.wav"), "--engine", "piper", "--quiet"]
    proc = _higgs_cli(*args, env=env)
    cache = ChunkCache(tmp_path / "cache")
    deadline = time.monotonic() + 120
    while len(cache.entries()) < 4 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = {p.stem[:16] for p in cache.entries()}
    assert 4 <= len(done_before) < 14 and not (tmp_path / "out.wav").exists()
    resumed = _higgs_cli(*args, "--json", env=env)
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    doc = json.loads(out)
    assert {c["key"] for c in doc["chunks"] if c["cached"]} == done_before  # every finished chunk reused, none redone
    fresh = _higgs_cli("generate", "-t", str(tmp_path / "t.txt"), "-o", str(tmp_path / "fresh.wav"), "--engine", "piper",
                       "--quiet", "--no-cache", env=env)
    assert fresh.wait(timeout=300) == 0
    assert (tmp_path / "out.wav").read_bytes() == (tmp_path / "fresh.wav").read_bytes()


def test_two_processes_sharing_a_cache(tmp_path):
    text = "\n\n".join(f"[NARRATOR] Shared line number {i}." for i in range(6))
    (tmp_path / "t.txt").write_text(text)
    env = {**os.environ, "HIGGS_CACHE_DIR": str(tmp_path / "cache")}
    procs = [_higgs_cli("generate", "-t", str(tmp_path / "t.txt"), "-o", str(tmp_path / f"{n}.wav"), "--engine", "piper",
                        "--quiet", env=env) for n in ("a", "b")]
    for p in procs:
        assert p.wait(timeout=300) == 0, p.stderr.read()
    cache = ChunkCache(tmp_path / "cache")
    assert len(cache.entries()) == 6 and all(cache.get(p.stem) is not None for p in cache.entries())
    assert (tmp_path / "a.wav").read_bytes() == (tmp_path / "b.wav").read_bytes()
    assert not list((tmp_path / "cache").glob("*/.*.tmp"))


def test_cache_commands(tmp_path):
    cache = ChunkCache(tmp_path / "c")
    for n in range(3):
        cache.put(f"{n:02d}" * 32, Entry(np.zeros(24_000, np.float32), {}, {}))
    old = cache.entries()[0]
    os.utime(old, (time.time() - 10 * 86400, time.time() - 10 * 86400))
    runner = CliRunner()
    info = json.loads(runner.invoke(app, ["cache", "info", "--cache", str(tmp_path / "c"), "--json"]).stdout)
    assert info["entries"] == 3 and info["bytes"] > 3 * 96_000 and info["oldest_days"] >= 9.9
    assert runner.invoke(app, ["cache", "prune", "--cache", str(tmp_path / "c"), "--older-than", "5"]).exit_code == 0
    assert len(cache.entries()) == 2 and not old.exists()
    assert runner.invoke(app, ["cache", "prune", "--cache", str(tmp_path / "c"), "--max-size", "100k"]).exit_code == 0
    assert len(cache.entries()) == 1
    assert runner.invoke(app, ["cache", "clear", "--cache", str(tmp_path / "c")]).exit_code == 0
    assert cache.entries() == []
    assert runner.invoke(app, ["cache", "prune", "--cache", str(tmp_path / "c")]).exit_code == 2


def test_manifest_reports_cache_hits_and_dry_run_predicts_them(tmp_path):
    runner = CliRunner()
    cache = ["--cache", str(tmp_path / "c")]
    first = json.loads(runner.invoke(app, ["generate", "--text", BOOK, "-o", str(tmp_path / "a.wav"), "--json", "-q", *cache]).stdout)
    assert first["rendered"] == 4 and not any(c["cached"] for c in first["chunks"])
    edited = BOOK.replace("Two birds", "Two crows")
    plan = json.loads(runner.invoke(app, ["generate", "--text", edited, "--dry-run", "--json", *cache]).stdout)
    assert [c["cached"] for c in plan["chunks"]] == [True, False, True, True]
    second = json.loads(runner.invoke(app, ["generate", "--text", edited, "-o", str(tmp_path / "b.wav"), "--json", "-q", *cache]).stdout)
    assert second["rendered"] == 1
