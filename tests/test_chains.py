"""Chains: chapters (or word-budget sections) render independently, side by side, with anchored voices.

The tiny random Higgs checkpoint runs the whole pipeline on the CPU: `--batch 3` must write the same
samples as `--batch 1` (transformers' generate, chunk after chunk), context must never cross a chain,
and every clip-less voice must be pinned to one anchor that every chain and every job shares.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import soundfile as sf

from higgs_cli.chunking import chains, chunk_script
from higgs_cli.transcript import parse_transcript

BOOK = """# Chapter One
[SPEAKER0] The sun rises in the east. It sets in the west.
[SPEAKER1] Hello there. How are you?

# Chapter Two
[SPEAKER0] It was the night. Hooray!

Another paragraph here. And one more sentence.

# Chapter Three
[SPEAKER1] Today. It was my birthday.
"""


# --- planning (pure) --------------------------------------------------------------------------------------
def test_chains_start_at_every_heading_and_tile_the_chunks():
    script = parse_transcript(BOOK)
    chunks = chunk_script(script, "sentence", 60)
    found = chains(chunks, script)
    assert [i for chain in found for i in chain] == list(range(len(chunks)))
    assert len(found) == 3
    assert [script.segments[chunks[c[0]].paragraph].heading for c in found] == [True, True, True]


def test_a_word_budget_splits_long_chapters_at_paragraphs_only():
    script = parse_transcript(BOOK)
    chunks = chunk_script(script, "sentence", 60)
    found = chains(chunks, script, words=3)
    assert len(found) > 3
    for chain in found[1:]:  # every chain starts a paragraph
        first = chain[0]
        assert chunks[first].paragraph != chunks[first - 1].paragraph
    assert chains(chunks, script, words=0) == chains(chunks, script)


def test_no_headings_is_one_chain():
    script = parse_transcript("[A] One. Two.\n\n[B] Three.")
    chunks = chunk_script(script, "sentence", 60)
    assert chains(chunks, script) == [list(range(len(chunks)))]


# --- the higgs engine on a tiny checkpoint --------------------------------------------------------------
torch = pytest.importorskip("torch")
pytest.importorskip("transformers")


@pytest.fixture
def voices():
    from .helpers import add_calm_and_bright_voices

    add_calm_and_bright_voices()
    return {"NARRATOR": "joe", "SPEAKER0": "calm", "SPEAKER1": "bright"}


def options(voices, **higgs):
    from higgs_cli.options import HiggsSettings, RenderOptions

    from .higgs_tiny import hub_dirs

    model, codec = hub_dirs()
    settings = HiggsSettings(model=str(model), codec=str(codec), device="cpu", max_new_tokens=16, **higgs)
    return RenderOptions(engine="higgs", chunk="sentence", voices=voices, higgs=settings)


def render(text, opts, out, cache_dir=None):
    from higgs_cli.cache import ChunkCache
    from higgs_cli.pipeline import make_plan, render

    plan = make_plan(parse_transcript(text), opts, "higgs")
    doc = render(plan, out, cache=ChunkCache(cache_dir))
    return doc, sf.read(str(out), dtype="float32")[0]


def chunk_rows(doc):
    return [{k: row[k] for k in ("index", "frames", "context", "voice_lock", "chain", "seed")} for row in doc["chunks"]]


@pytest.mark.filterwarnings("ignore:running Higgs Audio v2 on the CPU")
def test_batched_chains_write_what_one_by_one_writes(voices, tmp_path):
    one_doc, one = render(BOOK, options(voices), tmp_path / "one.wav")
    wide_doc, wide = render(BOOK, options(voices, batch=3), tmp_path / "wide.wav")
    assert one.size > 0 and np.array_equal(one, wide)
    assert chunk_rows(one_doc) == chunk_rows(wide_doc)
    assert {row["chain"] for row in one_doc["chunks"]} == {0, 1, 2}


@pytest.mark.filterwarnings("ignore:running Higgs Audio v2 on the CPU")
def test_context_stays_inside_its_chain_and_clip_less_voices_are_anchored(voices, tmp_path):
    doc, _ = render(BOOK, options(voices, batch=2), tmp_path / "b.wav")
    chain_of = {row["index"]: row["chain"] for row in doc["chunks"]}
    anchors = {a["speaker"]: a["index"] for a in doc["anchors"]}
    assert set(anchors) == {"SPEAKER0", "SPEAKER1"}  # NARRATOR speaks in joe's clip
    for row in doc["chunks"]:
        assert all(chain_of[i] == row["chain"] for i in row["context"])
        assert row["voice_lock"] == anchors.get(row["speaker"])
    firsts = [row for row in doc["chunks"] if row["index"] == 0 or chain_of[row["index"] - 1] != row["chain"]]
    assert len(firsts) == 3 and all(row["context"] == [] for row in firsts)


@pytest.mark.filterwarnings("ignore:running Higgs Audio v2 on the CPU")
def test_anchors_are_shared_by_jobs_and_a_batched_rerun_renders_only_what_changed(voices, tmp_path):
    from higgs_cli.pipeline import all_keys, make_plan

    cache = tmp_path / "cache"
    opts = options(voices, batch=3)
    first, audio = render(BOOK, opts, tmp_path / "a.wav", cache)
    assert first["rendered"] == len(first["chunks"])
    again, same = render(BOOK, opts, tmp_path / "a2.wav", cache)
    assert again["rendered"] == 0 and np.array_equal(audio, same)

    edited = BOOK.replace("It was the night.", "It was the long night.")
    doc, _ = render(edited, opts, tmp_path / "e.wav", cache)
    changed = [row for row in doc["chunks"] if not row["cached"]]
    assert changed and {row["chain"] for row in changed} == {1}  # chapters one and three come from the cache

    other = "[SPEAKER1] A different text. For another chapter file."
    alone = dataclasses.replace(opts, voices={"SPEAKER1": "bright"})
    keys = [all_keys(make_plan(parse_transcript(t), o, "higgs")) for t, o in ((BOOK, opts), (other, alone))]
    bright = [a["index"] for a in first["anchors"] if a["speaker"] == "SPEAKER1"][0]
    other_anchor = min(keys[1])  # the only anchor of the one-speaker job
    assert keys[0][bright] == keys[1][other_anchor]  # same voice, same seed: the same anchor, rendered once


@pytest.mark.filterwarnings("ignore:running Higgs Audio v2 on the CPU")
def test_batched_without_a_cache_still_streams_in_order(voices, tmp_path):
    doc, audio = render(BOOK, options(voices, batch=4), tmp_path / "n.wav")
    starts = [row["start"] for row in doc["chunks"]]
    assert starts == sorted(starts) and audio.size / 24_000 == pytest.approx(doc["duration"], abs=0.01)


def test_batch_options_are_checked_before_anything_loads(voices, tmp_path):
    from typer.testing import CliRunner

    from higgs_cli.cli import app

    out = tmp_path / "x.wav"
    for args, message in ((["--batch", "2", "--decoder", "plain"], "drop --decoder plain"),
                          (["--batch", "0"], "--batch 0 is out of range"),
                          (["--chain-words", "-5"], "--chain-words -5 is negative")):
        result = CliRunner().invoke(app, ["generate", "--text", "Hi.", "--engine", "higgs", "-o", str(out), *args])
        assert result.exit_code == 2 and message in result.output, result.output
        assert not out.exists()


def test_batch_does_not_change_cache_keys(voices):
    from higgs_cli.pipeline import all_keys, make_plan

    opts = options(voices)
    plans = [make_plan(parse_transcript(BOOK), dataclasses.replace(opts, higgs=dataclasses.replace(opts.higgs, batch=b)), "higgs")
             for b in (1, 8)]
    assert all_keys(plans[0]) == all_keys(plans[1])
    split = dataclasses.replace(opts, higgs=dataclasses.replace(opts.higgs, chain_words=3))
    assert all_keys(make_plan(parse_transcript(BOOK), split, "higgs")) != all_keys(plans[0])  # context changes


def test_dry_run_shows_chains_and_anchor_prompts(voices, tmp_path):
    from typer.testing import CliRunner

    from higgs_cli.cli import app

    from .higgs_tiny import hub_dirs

    model, codec = hub_dirs()
    src = tmp_path / "book.txt"
    src.write_text(BOOK)
    result = CliRunner().invoke(app, ["generate", "--transcript", str(src), "--engine", "higgs", "--model", str(model),
                                      "--codec", str(codec), "--device", "cpu", "--dry-run", "--json",
                                      "--voice", "SPEAKER0=calm", "--voice", "SPEAKER1=bright", "--voice", "NARRATOR=joe"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    plan = doc["engine_plan"]
    assert plan["chains"] == 3
    assert [p.get("anchor") for p in plan["prompts"][:2]] == ["SPEAKER0", "SPEAKER1"]


@pytest.mark.filterwarnings("ignore:running Higgs Audio v2 on the CPU")
def test_a_shared_prefix_keeps_batched_chains_equal_to_one_by_one(voices):
    """On a GPU the system prompt and references are prefilled once; run that path here on the CPU."""
    from higgs_cli.engines.higgs import HiggsEngine, anchors
    from higgs_cli.pipeline import make_plan

    opts = options(voices, decoder="fast")
    plan = make_plan(parse_transcript(BOOK), opts, "higgs")
    engine = HiggsEngine(opts.higgs)
    engine._share_prefix = True
    items = [(r, None) for r in anchors(plan) + [plan.request(i) for i in range(len(plan.chunks))]]
    runs = []
    for width in (3, 1):
        engine.begin(plan)
        runs.append({r.index: a.audio for r, a in engine.render_batch(items, width)})
    assert runs[0].keys() == runs[1].keys() == {r.index for r, _ in items}
    assert all(np.array_equal(runs[0][i], runs[1][i]) for i in runs[0])
    request = plan.request(len(plan.chunks) - 1)
    chain = engine._chain_for(request)
    prompt = chain.state.prompt(request.speaker, request.text, chain.state.context())
    inputs = engine._inputs(prompt, chain)
    assert 0 < inputs["prefix"] < inputs["input_ids"].shape[1]  # references (joe's clip, two anchors) are shared


@pytest.mark.filterwarnings("ignore:running Higgs Audio v2 on the CPU")
def test_a_book_build_batches_its_chapter_files_together(voices, tmp_path):
    """`higgs build` with higgs.batch renders every stale chapter file in one batch, then assembles each one."""
    import yaml
    from typer.testing import CliRunner

    from higgs_cli.cli import app

    from .higgs_tiny import hub_dirs

    model, codec = hub_dirs()
    outputs = {}
    for width in (1, 3):
        folder = tmp_path / f"w{width}"
        folder.mkdir()
        (folder / "one.txt").write_text("# One\n\n[SPEAKER0] It began at dawn. Did it?\n\n[SPEAKER1] It did.\n")
        (folder / "two.txt").write_text("# Two\n\n[SPEAKER1] It ended at dusk.\n\n[SPEAKER0] Good. Very good.\n")
        (folder / "three.txt").write_text("[SPEAKER0] No heading here. Still a chapter.\n")
        higgs = {"model": str(model), "codec": str(codec), "device": "cpu", "max_new_tokens": 16, "batch": width}
        doc = {"engine": "higgs", "voices": voices, "chapters": ["one.txt", "two.txt", "three.txt"], "build_dir": "out",
               "higgs": higgs}
        (folder / "book.yaml").write_text(yaml.safe_dump(doc))
        result = CliRunner().invoke(app, ["build", str(folder / "book.yaml"), "--cache", str(folder / "cache")])
        assert result.exit_code == 0, result.output
        if width > 1:
            assert "3 chapters: " in result.output and "3 chains at a time" in result.output
        manifests = [json.loads((folder / "out" / f"{n}.json").read_text()) for n in ("one", "two", "three")]
        outputs[width] = ([sf.read(str(folder / "out" / f"{n}.wav"), dtype="float32")[0] for n in ("one", "two", "three")],
                          manifests)
    (one_audio, one_docs), (wide_audio, wide_docs) = outputs[1], outputs[3]
    assert all(a.size > 0 and np.array_equal(a, b) for a, b in zip(one_audio, wide_audio, strict=True))
    assert [d["batched"] for d in wide_docs] == [len(d["chunks"]) for d in wide_docs]  # all of it in the batch pass
    assert [chunk_rows(d) for d in one_docs] == [chunk_rows(d) for d in wide_docs]
    assert one_docs[0]["anchors"] == one_docs[1]["anchors"]  # one anchor per voice for the whole book


def test_a_voice_profile_can_give_its_anchor_sentence(voices):
    from higgs_cli.engines.higgs import anchors
    from higgs_cli.options import ANCHOR_TEXT
    from higgs_cli.pipeline import all_keys, make_plan
    from higgs_cli.voices import user_voices_dir

    (user_voices_dir() / "lina.yaml").write_text(
        "description: warm voice\nlanguage: de\nengines:\n  higgs: {anchor: 'Ich lese dir das jetzt vor.'}\n")
    opts = options({**voices, "SPEAKER1": "lina"})
    plan = make_plan(parse_transcript(BOOK), opts, "higgs")
    texts = {a.speaker: a.text for a in anchors(plan)}
    assert texts == {"SPEAKER0": ANCHOR_TEXT, "SPEAKER1": "Ich lese dir das jetzt vor."}
    before = all_keys(make_plan(parse_transcript(BOOK), options(voices), "higgs"))
    assert all_keys(plan)[-2] != before[-2] and all_keys(plan)[-1] == before[-1]  # only that voice's anchor changes
