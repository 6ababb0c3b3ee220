"""Hostile and mistaken inputs, table-driven: the real CLI in a subprocess per case, two at a time.

Every case ends in a clear refusal (exit 2 or 1, exactly one `error:` line, nothing written) or in a
success that says what it did about the problem (exit 0 and a `warning:`). No case may print a
traceback or "internal error", and no case may leave a temp file behind. Most cases stop at
validation, so the table stays fast; the few that render use a few words on a CPU engine.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
REFUSED, OK = 2, 0


def tone(path: Path, seconds: float = 4.0, rate: int = 24_000, channels: int = 1, peak: float = 0.5) -> None:
    t = np.arange(round(seconds * rate)) / rate
    wave = (peak * np.sin(2 * np.pi * 220 * t) * (1 + 0.3 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    sf.write(str(path), np.stack([wave] * channels, axis=1) if channels > 1 else wave, rate)


def clipped(path: Path) -> None:
    tone(path, peak=3.0, channels=2, rate=8000)  # clipped, stereo and telephone-band at once


def noisy_mp3(path: Path) -> None:
    """White noise with clicks, as mp3: libmpg123 complains on stderr while decoding it correctly."""
    rng = np.random.default_rng(0)
    x = (0.3 * rng.standard_normal(24_000 * 6)).astype(np.float32)
    x[::5000] = 1.0
    sf.write(str(path), x, 24_000)


def bomb() -> str:
    lines = ["l0: &l0 [" + ", ".join(["x"] * 9) + "]"]
    lines += [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, 9)]
    return "\n".join(lines) + "\n"


def book(**fields: str) -> str:
    base = {"chapters": "[ch1.txt]", "engine": "espeak"}
    base.update(fields)
    return "".join(f"{k}: {v}\n" for k, v in base.items())


@dataclass
class Case:
    name: str
    args: list[str]  # "{w}" is the case's work folder
    code: int
    says: str  # a fragment the stderr must hold (the error line, or a warning)
    files: dict[str, str | bytes | Callable[[Path], None]] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    writes: tuple[str, ...] = ()  # files the case may create in the work folder (beyond those it was given)
    stdin: str | None = None


T = {"t.txt": "[SPEAKER0] Hello there.\n"}
GEN = ["generate", "-t", "{w}/t.txt", "--engine", "piper"]
DRY = [*GEN, "--dry-run"]
CASES = [
    # --- 1. data loss ----------------------------------------------------------------------------
    Case("transcript-is-output", ["generate", "-t", "{w}/same.wav", "-o", "{w}/same.wav", "-e", "piper"], REFUSED, "is also the transcript",
         {"same.wav": "Hello there.\n"}),
    Case("music-is-output", [*GEN, "--music", "{w}/bed.wav", "-o", "{w}/bed.wav"], REFUSED, "is also the --music file", {**T, "bed.wav": tone}),
    Case("subtitles-is-transcript", ["generate", "-t", "{w}/t.srt", "-o", "{w}/o.wav", "--subtitles", "{w}/t.srt", "-e", "piper"], REFUSED,
         "subtitles file is also the transcript", {"t.srt": "Hello there.\n"}),
    Case("book-output-is-chapter-audio", ["build", "{w}/book.yaml"], REFUSED, "is also a chapter's audio file",
         {"ch2.txt": "Two.\n", "ch3.txt": "Three.\n", "book.yaml": book(chapters="[ch2.txt, ch3.txt]", output="ch2.wav", build_dir=".")}),
    Case("chapters-collide", ["build", "{w}/book.yaml"], REFUSED, "would both be built as",
         {"a/ch.txt": "One.\n", "b/ch.txt": "Two.\n", "book.yaml": book(chapters="[a/ch.txt, b/ch.txt]")}),
    Case("book-output-is-project-file", ["build", "{w}/book.yaml"], REFUSED, "the project file",
         {"ch1.txt": "One.\n", "book.yaml": book(output="book.yaml", build_dir=".")}),
    Case("bind-onto-its-input", ["bind", "{w}/a.wav", "{w}/b.wav", "-o", "{w}/a.wav"], REFUSED, "is also the chapter file",
         {"a.wav": tone, "b.wav": tone}),
    Case("voices-add-over-bundled", ["voices", "add", "joe", "-a", "{w}/c.wav", "--text", "Hello."], REFUSED, "bundled voice",
         {"c.wav": tone}),
    # --- 3. wrong audio with exit 0 --------------------------------------------------------------
    Case("unclosed-speaker-tag", DRY, REFUSED, "t.txt:2: tag '[SPEAKER1 Hi", {"t.txt": "[SPEAKER0] Hello.\n[SPEAKER1 Hi there\n"}),
    Case("nested-tag", DRY, REFUSED, "not closed before the next", {"t.txt": "Hello [[laugh] there.\n"}),
    Case("pause-abc", DRY, REFUSED, "[pause:abc] is not a pause", {"t.txt": "Hello [pause:abc] there.\n"}),
    Case("pause-negative", DRY, REFUSED, "[pause:-1] is not a pause", {"t.txt": "Hello [pause:-1] there.\n"}),
    Case("pause-exponent", DRY, REFUSED, "[pause:1e9] is not a pause", {"t.txt": "Hello [pause:1e9] there.\n"}),
    Case("pause-nan", DRY, REFUSED, "[pause:nan] is not a pause", {"t.txt": "Hello [pause:nan] there.\n"}),
    Case("pause-too-long", DRY, REFUSED, "longer than 600 s", {"t.txt": "Hello [pause:9999] there.\n"}),
    Case("music-cue-missing", [*GEN, "-o", "{w}/o.wav"], REFUSED, "t.txt:1: [music: bedd.ogg]",
         {"t.txt": "[music: bedd.ogg] Hello there.\n"}),
    Case("music-cue-not-audio", [*GEN, "-o", "{w}/o.wav"], REFUSED, "not a readable audio file",
         {"t.txt": "[music: notes.txt] Hello there.\n", "notes.txt": "la la la\n"}),
    Case("music-cue-empty", DRY, REFUSED, "names no file", {"t.txt": "Hello [music: ] there.\n"}),
    Case("endless-word", DRY, REFUSED, "300-character word", {"t.txt": "Hello " + "a" * 300 + " there.\n"}),
    Case("long-word-warned", DRY, OK, "t.txt:1: warning: a 60-character word", {"t.txt": "Hello " + "b" * 60 + " there.\n"}),
    Case("url-not-a-word", DRY, OK, "", {"t.txt": "See https://example.com/" + "c" * 80 + " today.\n"}),
    Case("voice-empty", [*DRY, "--voice", ""], REFUSED, "--voice is empty", T),
    Case("voice-not-audio", [*DRY, "--voice", "/etc/passwd"], REFUSED, "not a readable audio file", T),
    Case("voice-empty-file", [*DRY, "--voice", "{w}/empty.wav"], REFUSED, "not a readable audio file", {**T, "empty.wav": b""}),
    Case("clip-on-cpu-engine", [*DRY, "--voice", "{w}/me.wav"], OK, "cannot clone voices", {**T, "me.wav": tone}),
    Case("voice-maps-unknown-speaker", [*DRY, "--voice", "SPEAKER7=joe"], REFUSED, "not in the transcript", T),
    # --- 4. checked before rendering ---------------------------------------------------------------
    Case("music-not-audio", [*GEN, "-o", "{w}/o.wav", "--music", "{w}/m.mp3"], REFUSED, "not a readable audio file",
         {**T, "m.mp3": "not music\n"}),
    Case("music-missing", [*GEN, "-o", "{w}/o.wav", "--music", "{w}/nope.wav"], REFUSED, "not found", T),
    Case("music-too-short", [*GEN, "-o", "{w}/o.wav", "--music", "{w}/blip.wav"], REFUSED, "at least 1 s",
         {**T, "blip.wav": lambda p: tone(p, 0.2)}),
    Case("stems-onto-file", [*GEN, "-o", "{w}/o.wav", "--stems", "{w}/taken.txt"], REFUSED, "exists and is not a folder",
         {**T, "taken.txt": "mine\n"}),
    Case("subtitles-missing-folder", [*GEN, "-o", "{w}/o.wav", "--subtitles", "{w}/nope/o.srt"], REFUSED, "does not exist", T),
    Case("subtitles-read-only", [*GEN, "-o", "{w}/o.wav", "--subtitles", "/proc/self/o.srt"], REFUSED, "permission denied", T),
    Case("subtitles-is-folder", [*GEN, "-o", "{w}/o.wav", "--subtitles", "{w}"], REFUSED, "is a directory", T),
    Case("book-title-list", ["build", "{w}/book.yaml"], REFUSED, "`title:` is list", {"ch1.txt": "One.\n", "book.yaml": book(title="[a, b]")}),
    Case("book-seed-bool", ["build", "{w}/book.yaml"], REFUSED, "`seed:` is bool", {"ch1.txt": "One.\n", "book.yaml": book(seed="yes")}),
    Case("book-voices-list", ["build", "{w}/book.yaml"], REFUSED, "`voices:` is list", {"ch1.txt": "One.\n", "book.yaml": book(voices="[joe]")}),
    Case("book-negative-pause", ["build", "{w}/book.yaml"], REFUSED, "pauses: chapter", {"ch1.txt": "One.\n", "book.yaml": book(pauses="{chapter: -1}")}),
    Case("book-music-missing", ["build", "{w}/book.yaml"], REFUSED, "music file not found", {"ch1.txt": "One.\n", "book.yaml": book(music="bed.ogg")}),
    Case("book-cover-not-image", ["build", "{w}/book.yaml"], REFUSED, "not a JPEG or PNG",
         {"ch1.txt": "One.\n", "cover.jpg": "text\n", "book.yaml": book(cover="cover.jpg")}),
    Case("book-higgs-type", ["build", "{w}/book.yaml"], REFUSED, "higgs", {"ch1.txt": "One.\n", "book.yaml": book(higgs="{temperature: hot}")}),
    Case("book-engine-unknown", ["build", "{w}/book.yaml"], REFUSED, "engine 'banana'", {"ch1.txt": "One.\n", "book.yaml": book(engine="banana")}),
    Case("book-chapter-missing", ["build", "{w}/book.yaml"], REFUSED, "book.yaml: chapter file", {"book.yaml": book(chapters="[ch9.txt]")}),
    Case("book-alias-bomb", ["build", "{w}/book.yaml"], REFUSED, "expands to more than", {"book.yaml": "chapters: [ch1.txt]\nhiggs:\n  " + bomb().replace("\n", "\n  ")}),
    Case("book-cue-missing-before-any-chapter", ["build", "{w}/book.yaml"], REFUSED, "ch2.txt:1: [music: gone.ogg]",
         {"ch1.txt": "One.\n", "ch2.txt": "[music: gone.ogg] Two.\n", "book.yaml": book(chapters="[ch1.txt, ch2.txt]")}),
    # --- 5. named errors instead of "internal error" ----------------------------------------------
    Case("output-dev-full", [*GEN, "-o", "/dev/full"], REFUSED, "not a regular file", T),
    Case("output-is-folder", [*GEN, "-o", "{w}"], REFUSED, "is a directory", T),
    Case("output-read-only-folder", [*GEN, "-o", "/proc/self/o.wav"], REFUSED, "permission denied", T),
    Case("cache-is-file", [*GEN, "-o", "{w}/o.wav", "--cache", "{w}/c"], REFUSED, "is a file, not a folder", {**T, "c": "x"}),
    Case("default-cache-is-file", DRY, OK, "rendering without the cache", {**T, "c": "x"}, env={"HIGGS_CACHE_DIR": "{w}/c"}),
    Case("read-only-home", DRY, OK, "rendering without the cache", T, env={"HIGGS_CACHE_DIR": "", "XDG_CACHE_HOME": "", "HOME": "/proc/self"}),
    Case("profile-tilt-abc", [*DRY, "--voice", "pal"], REFUSED, "tilt: 'abc' must be a number",
         {**T, "voices/pal.yaml": "engines: {piper: {tilt: abc}}\n"}),
    Case("profile-formant-huge", [*DRY, "--voice", "pal"], REFUSED, "formant: 1000000000.0 must be a number from 0.9",
         {**T, "voices/pal.yaml": "engines: {piper: {formant: 1.0e+9}}\n"}),
    Case("profile-description-list", [*DRY, "--voice", "pal"], REFUSED, "`description:` is list",
         {**T, "voices/pal.yaml": "description: [a]\n"}),
    Case("bind-text-file", ["bind", "{w}/t.txt", "-o", "{w}/b.wav"], REFUSED, "not a readable audio file", T),
    Case("inspect-png-read-only", ["inspect", "{w}/a.wav", "--png", "/proc/self/x.png"], REFUSED, "permission denied", {"a.wav": tone}),
    Case("inspect-wrong-manifest", ["inspect", "{w}/a.wav", "--manifest", "{w}/m.json"], REFUSED, "describes 99.00 s",
         {"a.wav": tone, "m.json": '{"duration": 99.0, "chunks": []}'}),
    Case("inspect-missing", ["inspect", "{w}/nope.wav"], REFUSED, "not found", {}),
    # --- 6. voice profiles -----------------------------------------------------------------------
    Case("list-skips-bad-profile", ["voices", "list"], OK, "voice 'bad' skipped", {"voices/bad.yaml": "engines: [\n"}),
    Case("show-alias-bomb", ["voices", "show", "boom", "--json"], REFUSED, "expands to more than", {"voices/boom.yaml": bomb()}),
    Case("add-into-read-only-library", ["voices", "add", "pal", "-a", "{w}/c.wav", "--text", "Hello."], REFUSED,
         "cannot write the voice library", {"c.wav": tone}, env={"HIGGS_VOICES_DIR": "/proc/self/voices"}),
    Case("add-reports-clip-problems", ["voices", "add", "pal", "-a", "{w}/bad.wav", "--text", "Hello."], OK, "8000 Hz",
         {"bad.wav": clipped}),
    # --- 7. misleading messages --------------------------------------------------------------------
    Case("utf16-with-bom-is-read", DRY, OK, "", {"t.txt": "[SPEAKER0] Hello there.\n".encode("utf-16")}),
    Case("utf16-without-bom-is-named", DRY, REFUSED, "UTF-16 text without a byte-order mark", {"t.txt": "[SPEAKER0] Hello.\n".encode("utf-16-le")}),
    Case("mp3-decoder-chatter-hidden", ["inspect", "{w}/n.mp3"], OK, "", {"n.mp3": noisy_mp3}),
    Case("binary-transcript", DRY, REFUSED, "binary file", {"t.txt": b"\x7fELF\x00\x01\x02" * 50}),
    Case("empty-transcript", DRY, REFUSED, "no text", {"t.txt": "\n\n"}),
    Case("stdin-transcript-bad-pause", ["generate", "-t", "-", "--dry-run", "-e", "piper"], REFUSED, "<stdin>:1: [pause:x]", {}, stdin="Hi [pause:x].\n"),
    # --- 8. over-subscription ----------------------------------------------------------------------
    Case("jobs-capped", [*DRY, "--jobs", "100000"], OK, "CPU cores here", T),
    # --- options that were already checked: they must stay one clear line -------------------------
    Case("loudness-unknown", [*GEN, "-o", "{w}/o.wav", "--loudness", "loud"], REFUSED, "unknown loudness", T),
    Case("max-silence-zero", [*GEN, "-o", "{w}/o.wav", "--max-silence", "0"], REFUSED, "--max-silence", T),
    Case("no-output", GEN, REFUSED, "no output file", T),
    # --- a few real renders: the successes must really succeed ----------------------------------------
    Case("renders-with-a-warning", ["generate", "--text", "Hi " + "d" * 55 + ".", "-o", "{w}/o.wav", "--engine", "espeak", "--no-cache"],
         OK, "-character word", {}, writes=("o.wav",)),
    Case("mp3-output-is-quiet", ["generate", "--text", "Hello.", "-o", "{w}/o.mp3", "--engine", "espeak", "--no-cache"], OK, "", {},
         writes=("o.mp3",)),
]


def _prepare(work: Path, case: Case) -> None:
    for name, content in case.files.items():
        path = work / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if callable(content):
            content(path)
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _run(tmp: Path, case: Case) -> tuple[Case, subprocess.CompletedProcess, dict[str, bytes], dict[str, bytes], Path]:
    work = tmp / case.name
    work.mkdir()
    _prepare(work, case)
    before = _snapshot(work)
    env = {**os.environ, "HIGGS_VOICES_DIR": str(work / "voices"), "HIGGS_CACHE_DIR": str(tmp / "cache"), "NO_COLOR": "1",
           "COLUMNS": "400", **{k: v.replace("{w}", str(work)) for k, v in case.env.items()}}
    args = [a.replace("{w}", str(work)) for a in case.args]
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "higgs_cli", *args], cwd=work, env=env, input=case.stdin,
                          capture_output=True, text=True, timeout=240)
    if os.environ.get("HOSTILE_TIMES"):
        print(f"{time.monotonic() - started:6.2f} s  {case.name}", file=sys.stderr)
    return case, proc, before, _snapshot(work), work


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hostile")
    with ThreadPoolExecutor(2) as pool:
        return {case.name: result for case, *result in pool.map(lambda c: _run(tmp, c), CASES)}


def test_the_table_is_big_enough():
    assert len(CASES) >= 50 and len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_input(case, outcomes):
    proc, before, after, work = outcomes[case.name]
    stderr = " ".join(proc.stderr.split())  # rich may wrap long lines
    assert proc.returncode == case.code, proc.stderr
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr, proc.stderr
    assert case.says in stderr, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    if case.code == OK:
        assert not errors, proc.stderr
    else:
        assert len(errors) == 1, proc.stderr
    assert "[src/libmpg123" not in proc.stderr
    changed = {name for name in before if after.get(name) != before[name]}
    assert not changed, f"changed or removed: {changed}"  # no input is ever overwritten
    new = set(after) - set(before)
    assert not [n for n in new if Path(n).name.startswith(".")], f"temp files left: {new}"
    allowed = set(case.writes) | ({n for n in new if n.startswith("voices/")} if case.code == OK else set())
    assert new <= allowed, f"unexpected files written: {new - allowed}"
    for name in case.writes:
        assert name in after and sf.info(str(work / name)).duration > 0.1
