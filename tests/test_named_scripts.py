"""Scripts whose speakers are named (`Alice: Hello.`), as podcast generators and screenplays write them."""

from __future__ import annotations

import json
import re

import pytest
import soundfile as sf
from typer.testing import CliRunner

from higgs_cli.cli import app
from higgs_cli.scripts import detect, load

# The shape LLM podcast generators produce: a title line, bold names, a stage cue, a title before a surname.
PODCAST = """The Deep End, episode 4

**Maya:** Welcome back to The Deep End. Today we talk about tides.
**Tom:** Thanks, Maya. Good to be here at 10:30 on a Monday.
MAYA (laughing): You say that every week.
Dr. Okafor: If I may: the moon pulls the water towards it.
Tom: And the sun?
Dr. Okafor: A little, twice a month.

Maya: That is all for today.
"""


def run(*args: str):
    return CliRunner().invoke(app, list(args))


def words(text: str) -> list[str]:
    return re.findall(r"\w+", text)


def plan(*args: str) -> tuple[dict, str]:
    result = run("dialogue", "--dry-run", "--json", "--engine", "espeak", "--numbers", "keep", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout), result.stderr


def test_named_speakers_become_speakers_in_order_with_every_word_and_no_name_read(tmp_path):
    script = tmp_path / "episode.txt"
    script.write_text(PODCAST, encoding="utf-8")
    doc, stderr = plan("-t", str(script))
    assert doc["input"]["format"] == "name-colon"
    assert doc["input"]["speakers"] == {"Maya": "SPEAKER0", "Tom": "SPEAKER1", "Dr. Okafor": "SPEAKER2"}
    assert "Maya -> SPEAKER0, Tom -> SPEAKER1, Dr. Okafor -> SPEAKER2" in stderr  # the mapping, on stderr
    assert {s: v.get("name") for s, v in doc["speakers"].items()} == {"SPEAKER0": "Maya", "SPEAKER1": "Tom", "SPEAKER2": "Dr. Okafor",
                                                                     "NARRATOR": None}
    assert len({v["voice"] for v in doc["speakers"].values()}) == 4
    assert [c["speaker"] for c in doc["chunks"]] == ["NARRATOR", "SPEAKER0", "SPEAKER1", "SPEAKER0", "SPEAKER2", "SPEAKER1", "SPEAKER2", "SPEAKER0"]
    spoken = " ".join(c["text"] for c in doc["chunks"]).replace("<SE>[Laughter]</SE>", " ")
    expected = re.sub(r"^\W*(Maya|Tom|MAYA \(laughing\)|Dr\. Okafor)\W*:\W*", " ", PODCAST, flags=re.M)
    assert words(spoken) == words(expected)  # every word of every turn, and no name read out
    assert "<SE>[Laughter]</SE>" in doc["chunks"][3]["text"]  # "(laughing)" after the name is the laugh event
    lines = {n["line"]: n["message"] for n in doc["input"]["notes"]}
    assert "no speaker name" in lines[1] and "NARRATOR" in lines[1]  # the title line: said who reads it
    assert doc["speakers"]["SPEAKER0"]["why"].startswith("the name Maya")  # casting still sees the names


def test_voice_takes_the_name_as_well_as_speakern(tmp_path):
    script = tmp_path / "episode.txt"
    script.write_text(PODCAST, encoding="utf-8")
    doc, _ = plan("-t", str(script), "--voice", "maya=nell", "--voice", "Dr. Okafor=brock", "--voice", "SPEAKER1=otis")
    assert [doc["speakers"][s]["voice"] for s in ("SPEAKER0", "SPEAKER1", "SPEAKER2")] == ["nell", "otis", "brock"]
    result = run("dialogue", "-t", str(script), "--dry-run", "--engine", "espeak", "--voice", "Carol=nell")
    assert result.exit_code == 2 and "CAROL which is not in the transcript" in result.stderr and "SPEAKER0 (Maya)" in result.stderr


