"""The voice library: resolve names and paths to Voice(clip, transcript, profile); add, remove (casting: cast.py).

A voice is a flat trio in a voices folder: `NAME.wav` (reference clip), `NAME.txt` (its exact
transcript) and an optional `NAME.yaml` profile (description, language, gender, and per-engine
settings under `engines:` so that one name works on every engine). Folders searched, in order:
the user's (`$HIGGS_VOICES_DIR`, else `$XDG_DATA_HOME/higgs/voices`) and the bundled `voices/`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import VoiceError
from .options import BUNDLED_VOICES_DIR, SAMPLE_RATE, VOICE_MAX_SECONDS, VOICE_MIN_SECONDS

if TYPE_CHECKING:
    from collections.abc import Iterator

    import numpy as np

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_AUDIO_EXTS = (".wav", ".flac", ".ogg", ".mp3")


@dataclass(frozen=True)
class Voice:
    """A named voice: reference clip and transcript (optional for CPU engines) plus its profile."""

    name: str
    source: str  # "bundled", "user", "path" or "auto"
    clip: Path | None = None
    transcript: str | None = None
    description: str | None = None
    gender: str | None = None
    language: str = "en"
    engines: dict = field(default_factory=dict, hash=False, compare=False)

    def settings(self, engine: str) -> dict:
        """This voice's settings for one engine (empty when the profile says nothing)."""
        return dict(self.engines.get(engine) or {})


def user_voices_dir() -> Path:
    if os.environ.get("HIGGS_VOICES_DIR"):
        return Path(os.environ["HIGGS_VOICES_DIR"])
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "higgs" / "voices"


def check_name(name: str) -> str:
    """Voice names are plain slugs so they can never escape their folder."""
    if not _NAME.match(name):
        raise VoiceError(f"invalid voice name {name!r}; use lower-case letters, digits, '-' and '_' (max 64)")
    return name


def _load_profile(path: Path) -> dict:
    from .yamlsafe import YamlError, read_yaml

    try:
        data = read_yaml(path) or {}
    except YamlError as e:
        raise VoiceError(f"unreadable voice profile: {e}") from e
    if not isinstance(data, dict):
        raise VoiceError(f"{path}: a voice profile must be a YAML mapping (description:, gender:, engines:)")
    return data


def _check_profile(path: Path, data: dict) -> None:
    """Types of a profile's fields: text where text is meant, `engines:` a mapping of mappings."""
    for key in ("description", "gender", "language"):
        if data.get(key) is not None and not isinstance(data[key], str):
            raise VoiceError(f"{path}: `{key}:` is {type(data[key]).__name__}; write it as text")
    engines = data.get("engines")
    if engines is not None and not (isinstance(engines, dict) and all(isinstance(v, dict | None) for v in engines.values())):
        raise VoiceError(f"{path}: `engines:` must map engine names to settings, e.g. engines: {{piper: {{pitch: 1.1}}}}")


def _voice_from_files(name: str, source: str, clip: Path | None, folder: Path) -> Voice:
    txt, yml = folder / f"{name}.txt", folder / f"{name}.yaml"
    profile = _load_profile(yml) if yml.is_file() else {}
    _check_profile(yml, profile)
    try:
        transcript = txt.read_text(encoding="utf-8").strip() if txt.is_file() else None
    except (OSError, UnicodeDecodeError) as e:
        raise VoiceError(f"{txt}: the clip's transcript cannot be read ({e.__class__.__name__}); save it as UTF-8 text") from e
    return Voice(
        name=name, source=source, clip=clip, transcript=transcript or None,
        description=profile.get("description"), gender=profile.get("gender"),
        language=profile.get("language", "en"), engines=profile.get("engines") or {},
    )


def _in_folder(name: str, folder: Path, source: str) -> Voice | None:
    clip = folder / f"{name}.wav"
    if clip.is_file() or (folder / f"{name}.yaml").is_file():
        return _voice_from_files(name, source, clip if clip.is_file() else None, folder)
    return None


