"""Hostile and mistaken inputs against the surfaces added after the first trial (tests/test_hostile.py): book import,
script formats, the lexicon, `higgs check` and --retake-chunks, the speech server, `higgs model convert`.

Each test is one finding of that second trial (the table is in the README's "Guarantees"): a refusal with one line
naming the fix and nothing written, or a success that says what it did. Real files in temporary folders, the CLI
in-process, a real server on loopback.
"""

from __future__ import annotations

import json
import socket
import struct
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from higgs_cli.cli import app
from higgs_cli.errors import TranscriptError, UsageError

INPUTS = Path(__file__).resolve().parent / "fixtures" / "inputs"
MD_BOOK = INPUTS / "vibevoice_book_chapter.md"


def run(*args: str):
    return CliRunner().invoke(app, list(args))


def refused(result, fragment: str) -> None:
    """Exit 2, exactly one `error:` line holding `fragment`, no traceback or internal error."""
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert result.exit_code == 2, result.output
    assert len(errors) == 1 and fragment in " ".join(result.stderr.split()), result.stderr
    assert "Traceback" not in result.output and "internal error" not in result.output


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# --- higgs import ------------------------------------------------------------------------------------------------
def test_reimport_never_overwrites_the_users_edits(tmp_path):
    out = tmp_path / "proj"
    assert run("import", str(MD_BOOK), "-o", str(out), "-q").exit_code == 0
    assert run("import", str(MD_BOOK), "-o", str(out), "-q").exit_code == 0  # unchanged: a re-import is fine
    chapter = sorted((out / "chapters").iterdir())[0]
    chapter.write_text(chapter.read_text() + "\nMy own closing line.\n")
    (out / "book.yaml").write_text((out / "book.yaml").read_text().replace('engine: "auto"', 'engine: "espeak"'))
    before = tree(out)
    refused(run("import", str(MD_BOOK), "-o", str(out)), "was changed since `higgs import` wrote it")
    assert tree(out) == before
    forced = run("import", str(MD_BOOK), "-o", str(out), "-q", "--force")
    assert forced.exit_code == 0 and "My own closing line" not in chapter.read_text()


def test_a_failed_import_leaves_no_temp_file_and_no_half_project(tmp_path):
    out = tmp_path / "proj"
    (out / "chapters" / "01-chapter-1-arrival.txt").mkdir(parents=True)  # a folder where the first chapter goes
    refused(run("import", str(MD_BOOK), "-o", str(out)), "is in the way")
    assert [str(p.relative_to(out)) for p in out.rglob("*")] == ["chapters", "chapters/01-chapter-1-arrival.txt"]


def _lying_zip(path: Path, claimed: int) -> None:
    """A small EPUB whose central directory says one member unpacks to `claimed` bytes (as a zip bomb's does)."""
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("mimetype", "application/epub+zip")
        z.writestr("OEBPS/junk.css", b" " * 1000, compress_type=zipfile.ZIP_DEFLATED)
    data = bytearray(path.read_bytes())
    entry = data.rfind(b"PK\x01\x02")  # the last central directory record: junk.css
    data[entry + 24: entry + 28] = struct.pack("<I", claimed)
    path.write_bytes(bytes(data))


def test_a_zip_bomb_epub_is_refused_before_it_is_unpacked(tmp_path):
    bomb = tmp_path / "bomb.epub"
    _lying_zip(bomb, 0xF0000000)
    started = time.monotonic()
    refused(run("import", str(bomb), "-o", str(tmp_path / "out")), "zip bomb")
    assert time.monotonic() - started < 10 and not (tmp_path / "out").exists()


def test_markdown_front_matter_of_the_wrong_type_is_named(tmp_path):
    book = tmp_path / "b.md"
    book.write_text("---\ntitle: [a, b]\n---\n# One\n\nHello there.\n")
    refused(run("import", str(book), "-o", str(tmp_path / "out")), "front matter `title:` is list")