@pytest.mark.parametrize("text", [
    "Note: keep this short.\nWarning: do not run it twice.\nTip: use the other one.\n",  # labels
    "Date: Monday\nAttendees: Bob, Alice\nAction: Bob to fix the build.\nAction: Alice to review it.\n",  # meeting notes
    "At 10:30 we left.\nBy 11:45 we were home.\nThe score was 2:1.\n",  # times
    "It was late. She said: go home.\n\nHe answered: never.\n",  # prose with colons
    "Q: What is it?\nA: A thing.\nQ: Why?\nA: Because.\n",  # questions and answers
    "Chapter One: The Start\n\nText here.\n\nChapter Two: The End\n\nMore text.\n",  # titled chapters
    "In Paris: a cafe.\nIn Rome: a square.\nIn Paris: a bridge.\nIn Rome: a fountain.\n",  # phrases, not names
    "Warning: the doors close at 10:30.\nWarning: bring a coat.\nNote: no dogs.\nNote: no cats either.\n",  # labels, reused
])
def test_prose_with_colons_is_not_a_named_script(text):
    assert detect(text) == "higgs"
    script = load(text)
    assert script.speakers == ("NARRATOR",) and not any(n.kind == "warning" and "Name" in n.message for n in script.notes)
    assert words(" ".join(s.text for s in script.segments)) == words(text.replace("(", " ").replace(")", " "))  # every word, labels too


def test_a_near_miss_is_read_as_text_with_a_warning_and_can_be_forced():
    text = "Joe: How is it going today, Jane?\nJane: Not too bad, how about you?"  # two names, each used once
    script = load(text)
    assert script.format == "higgs" and script.speakers == ("NARRATOR",)
    warning = next(n for n in script.notes if n.kind == "warning")
    assert warning.line == 1 and "--format name-colon" in warning.message
    forced = load(text, "name-colon")
    assert forced.format == "name-colon" and forced.speakers == ("SPEAKER0", "SPEAKER1") and forced.names == {"SPEAKER0": "Joe", "SPEAKER1": "Jane"}
    assert [s.text for s in forced.segments] == ["How is it going today, Jane?", "Not too bad, how about you?"]
    result = run("generate", "--text", "no names at all", "--format", "name-colon", "--dry-run")
    assert result.exit_code == 2 and "no `Name:` speaker tags" in result.stderr


def test_lines_without_a_name_and_names_used_once_are_named_in_warnings():
    text = "ALICE: Where were you?\nBOB: Out.\nALICE: Out where?\nBOB: Just out.\n\nThe door slams.\nCAROL: Dinner!\n"
    script = load(text)
    assert script.format == "name-colon" and script.speakers == ("SPEAKER0", "SPEAKER1", "SPEAKER2")
    notes = {n.line: n.message for n in script.notes if n.kind == "warning"}
    assert "no speaker name" in notes[6] and "BOB (SPEAKER1)" in notes[6]  # whose voice reads the stage line
    assert "'CAROL' speaks only here" in notes[7]


def test_a_named_script_renders_with_a_voice_per_name(tmp_path):
    out = tmp_path / "scene.wav"
    text = "Ann: Hello Ben.\nBen: Hello Ann.\nAnn: Bye.\nBen: Bye now.\n"
    result = run("dialogue", "--text", text, "-o", str(out), "--engine", "espeak", "--json", "--no-cache")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert [c["speaker"] for c in doc["chunks"]] == ["SPEAKER0", "SPEAKER1", "SPEAKER0", "SPEAKER1"]
    assert doc["speakers"]["SPEAKER0"]["voice"] != doc["speakers"]["SPEAKER1"]["voice"]
    assert [c["text"] for c in doc["chunks"]] == ["Hello Ben.", "Hello Ann.", "Bye.", "Bye now."]
    assert all(c["end"] - c["start"] > 0.2 for c in doc["chunks"]) and sf.info(str(out)).duration >= doc["chunks"][-1]["end"]


def test_numbered_bracketed_roles_as_llm_podcast_generators_write_them():
    text = ("-----\n\nIntroduction\n\n1. [Male speaker]: Have you ever wondered how a tide turns?\n\n"
            "2. [Female speaker]: Often. The moon does most of the work.\n\n3. [Male speaker]: And the sun?\n\n"
            "4. [Female speaker]: A little, twice a month.\n")
    script = load(text)
    assert script.format == "name-colon" and script.names == {"SPEAKER0": "Male speaker", "SPEAKER1": "Female speaker"}
    assert [s.text for s in script.segments if s.speaker == "SPEAKER0"] == ["Have you ever wondered how a tide turns?", "And the sun?"]
    assert [n.line for n in script.notes if n.kind == "warning"] == [3]  # the section title, read by NARRATOR; the rule is not warned about
    doc, _ = plan("--text", text)
    assert doc["speakers"]["SPEAKER0"]["gender"] == "masculine" and doc["speakers"]["SPEAKER1"]["gender"] == "feminine"  # the role says it