def library(problems: list[str] | None = None) -> list[Voice]:
    """Every voice in the user and bundled folders (a user voice hides a bundled one of that name).

    A voice whose files cannot be read is skipped, so one broken profile never hides the others;
    its one-line reason is appended to `problems` when a list is given.
    """
    seen: dict[str, Voice] = {}
    broken: set[str] = set()
    for folder, source in ((user_voices_dir(), "user"), (BUNDLED_VOICES_DIR, "bundled")):
        try:
            entries = sorted(folder.iterdir()) if folder.is_dir() else []
        except OSError as e:
            if problems is not None:
                problems.append(f"{folder}: cannot list the voices folder ({e.strerror}); check its permissions")
            continue
        for entry in entries:
            if entry.suffix in (".wav", ".yaml") and _NAME.match(entry.stem) and entry.stem not in seen and entry.stem not in broken:
                try:
                    voice = _in_folder(entry.stem, folder, source)
                except (VoiceError, OSError, UnicodeDecodeError) as e:
                    broken.add(entry.stem)
                    if problems is not None:
                        problems.append(f"voice {entry.stem!r} skipped: {e}")
                    continue
                if voice:
                    seen[entry.stem] = voice
    return sorted(seen.values(), key=lambda v: v.name)


def resolve(spec: str) -> Voice:
    """A voice by library name, or by path to a clip (with optional sibling .txt/.yaml)."""
    if not spec.strip():
        raise VoiceError("the voice is empty; give a voice name (see `higgs voices list`) or a clip path")
    if "/" in spec or spec.lower().endswith(_AUDIO_EXTS):
        clip = Path(spec).expanduser()
        if not clip.is_file():
            raise VoiceError(f"voice clip {spec} not found; give an existing audio file or a voice name")
        check_clip_readable(clip)
        return _voice_from_files(clip.stem, "path", clip, clip.parent)
    check_name(spec)
    for folder, source in ((user_voices_dir(), "user"), (BUNDLED_VOICES_DIR, "bundled")):
        voice = _in_folder(spec, folder, source)
        if voice:
            return voice
    names = ", ".join(v.name for v in library()) or "(none)"
    raise VoiceError(f"unknown voice {spec!r}; known voices: {names} (see `higgs voices list`)")


def check_clip_readable(clip: Path) -> None:
    """A voice clip must be audio with samples in it (a text file or an empty file named .wav is a mistake)."""
    import soundfile as sf

    from .audio import decoder_quiet

    try:
        with decoder_quiet(clip):
            info = sf.info(str(clip))
    except (sf.LibsndfileError, RuntimeError, OSError) as e:
        raise VoiceError(f"voice clip {clip} is not a readable audio file; give a wav, flac, ogg or mp3 recording") from e
    if info.frames <= 0:
        raise VoiceError(f"voice clip {clip} holds no audio; give a recording of 3-30 s of speech")