def test_square_brackets_in_book_prose_are_read_as_words_not_tags(tmp_path):
    book = tmp_path / "b.txt"
    book.write_text("Chapter 1\n\nHe wrote [sic] that. The SPEAKER said [SPEAKER3] hi. And [ a stray bracket.\n")
    result = run("import", str(book), "-o", str(tmp_path / "out"))
    assert result.exit_code == 0 and "read as text, not as tags" in result.stderr
    chapter = next((tmp_path / "out" / "chapters").iterdir())
    assert "He wrote (sic) that. The SPEAKER said (SPEAKER3) hi. And ( a stray bracket." in chapter.read_text()
    plan = run("generate", "-t", str(chapter), "--engine", "espeak", "--dry-run", "--json")
    assert plan.exit_code == 0, plan.output  # the chapter parses: no tag refused, no speaker switch
    doc = json.loads(plan.stdout)
    assert set(doc["speakers"]) == {"NARRATOR"} and "sic" in " ".join(c["text"] for c in doc["chunks"])
    md = tmp_path / "m.md"
    md.write_text('# One\n\nA pause <break time="1s"/> here [sic].\n\n# Two\n\nMore.\n')
    assert run("import", str(md), "-o", str(tmp_path / "md"), "-q").exit_code == 0
    assert "A pause [pause:1] here (sic)." in next((tmp_path / "md" / "chapters").iterdir()).read_text()


# --- the lexicon ---------------------------------------------------------------------------------------------------
def _lexicon(tmp_path: Path, name: str, text: str):
    from higgs_cli.lexicon import load

    path = tmp_path / name
    path.write_text(text)
    return load(path)


def test_a_lexicon_replacement_is_never_rewritten_by_another_entry(tmp_path):
    lex = _lexicon(tmp_path, "l.yaml", 'Nguyen: a win\na: ay\nUS: you ess\nus: uss\n"New York": noo york\nnew: nyoo\ncat: {ipa: /kat/}\n')
    text = "Nguyen, a cat. The US and us. New York is new. USA us_"
    assert lex.apply(text, "espeak") == "a win, ay cat. The you ess and uss. noo york is nyoo. USA us_"
    assert lex.apply(text, "piper") == "a win, ay [[kat]]. The you ess and uss. noo york is nyoo. USA us_"


@pytest.mark.parametrize(("name", "text", "fragment"), [
    ("dup.tsv", "cat\tdog\ncat\tmouse\n", "dup.tsv:2: 'cat' is already on line 1"),
    ("dup.yaml", "cat: dog\ncat: mouse\n", "line 2: 'cat' is already given on line 1"),
    ("br.yaml", 'cat: "[pause:abc]"\n', "cannot hold [ or ]"),
    ("ipa.yaml", 'Nguyen: {say: win, ipa: "/x]]y/"}\n', "cannot hold [ or ]"),
    ("yes.yaml", "yes: yeah\n", "a word was read by YAML as True"),
    ("hex.yaml", "0x10: sixteen\n", "a word was read by YAML as 16"),
    ("val.yaml", "cat: yes\n", "a replacement was read by YAML as True"),
])
def test_ambiguous_or_markup_lexicon_entries_are_refused(tmp_path, name, text, fragment):
    with pytest.raises(UsageError, match=fragment.replace("[", r"\[")):
        _lexicon(tmp_path, name, text)


def test_an_identical_duplicate_in_a_tsv_lexicon_is_fine(tmp_path):
    assert len(_lexicon(tmp_path, "l.tsv", "cat\tdog\ncat\tdog\n").entries) == 1


# --- script formats ------------------------------------------------------------------------------------------------
def test_json_fields_that_are_not_text_are_named_not_read_as_code():
    from higgs_cli.scripts import load

    with pytest.raises(TranscriptError, match=r"<text>:2: JSON field 'text' is list"):
        load('{"speaker": "a", "text": "Hello."}\n{"speaker": "b", "text": ["Hi", "there"]}')
    with pytest.raises(TranscriptError, match="JSON field 'speaker' is dict"):
        load('{"speaker": {"n": 1}, "text": "Hello."}')


def test_forced_higgs_format_on_another_format_warns_naming_the_line():
    from higgs_cli.scripts import load

    notes = load('{"speaker": "a", "text": "Hello."}\n{"speaker": "b", "text": "Hi."}', "higgs").notes
    assert [(n.line, n.kind) for n in notes] == [(1, "warning")] and "JSONL" in notes[0].message
    notes = load("[S1] Hello. [S2] Hi there.", "higgs").notes
    assert notes[0].kind == "warning" and "Dia" in notes[0].message


def test_text_that_is_not_valid_unicode_is_a_one_line_error():
    refused(run("generate", "--text", "Hi \udcff there.", "--engine", "espeak", "--dry-run"), "not valid Unicode (U+DCFF")


