"""Reading inputs people have: other tools' script formats, text cleaned for speech, the lexicon (issue 12)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import soundfile as sf
from typer.testing import CliRunner

from higgs_cli.cli import app
from higgs_cli.errors import TranscriptError, UsageError
from higgs_cli.lexicon import load as load_lexicon
from higgs_cli.scripts import detect, load
from higgs_cli.textclean import clean_text, numbers_to_words

INPUTS = Path(__file__).resolve().parent / "fixtures" / "inputs"


def run(*args: str):
    return CliRunner().invoke(app, list(args))


def words(text: str) -> list[str]:
    return re.findall(r"\w+", text.replace("’", "'"))


def dry_run(*args: str) -> dict:
    result = run("dialogue", "--dry-run", "--json", "--engine", "espeak", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.parametrize(("name", "fmt", "speakers"), [
    ("vibevoice_3p_transhumanism.txt", "speaker-colon", 3),
    ("dia_simple.txt", "inline-s", 2),
    ("moss_ttsd_examples_only_text.jsonl", "jsonl", 2),
])
def test_other_tools_scripts_get_their_speakers_and_every_word(name, fmt, speakers):
    source = (INPUTS / name).read_text(encoding="utf-8")
    assert detect(source) == fmt
    result = run("dialogue", "-t", str(INPUTS / name), "--dry-run", "--json", "--engine", "espeak")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["input"]["format"] == fmt and "read as" in result.stderr  # stderr names the format
    assert sorted(doc["speakers"]) == [f"SPEAKER{i}" for i in range(speakers)]
    assert len({v["voice"] for v in doc["speakers"].values()}) == speakers
    if fmt == "jsonl":
        source = " ".join(json.loads(line)["text"] for line in source.splitlines() if line.strip())
    expected = words(re.sub(r"Speaker\s\d+:|\[S\d+\]|\(laughs\)", " ", source))
    assert words(" ".join(c["text"] for c in doc["chunks"]).replace("<SE>[Laughter]</SE>", " ")) == expected
    assert not any("{" in c["spoken"] or "Speaker 1" in c["spoken"] or "[S1]" in c["spoken"] for c in doc["chunks"])


def test_speakers_in_order_so_voice_mapping_works():
    doc = dry_run("--text", "Speaker 2: Second voice first.\nSpeaker 1: Then the first.", "--voice", "SPEAKER0=nell")
    assert [c["speaker"] for c in doc["chunks"]] == ["SPEAKER1", "SPEAKER0"]  # numbered speakers by number
    assert doc["speakers"]["SPEAKER0"]["voice"] == "nell"


def test_bracket_and_lower_case_speaker_tags_are_speakers_but_events_stay_events():
    script = load("[Speaker 1] Hello. [laugh]\n[speaker 2] Hi there.\n[spk1] Again [cough] yes.")
    assert script.format == "inline-s" and script.speakers == ("SPEAKER0", "SPEAKER1")
    assert [s.speaker for s in script.segments] == ["SPEAKER0", "SPEAKER1", "SPEAKER0"]
    assert "<SE>[Laughter]</SE>" in script.segments[0].text and "<SE>[Cough]</SE>" in script.segments[2].text
    assert [s.line for s in script.segments] == [1, 2, 3]


def test_several_inline_turns_on_one_line_keep_the_source_line():
    script = load("Intro line.\n[S1] One. [S2] Two. [S1] Three.")
    assert [(s.speaker, s.text, s.line) for s in script.segments] == [
        ("NARRATOR", "Intro line.", 1), ("SPEAKER0", "One.", 2), ("SPEAKER1", "Two.", 2), ("SPEAKER0", "Three.", 2)]


def test_jsonl_speaker_field_and_json_is_never_read_aloud(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text('{"speaker": "host", "text": "Welcome back."}\n{"speaker": "guest", "text": "Thanks."}\n'
                    '{"speaker": "host", "text": "Let us start."}\n')
    doc = dry_run("-t", str(path))
    assert [(c["speaker"], c["text"]) for c in doc["chunks"]] == [
        ("SPEAKER0", "Welcome back."), ("SPEAKER1", "Thanks."), ("SPEAKER0", "Let us start.")]
    path.write_text('{"speaker": "host", "text": "Fine."}\n{"speaker": "guest", "words": "No text field."}\n')
    result = run("dialogue", "-t", str(path), "--dry-run")
    assert result.exit_code == 2 and f"{path}:2:" in result.stderr and "text field" in result.stderr


def test_forced_format_and_unknown_format():
    script = load("Speaker 1: Hi.", "higgs")  # forced: our own format reads it as narration
    assert script.speakers == ("NARRATOR",)
    with pytest.raises(TranscriptError, match="--format"):
        load("hi", "vtt")
    result = run("generate", "--text", "hi", "--format", "srt", "--dry-run")
    assert result.exit_code == 2 and "--format 'srt'" in result.stderr


def test_heading_makes_a_chapter_in_dialogue_as_in_generate():
    text = "# Chapter One\n[SPEAKER0] Hello.\n[SPEAKER1] Hi.\n\n# Chapter Two\nThe narrator ends it."
    for command in ("dialogue", "generate"):
        result = run(command, "--text", text, "--dry-run", "--json", "--engine", "espeak")
        doc = json.loads(result.stdout)
        assert [c["title"] for c in doc["chapters"]] == ["Chapter One", "Chapter Two"]
        assert [c["text"] for c in doc["chunks"] if c["speaker"] == "NARRATOR"] == ["Chapter One.", "Chapter Two.", "The narrator ends it."]


def test_markdown_ssml_invisible_and_emoji_are_cleaned_with_a_note_per_line():
    raw = ("**Bold** and _it_ with `code` and [a link](https://x.org/p).\n- A list item\n"
           'Wait <break time="750ms"/> then <emphasis>this</emphasis> and <say-as interpret-as="characters">BBC</say-as>.\n'
           "zero\u200bwidth soft\u00adhyphen \u200fmark\n"
           "Great 😀 job")
    text, notes = clean_text(raw)
    assert text.split("\n") == ["Bold and it with code and a link.", "A list item", "Wait [pause:0.75] then this and B B C.",
                                "zerowidth softhyphen mark", "Great   job"]
    by_line = {n.line for n in notes}
    assert by_line == {1, 2, 3, 4, 5}
    assert any(n.kind == "warning" and "emphasis" in n.message for n in notes)
    doc = dry_run("--text", raw, "--emoji", "name")
    spoken = " ".join(c["spoken"] for c in doc["chunks"])
    assert "grinning face" in spoken and "**" not in spoken and "<" not in spoken and "\u200b" not in spoken
    assert {n["line"] for n in doc["input"]["notes"]} >= {1, 2, 3, 4, 5}
    wait = next(i for i, c in enumerate(doc["chunks"]) if c["text"].endswith("Wait"))  # the break is a real pause: it ends a chunk
    assert doc["chunks"][wait + 1]["text"].startswith("then this")


@pytest.mark.parametrize(("raw", "spoken"), [
    ("It cost $5.50 on 2024-03-05 at 10:30 pm.", "It cost five dollars fifty cents on March fifth, twenty twenty-four at ten thirty P M."),
    ("Dr. Smith was born in 1984, the 21st of 3 kids; 50% of 1,200.",
     "Doctor Smith was born in nineteen eighty-four, the twenty-first of three kids; fifty percent of one thousand two hundred."),
    ("Mr. Jones said it was 7:05, in the 1990s, e.g. on March 3, 2021.",
     "Mister Jones said it was seven oh five, in the nineteen nineties, for example on March third, twenty twenty-one."),
    ("Call 555-1234 about the 1914–18 war.", "Call five five five, one two three four about the nineteen fourteen to nineteen eighteen war."),
])
def test_english_numbers_dates_times_currencies_and_abbreviations_read_as_a_person_would(raw, spoken):
    assert numbers_to_words(raw) == spoken


def test_numbers_keep_leaves_digits_and_text_stays_as_written():
    doc = dry_run("--text", "Chapter 3 costs $4.", "--numbers", "keep")
    assert doc["chunks"][0]["spoken"] == doc["chunks"][0]["text"] == "Chapter 3 costs $4."
    doc = dry_run("--text", "Chapter 3 costs $4.")
    assert doc["chunks"][0]["text"] == "Chapter 3 costs $4." and doc["chunks"][0]["spoken"] == "Chapter three costs four dollars."
    assert {"line": 1, "kind": "converted", "message": "read out: '$4' -> 'four dollars'; '3' -> 'three'"} in doc["input"]["notes"]


def test_right_to_left_letters_on_an_english_voice_warn_naming_the_line():
    result = run("generate", "--text", "Hello.\n\nShalom שלום friend.", "--dry-run", "--json", "--engine", "espeak")
    doc = json.loads(result.stdout)
    assert "--text:3: warning: Hebrew letters dropped" in result.stderr
    assert doc["chunks"][1]["spoken"] == "Shalom friend." and "שלום" in doc["chunks"][1]["text"]


def test_lexicon_changes_the_spoken_text_and_the_cache_key(tmp_path):
    lex = tmp_path / "lex.yaml"
    lex.write_text("Nguyen: win\nUS: United States\nKubernetes: {say: koo ber net eez, ipa: /kuːbɚˈnɛtiːz/}\nGIF: /dʒɪf/\n")
    plain = dry_run("--text", "Mr. Nguyen runs Kubernetes in the US; us too. Nguyenville.")
    doc = dry_run("--text", "Mr. Nguyen runs Kubernetes in the US; us too. Nguyenville.", "--lexicon", str(lex))
    assert doc["chunks"][0]["spoken"] == "Mister win runs koo ber net eez in the United States; us too. Nguyenville."
    assert doc["chunks"][0]["key"] != plain["chunks"][0]["key"] and doc["chunks"][0]["text"] == plain["chunks"][0]["text"]
    assert any(n["message"].startswith("lexicon: ") and "'Nguyen' -> 'win'" in n["message"] for n in doc["input"]["notes"])
    piper = json.loads(run("generate", "--text", "Kubernetes and GIF.", "--lexicon", str(lex), "--dry-run", "--json",
                           "--engine", "piper").stdout)
    assert piper["chunks"][0]["spoken"] == "[[kuːbɚˈnɛtiːz]] and [[dʒɪf]]."  # Piper takes IPA
    from higgs_cli.options import RenderOptions, SpeechOptions
    from higgs_cli.pipeline import make_plan

    plan = make_plan(load("It is 5 Kubernetes."), RenderOptions(speech=SpeechOptions(lexicon=load_lexicon(lex))), "piper")
    chunk = plan.chunks[0]  # what the quality gate expects to hear: numbers read out, no respellings or phonemes
    assert (chunk.text, chunk.heard, chunk.written) == ("It is five [[kuːbɚˈnɛtiːz]].", "It is five Kubernetes.", "It is 5 Kubernetes.")
    espeak = dry_run("--text", "Kubernetes and GIF.", "--lexicon", str(lex))
    assert espeak["chunks"][0]["spoken"] == "koo ber net eez and GIF."  # no phonemes, no respelling: as written


def test_lexicon_tsv_and_bad_files(tmp_path):
    tsv = tmp_path / "lex.tsv"
    tsv.write_text("# names\nsiobhan\tshi vawn\nUS\tyou ess\n")
    lexicon = load_lexicon(tsv)
    assert lexicon.apply("Siobhan and siobhan.", "espeak") == "shi vawn and shi vawn."  # a lower-case entry matches any case
    assert lexicon.apply("US and us.", "espeak") == "you ess and us."  # an entry with a capital matches that case only
    bad = tmp_path / "bad.tsv"
    bad.write_text("word without tab\n")
    with pytest.raises(UsageError, match=r"bad.tsv:1: no tab"):
        load_lexicon(bad)
    result = run("generate", "--text", "hi", "--lexicon", str(tmp_path / "none.yaml"), "--dry-run")
    assert result.exit_code == 2 and "file not found" in result.stderr


def test_piper_renders_lexicon_phonemes(tmp_path):
    lex = tmp_path / "lex.yaml"
    lex.write_text("Zorblax: /zɔːɹblæks/\n")
    out = tmp_path / "z.wav"
    result = run("generate", "--text", "Hello Zorblax.", "--lexicon", str(lex), "-o", str(out), "--engine", "piper", "--no-cache", "-q")
    assert result.exit_code == 0, result.output
    assert sf.info(str(out)).duration > 0.5


def test_dia_script_renders_two_distinct_voices_with_every_turn(tmp_path):
    out = tmp_path / "dia.wav"
    result = run("dialogue", "-t", str(INPUTS / "dia_simple.txt"), "-o", str(out), "--engine", "espeak", "--json", "--no-cache")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert [c["speaker"] for c in doc["chunks"]] == ["SPEAKER0", "SPEAKER1", "SPEAKER0", "SPEAKER1"]
    assert len({v["voice"] for v in doc["speakers"].values()}) == 2
    assert all(c["end"] - c["start"] > 0.3 for c in doc["chunks"]) and sf.info(str(out)).duration >= doc["chunks"][-1]["end"]


def test_a_json_line_in_a_transcript_is_refused_not_read_aloud():
    with pytest.raises(TranscriptError, match=r"<text>:2: this line is a JSON object"):
        load('Hello there.\n{"speaker": "a", "text": "Hi"}')
    assert load('Hello.\n{"text": "braces read as written"}', "higgs").segments  # forced: the user's call


def test_control_tags_are_not_cleaned_as_markdown():
    text, notes = clean_text("Intro [music: _bed_take_2_.ogg] **Bold** words.")
    assert text == "Intro [music: _bed_take_2_.ogg] Bold words." and [n.message for n in notes] == ["Markdown emphasis marks"]


def test_markdown_tables_entities_and_deep_headings_read_as_words():
    text, notes = clean_text("| Name | Age |\n|---|---:|\n| Ann | 42 |\n#### Deep heading\nTom &amp; Jerry")
    assert text.split("\n") == ["Name, Age", "", "Ann, 42", "Deep heading", "Tom & Jerry"]
    assert [n.line for n in notes] == [1, 2, 3, 4, 5]


def test_detection_needs_a_tag_opening_a_line():
    assert detect("As shown in [S1], the effect holds.\nSee also [S2].") == "higgs"  # citations, not speakers
    assert detect("[SPEAKER0] Hi. [SPEAKER1] Hello.") == "inline-s"  # our own tags, two turns on one line
    assert detect("[SPEAKER0] Hi.\n[SPEAKER1] Hello.") == "higgs"


def test_espeak_takes_its_own_phoneme_mnemonics_from_the_lexicon(tmp_path):
    lex = tmp_path / "lex.yaml"
    lex.write_text("zorblax: {say: zor blacks, espeak: \"h@l'oU\"}\n")
    doc = dry_run("--text", "Zorblax.", "--lexicon", str(lex))
    assert doc["chunks"][0]["spoken"] == "[[h@l'oU]]."
    durations = []
    for text, extra in (("Zorblax.", ["--lexicon", str(lex)]), ("Hello.", [])):
        out = tmp_path / f"{len(durations)}.wav"
        result = run("generate", "--text", text, *extra, "-o", str(out), "--engine", "espeak", "--no-cache", "-q")
        assert result.exit_code == 0, result.output
        durations.append(sf.info(str(out)).duration)
    assert abs(durations[0] - durations[1]) < 0.15 * durations[1]  # the mnemonics were spoken as "hello", not spelled out