def auto_voice(k: int) -> Voice:
    """The k-th synthetic voice for casts larger than the library: a pitch/formant/tilt variant of piper's joe.

    Speaker-embedding distance comes mostly from formant and spectral tilt, and intelligibility
    bounds formants to about 0.95-1.32, so that plane holds only so many voices: the six below sit
    in its corners; from the seventh on they repeat with another pitch
    (audibly different, but close to an earlier variant by embedding).
    """
    shapes = ((1.22, -7.0, 1.2), (0.96, 3.0, 0.8), (1.32, -2.0, 1.6), (1.1, 8.0, 1.1), (1.18, 2.0, 1.35), (1.0, -3.0, 0.9))
    variants = ("en-us+m2", "en-us+f2", "en+m4", "en-us+f5", "en+m6", "en-us+f1")
    formant, tilt, pitch = shapes[k % len(shapes)]
    pitch *= 1 + 0.08 * (k // len(shapes))
    return Voice(
        name=f"auto-{k + 1}", source="auto", description="automatic voice variant",
        engines={"piper": {"pitch": round(pitch, 3), "formant": formant, "tilt": tilt}, "espeak": {"voice": variants[k % len(variants)]}},
    )


def prepare_clip(path: Path) -> tuple[np.ndarray, int]:
    """Read a clip, make it mono at the library rate and trim its silence; check its length."""
    from .audio import read_audio, resample, trim_silence

    audio, rate = read_audio(path)
    audio = trim_silence(resample(audio, rate, SAMPLE_RATE), SAMPLE_RATE)
    seconds = len(audio) / SAMPLE_RATE
    if seconds < VOICE_MIN_SECONDS or seconds > VOICE_MAX_SECONDS:
        raise VoiceError(
            f"{path}: clip is {seconds:.1f} s of speech after trimming silence; "
            f"give {VOICE_MIN_SECONDS:.0f}-{VOICE_MAX_SECONDS:.0f} s of clean speech"
        )
    peak = float(abs(audio).max())
    if peak < 1e-3:
        raise VoiceError(f"{path}: clip is silent; record some speech")
    return audio * (0.9 / peak) if peak > 0.9 else audio, SAMPLE_RATE


def add(name: str, clip: Path, text: str | None, *, description: str | None = None,
        gender: str | None = None, language: str = "en", force: bool = False) -> Voice:
    """Validate and normalise a clip and store it as a user voice."""
    import yaml

    from .audio import write_audio

    check_name(name)
    folder = user_voices_dir()
    _check_new(name, folder, force)
    if text is not None and not text.strip():
        raise VoiceError("--text is empty; give the exact words spoken in the clip")
    audio, rate = prepare_clip(clip)
    profile = {k: v for k, v in {"description": description, "gender": gender, "language": language}.items() if v}
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with _library_lock(folder):  # two adds of one name at once: one wins whole, never one's clip with the other's text
            _check_new(name, folder, force)
            if text:
                _write_text(folder / f"{name}.txt", text.strip() + "\n")
            _write_text(folder / f"{name}.yaml", yaml.safe_dump(profile, sort_keys=False, allow_unicode=True))
            write_audio(folder / f"{name}.wav", audio, rate)
    except OSError as e:
        raise VoiceError(f"cannot write the voice library {folder} ({e.strerror}); "
                         "set HIGGS_VOICES_DIR to a writable folder") from e
    return resolve(name)


def _check_new(name: str, folder: Path, force: bool) -> None:
    if not force and (folder / f"{name}.wav").exists():
        raise VoiceError(f"voice {name!r} already exists in {folder}; pass --force to replace it or pick another name")
    if not force and _in_folder(name, BUNDLED_VOICES_DIR, "bundled"):
        raise VoiceError(f"{name!r} is a bundled voice; a user voice of that name would replace it in every job; "
                         "pass --force to do that, or pick another name")


def _library_lock(folder: Path) -> Any:
    """An exclusive lock on the user voice folder itself (flock on the directory: no lock file is left in it), held
    while a voice's files are checked and written."""
    import fcntl
    from contextlib import contextmanager

    @contextmanager
    def held() -> Iterator[None]:
        fd = os.open(folder, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    return held()


CLIPPED_FRACTION = 0.001  # more samples than this at full scale: the recording clipped
LOW_RATE = 16_000  # below this a clip has lost the upper voice band (telephone audio is 8 kHz)


def clip_problems(path: Path) -> list[str]:
    """What is wrong with a clip short of refusing it: clipping, several channels, a telephone-band sample rate."""
    import numpy as np
    import soundfile as sf

    from .audio import decoder_quiet

    try:
        with decoder_quiet(path):
            info = sf.info(str(path))
            data, _ = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError):
        return []  # prepare_clip names an unreadable clip
    found = []
    full = float(np.mean(np.abs(data) >= 0.999)) if data.size else 0.0
    if full > CLIPPED_FRACTION:
        found.append(f"{path}: {full:.1%} of the samples are at full scale (the recording clipped); "
                     "a clone copies the distortion: record again a little quieter")
    if info.channels > 1:
        found.append(f"{path}: has {info.channels} channels; they were mixed to mono (record one voice, mono, for the best clone)")
    if info.samplerate < LOW_RATE:
        found.append(f"{path}: is {info.samplerate} Hz audio (telephone band); a clone will sound muffled: record at 24 kHz or more")
    return found


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def remove(name: str) -> list[Path]:
    """Delete a user voice; bundled voices are read-only."""
    check_name(name)
    folder = user_voices_dir()
    files = [folder / f"{name}{ext}" for ext in (".wav", ".txt", ".yaml")]
    present = [f for f in files if f.exists()]
    if not present:
        if _in_folder(name, BUNDLED_VOICES_DIR, "bundled"):
            raise VoiceError(f"{name!r} is a bundled voice and cannot be removed; add a user voice of the same name to override it")
        raise VoiceError(f"no user voice named {name!r}; see `higgs voices list`")
    with _library_lock(folder):  # never in the middle of an add of the same name (a clip left without its transcript)
        for f in present:
            f.unlink(missing_ok=True)
    return present
