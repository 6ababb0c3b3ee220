"""The voice library: resolve names and paths to Voice(clip, transcript, profile); add, remove, cast.

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
from typing import TYPE_CHECKING

from .errors import VoiceError
from .options import BUNDLED_VOICES_DIR, CAST_ORDER, SAMPLE_RATE, VOICE_MAX_SECONDS, VOICE_MIN_SECONDS

if TYPE_CHECKING:
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


def _voice_from_files(name: str, source: str, clip: Path | None, folder: Path) -> Voice:
    txt, yml = folder / f"{name}.txt", folder / f"{name}.yaml"
    profile = _load_profile(yml) if yml.is_file() else {}
    transcript = txt.read_text(encoding="utf-8").strip() if txt.is_file() else None
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


def library() -> list[Voice]:
    """Every voice in the user and bundled folders (a user voice hides a bundled one of that name)."""
    seen: dict[str, Voice] = {}
    for folder, source in ((user_voices_dir(), "user"), (BUNDLED_VOICES_DIR, "bundled")):
        if folder.is_dir():
            for entry in sorted(folder.iterdir()):
                if entry.suffix in (".wav", ".yaml") and _NAME.match(entry.stem) and entry.stem not in seen:
                    voice = _in_folder(entry.stem, folder, source)
                    if voice:
                        seen[entry.stem] = voice
    return sorted(seen.values(), key=lambda v: v.name)


def resolve(spec: str) -> Voice:
    """A voice by library name, or by path to a clip (with optional sibling .txt/.yaml)."""
    if "/" in spec or spec.lower().endswith(_AUDIO_EXTS):
        clip = Path(spec).expanduser()
        if not clip.is_file():
            raise VoiceError(f"voice clip {spec} not found; give an existing audio file or a voice name")
        return _voice_from_files(clip.stem, "path", clip, clip.parent)
    check_name(spec)
    for folder, source in ((user_voices_dir(), "user"), (BUNDLED_VOICES_DIR, "bundled")):
        voice = _in_folder(spec, folder, source)
        if voice:
            return voice
    names = ", ".join(v.name for v in library()) or "(none)"
    raise VoiceError(f"unknown voice {spec!r}; known voices: {names} (see `higgs voices list`)")


def auto_voice(k: int) -> Voice:
    """The k-th synthetic voice for casts larger than the library: a pitch/formant/tilt variant of piper's joe.

    Speaker-embedding distance comes mostly from formant and spectral tilt, and intelligibility
    bounds formants to about 0.95-1.32, so that plane holds only so many voices: the six below sit
    in its corners away from the bundled five; from the seventh on they repeat with another pitch
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


def cast(speakers: tuple[str, ...], mapping: dict[str, str], default: str | None, distinct: bool) -> dict[str, Voice]:
    """Give every speaker a voice: explicit mapping first, then the default, then distinct picks."""
    unknown = sorted(set(mapping) - set(speakers))
    if unknown:
        raise VoiceError(f"--voice maps speaker {unknown[0]} which is not in the transcript; speakers are: {', '.join(speakers)}")
    chosen = {spk: resolve(spec) for spk, spec in mapping.items()}
    taken = {v.name for v in chosen.values()}
    pool = [n for n in CAST_ORDER if n not in taken]
    auto = 0
    for spk in speakers:
        if spk in chosen:
            continue
        if default and (not distinct or default not in taken):
            chosen[spk] = resolve(default)
        elif pool:
            chosen[spk] = resolve(pool.pop(0))
        else:
            chosen[spk] = auto_voice(auto)
            auto += 1
        taken.add(chosen[spk].name)
    return {spk: chosen[spk] for spk in speakers}


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
    if not force and (folder / f"{name}.wav").exists():
        raise VoiceError(f"voice {name!r} already exists in {folder}; pass --force to replace it or pick another name")
    if text is not None and not text.strip():
        raise VoiceError("--text is empty; give the exact words spoken in the clip")
    audio, rate = prepare_clip(clip)
    folder.mkdir(parents=True, exist_ok=True)
    if text:
        _write_text(folder / f"{name}.txt", text.strip() + "\n")
    profile = {k: v for k, v in {"description": description, "gender": gender, "language": language}.items() if v}
    _write_text(folder / f"{name}.yaml", yaml.safe_dump(profile, sort_keys=False, allow_unicode=True))
    write_audio(folder / f"{name}.wav", audio, rate)
    return resolve(name)


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
    for f in present:
        f.unlink()
    return present