# --- higgs check and --retake-chunks ----------------------------------------------------------------------------------
@pytest.fixture
def render(tmp_path):
    """A 4 s file and the manifest a render of it would have written (two timed chunks)."""
    audio = tmp_path / "a.wav"
    sf.write(str(audio), (0.1 * np.sin(np.arange(96_000) / 24_000 * 2 * np.pi * 200)).astype(np.float32), 24_000)
    doc = {"version": 1, "duration": 4.0, "engine": "piper", "speakers": {"NARRATOR": {"voice": "joe"}},
           "chunks": [{"index": 0, "speaker": "NARRATOR", "text": "One.", "start": 0.1, "end": 1.9},
                      {"index": 1, "speaker": "NARRATOR", "text": "Two.", "start": 2.1, "end": 3.9}]}
    return audio, doc


@pytest.mark.parametrize(("edit", "fragment"), [
    (lambda d: d.update(duration=9.0), "it describes 9.00 s of audio but the file is 4.00 s"),
    (lambda d: d["chunks"][0].update(start=float("nan")), "chunk 0 runs from nan"),
    (lambda d: d["chunks"][0].update(start=3.0, end=1.0), "chunk 0 runs from 3.0 to 1.0"),
    (lambda d: d["chunks"][0].update(end=1e300), "chunk 0 runs from 0.1 to 1e+300"),
    (lambda d: d["chunks"][1].update(end="3.9"), "chunk 1 runs from 2.1 to '3.9'"),
])
def test_check_refuses_a_manifest_that_is_not_this_files(tmp_path, render, edit, fragment):
    audio, doc = render
    edit(doc)
    (tmp_path / "m.json").write_text(json.dumps(doc))
    refused(run("check", str(audio), "--manifest", str(tmp_path / "m.json")), fragment)


def test_check_reads_speakers_of_the_wrong_shape_without_failing():
    from higgs_cli.check import Expectations

    for speakers in ([1, 2], {"NARRATOR": "joe"}, {"NARRATOR": {"voice": ["x"]}}):
        assert Expectations({"engine": "piper", "speakers": speakers}).of({"speaker": "NARRATOR", "text": "Hi."}).text == "Hi."


def test_a_huge_retake_range_is_refused_at_once(tmp_path):
    from higgs_cli.cli_check import parse_chunks

    started = time.monotonic()
    with pytest.raises(UsageError, match="no job has 100000000000 chunks"):
        parse_chunks("0-99999999999")
    assert time.monotonic() - started < 1 and parse_chunks("3-5,17") == {3, 4, 5, 17}


# --- higgs model convert --------------------------------------------------------------------------------------------
def test_a_truncated_safetensors_file_is_named_not_a_traceback(tmp_path):
    pytest.importorskip("torch")
    from higgs_cli.conversion import _lm_state_dict

    (tmp_path / "model.safetensors").write_bytes(b"\x40\x00\x00\x00\x00\x00\x00\x00{\"a\": {\"dtype\": \"F32\", \"shape\": [4]")
    with pytest.raises(UsageError, match=r"model\.safetensors: damaged or incomplete weights file"):
        _lm_state_dict(tmp_path)


def test_convert_into_an_unwritable_place_or_without_a_tokenizer_is_one_line(tmp_path):
    pytest.importorskip("transformers")
    src = tmp_path / "orig"
    src.mkdir()
    (src / "config.json").write_text(json.dumps({"model_type": "higgs_audio", "audio_adapter_type": "dual_ffn_fast_forward",
                                                 "audio_dual_ffn_layers": [0], "text_config": {"num_hidden_layers": 1}}))
    (src / "model.safetensors").write_bytes(b"\x40\x00\x00\x00")  # truncated; no tokenizer files beside it
    refused(run("model", "convert", str(src), "/proc/self/x"), "cannot create it")
    refused(run("model", "convert", str(src), str(tmp_path / "out")), "no usable tokenizer")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["orig"]  # no temp copy left, no output


# --- the speech server --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def espeak_server(tmp_path_factory):
    pytest.importorskip("fastapi")
    from higgs_cli.options import ServeOptions
    from higgs_cli.serving import scheduler
    from tests.test_server import Server

    sched = scheduler("espeak", None, workers=1, max_running=4, max_waiting=8)
    sched.start()
    try:
        with Server(ServeOptions(engine="espeak", no_cache=True, timeout=60), sched) as s:
            yield s
    finally:
        sched.close()


