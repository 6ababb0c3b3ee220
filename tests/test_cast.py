"""Casting: voices of the gender the names and the text suggest, distinct, alternating when nothing is known."""

import json

import pytest

from higgs_cli.cast import FEMININE, MASCULINE, cast, gender_of, infer_gender
from higgs_cli.errors import VoiceError
from higgs_cli.transcript import read_transcript
from higgs_cli.voices import library

from .test_cli import DEMO, run


@pytest.mark.parametrize("speaker, text, gender", [
    ("MAYA", "", FEMININE), ("TOM", "", MASCULINE), ("SILAS", "", MASCULINE),
    ("MRS_HALE", "", FEMININE), ("SIR_TOBY", "", MASCULINE),
    ("NARRATOR", "", None), ("SPEAKER0", "", None),
    ("ALEX", "Then Alex, a tall young woman in a red coat, stood up.", FEMININE),  # the text beats the name data
    ("KIT", "The owner, an old man called Kit, set down the cups.", MASCULINE),
])
def test_infer_gender(speaker, text, gender):
    assert infer_gender(speaker, text)[0] == gender


def test_the_bundled_cast_has_three_of_each_gender():
    bundled = [v for v in library() if v.source == "bundled"]
    genders = [gender_of(v) for v in bundled]
    assert len(bundled) >= 6 and genders.count(FEMININE) >= 3 and genders.count(MASCULINE) >= 3
    assert all(v.description for v in bundled)


def test_names_get_voices_of_their_gender_all_distinct():
    speakers = ("NARRATOR", "MAYA", "TOM", "SILAS", "ANNA", "GRACE", "PETER", "SPEAKER7")
    result = cast(speakers, {}, None, True, "")
    genders = {spk: gender_of(v) for spk, v in result.voices.items()}
    assert [genders[s] for s in ("MAYA", "ANNA", "GRACE")] == [FEMININE] * 3
    assert [genders[s] for s in ("TOM", "SILAS", "PETER")] == [MASCULINE] * 3
    assert len({v.name for v in result.voices.values()}) == len(speakers)
    assert all(result.why[s] for s in speakers)


def test_unknown_names_alternate():
    result = cast(tuple(f"SPEAKER{k}" for k in range(4)), {}, None, True)
    assert [gender_of(v) for v in result.voices.values()] == [MASCULINE, FEMININE, MASCULINE, FEMININE]
    assert all("alternating" in why for why in result.why.values())


def test_a_mapping_wins_and_leaves_the_others_alone():
    plain = cast(("SPEAKER0", "SPEAKER1", "SPEAKER2"), {}, None, True)
    result = cast(("SPEAKER0", "SPEAKER1", "SPEAKER2"), {"SPEAKER1": "otis"}, None, True)
    assert result.voices["SPEAKER1"].name == "otis" and result.why["SPEAKER1"] == "mapped explicitly"
    assert result.voices["SPEAKER0"] == plain.voices["SPEAKER0"]  # the unknowns alternate among themselves
    assert gender_of(result.voices["SPEAKER2"]) == FEMININE
    with pytest.raises(VoiceError, match="not in the transcript"):
        cast(("A",), {"B": "joe"}, None, True)


def test_demo_casts_silas_masculine_and_dry_run_says_why():
    assert "SILAS" in read_transcript(DEMO).speakers
    result = run("dialogue", "--transcript", str(DEMO), "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    speakers = json.loads(result.stdout)["speakers"]
    assert speakers["SILAS"]["gender"] == MASCULINE and "old man called Silas" in speakers["SILAS"]["why"]
    assert speakers["MAYA"]["gender"] == FEMININE and "Maya" in speakers["MAYA"]["why"]
    assert len({s["voice"] for s in speakers.values()}) == len(speakers)


def test_a_project_description_decides(tmp_path):
    from higgs_cli.build import load_project

    (tmp_path / "one.txt").write_text("[ALEX] Nets are in.\n[SAM] Then we sail.\n", encoding="utf-8")
    (tmp_path / "book.yaml").write_text("chapters: [one.txt]\nspeakers:\n  alex: an old fisherman\n  SAM: she runs the harbour\n", encoding="utf-8")
    options = load_project(tmp_path / "book.yaml").options
    assert options.descriptions == {"ALEX": "an old fisherman", "SAM": "she runs the harbour"}
    result = cast(("ALEX", "SAM"), {}, None, True, "", options.descriptions)  # gender-guesser: Alex male, Sam mostly male
    assert gender_of(result.voices["ALEX"]) == MASCULINE and gender_of(result.voices["SAM"]) == FEMININE
    assert "she runs the harbour" in result.why["SAM"]