@pytest.mark.parametrize(("body", "fragment"), [
    (b"[" * 100_000 + b"]" * 100_000, "not valid JSON"),
    (b'{"model": "tts-1", "voice": "joe", "input": "Hi \\ud800 there."}', "not valid Unicode"),
    (b'{"model": "tts-1", "voice": "joe", "input": "[music: /etc/hostname] Hi there."}', "cues are not taken by the server"),
    (b'{"model": "tts-1", "voice": "joe", "input": "[pause:600] [pause:600] Hi."}', "add up to more than 60 s"),
    (json.dumps({"model": "tts-1", "voice": "joe", "input": "Hi.", "instructions": "x" * 100_000}).encode(), "instructions is 100000"),
])
def test_server_refuses_hostile_bodies_with_400(espeak_server, body, fragment):
    reply = espeak_server.post(body, key=None)
    assert reply.status_code == 400 and fragment in reply.json()["error"]["message"], reply.text


def test_concurrent_uploads_of_one_voice_name_store_one_whole_voice(espeak_server, tmp_path, monkeypatch):
    import httpx

    monkeypatch.setenv("HIGGS_VOICES_DIR", str(tmp_path / "voices"))
    clips = []
    for i in range(6):  # clip i lasts 3.5 + 0.5 i seconds, so the stored clip says which upload it came from
        t = np.arange(round((3.5 + 0.5 * i) * 24_000)) / 24_000
        clips.append((0.3 * np.sin(2 * np.pi * 220 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(np.float32))
        sf.write(str(tmp_path / f"c{i}.wav"), clips[-1], 24_000)

    def upload(i: int) -> int:
        with open(tmp_path / f"c{i}.wav", "rb") as f:
            return httpx.post(f"{espeak_server.url}/v1/audio/voices", files={"audio_sample": ("c.wav", f, "audio/wav")},
                              data={"name": "racer", "transcript": f"Upload number {i} said this."}, timeout=60).status_code

    with ThreadPoolExecutor(6) as pool:
        codes = list(pool.map(upload, range(6)))
    assert sorted(codes) == [201] + [409] * 5, codes
    winner = codes.index(201)
    stored, rate = sf.read(str(tmp_path / "voices" / "racer.wav"))
    assert abs(len(stored) / rate - (3.5 + 0.5 * winner)) < 0.3
    assert (tmp_path / "voices" / "racer.txt").read_text().strip() == f"Upload number {winner} said this."


def test_a_client_gone_before_the_stream_starts_leaves_no_folder_and_no_job(espeak_server, tmp_path, monkeypatch):
    import tempfile

    import httpx

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    host, port = espeak_server.url.removeprefix("http://").split(":")
    for fmt in ("audio", "sse", None):
        body = json.dumps({"model": "tts-1", "voice": "joe", "input": "The ferry waited in the harbour. " * 40,
                           "response_format": "wav", "stream_format": fmt}).encode()
        with socket.create_connection((host, int(port))) as s:
            s.sendall(b"POST /v1/audio/speech HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Content-Length: %d\r\n\r\n" % len(body) + body)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (httpx.get(f"{espeak_server.url}/health").json()["running"]
                                           or list(tmp_path.glob("higgs-serve-*"))):
        time.sleep(0.2)
    assert httpx.get(f"{espeak_server.url}/health").json()["running"] == 0
    assert not list(tmp_path.glob("higgs-serve-*"))


# --- text cleaning and book projects ----------------------------------------------------------------------------------
def test_numbers_past_what_words_can_say_exactly_are_left_as_written():
    from higgs_cli.textclean import numbers_to_words

    assert numbers_to_words("Price $99999999999999999999999999.99 now.") == "Price $99999999999999999999999999.99 now."
    assert numbers_to_words("Also 1234567890123456789.5 here.") == "Also 1234567890123456789.5 here."
    assert numbers_to_words("Price $12.50 now.") == "Price twelve dollars fifty cents now."


def test_an_empty_ssml_alias_reads_the_text_with_a_warning():
    from higgs_cli.textclean import clean_text

    text, notes = clean_text('Ask the <sub alias="">WHO</sub> today.')
    assert "WHO" in text and any(n.kind == "warning" and "alias" in n.message for n in notes)


def test_a_speaker_description_that_is_not_text_is_named(tmp_path):
    (tmp_path / "ch1.txt").write_text("[A] Hello there.\n")
    (tmp_path / "book.yaml").write_text("engine: espeak\nchapters: [ch1.txt]\nspeakers: {A: [1, 2]}\n")
    refused(run("build", str(tmp_path / "book.yaml")), "speakers: A: give a description as text")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["book.yaml", "ch1.txt"]


def test_a_bad_voice_name_in_an_upload_is_blamed_on_the_name(espeak_server, tmp_path, monkeypatch):
    import httpx

    monkeypatch.setenv("HIGGS_VOICES_DIR", str(tmp_path / "voices"))
    sf.write(str(tmp_path / "c.wav"), np.zeros(24_000 * 4, dtype=np.float32), 24_000)
    for name in ("../evil", "joe"):
        with open(tmp_path / "c.wav", "rb") as f:
            reply = httpx.post(f"{espeak_server.url}/v1/audio/voices", files={"audio_sample": ("c.wav", f, "audio/wav")},
                               data={"name": name, "transcript": "Hello there."}, timeout=60)
        assert reply.status_code == 400 and reply.json()["error"]["param"] == "name", reply.text
    assert not (tmp_path / "voices").exists() or not list((tmp_path / "voices").iterdir())


@pytest.mark.parametrize("doc", ['{"kept": "x", "takes": 5}', '{"take": "x", "last": -1}', '{"passed": true, "reasons": 5}', "[]", "{"])
def test_damaged_take_records_are_treated_as_missing(tmp_path, doc):
    from higgs_cli.takes import RECORDS, Record, TakeStore

    key = "ab" + "0" * 62
    folder = tmp_path / RECORDS / key[:2]
    folder.mkdir(parents=True)
    (folder / f"{key}-pick.json").write_text(doc)
    (folder / f"{key}-take1.json").write_text(doc)
    store = TakeStore(tmp_path)
    assert store.record(key) == Record() and store.verdict(key, "take1") is None


def test_an_epub_with_a_gif_cover_imports_to_a_project_build_takes(tmp_path):
    from higgs_cli.build import load_project

    gif = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
    book = tmp_path / "gif.epub"
    with zipfile.ZipFile(INPUTS / "gutenberg_alice_11.epub") as src, zipfile.ZipFile(book, "w") as dst:
        for info in src.infolist():
            name, data = info.filename, src.read(info)
            if name.endswith("content.opf"):
                data = data.replace(b'7472141559003928249_cover.jpg" id="id-758154795238262325" media-type="image/jpeg"',
                                    b'cover.gif" id="id-758154795238262325" media-type="image/gif"')
            if name.endswith("_cover.jpg"):
                name, data = "OEBPS/cover.gif", gif
            dst.writestr(zipfile.ZipInfo(name, info.date_time), data,
                         compress_type=zipfile.ZIP_STORED if name == "mimetype" else zipfile.ZIP_DEFLATED)
    result = run("import", str(book), "-o", str(tmp_path / "out"))
    assert result.exit_code == 0 and "is not a JPEG or PNG, so it is not used" in " ".join(result.stderr.split())
    assert load_project(tmp_path / "out" / "book.yaml").options.finish.cover is None  # the build takes the project as written


def test_serve_on_a_port_in_use_or_a_bad_host_is_refused_before_the_engine_loads():
    import subprocess
    import sys

    pytest.importorskip("uvicorn")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for args, fragment in ((["--port", str(port)], "is already in use"), (["--host", "256.1.1.1", "--api-key", "k"], "not an address")):
            proc = subprocess.run([sys.executable, "-m", "higgs_cli", "serve", "--engine", "espeak", *args], capture_output=True,
                                  text=True, timeout=120)
            assert proc.returncode == 2 and fragment in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


@pytest.mark.parametrize(("text", "warned"), [('Wait <break time="1s" then.', True), ('Wait <breaktime="1s"/> then.', True),
                                              ('Wait <break time="1s"/> then.', False), ("If a < b and c > d then.", False)])
def test_a_broken_ssml_tag_that_would_be_spoken_is_warned(text, warned):
    from higgs_cli.textclean import clean_text

    _, notes = clean_text(text)
    assert any(n.kind == "warning" and "cannot read, so it is spoken" in n.message for n in notes) == warned
