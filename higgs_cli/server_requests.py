"""What a `POST /v1/audio/speech` body may say, and how it becomes a Plan: OpenAI's fields plus our extensions,
checked with the CLI's own ranges and messages, voices only by library name (never a server path)."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .cache import ChunkCache
from .errors import UsageError, VoiceError
from .options import (
    DEFAULT_CHUNK,
    DEFAULT_DIALOGUE_CHUNK,
    DEFAULT_LOUDNESS,
    DEFAULT_SEED,
    OPENAI_MODELS,
    SERVE_SPEED_RANGE,
    FinishOptions,
    QaOptions,
    RenderOptions,
    ServeOptions,
)
from .planning import Plan, make_plan
from .voices import Voice, check_name, prepare_clip, resolve

FORMATS = ("mp3", "opus", "aac", "flac", "wav", "pcm")
SAMPLING_FIELDS = ("temperature", "top_k", "top_p")


class BadRequest(UsageError):
    """A request the server refuses; `param` names the field (OpenAI's error envelope carries it)."""

    def __init__(self, message: str, param: str | None = None, status: int = 400):
        super().__init__(message)
        self.param, self.status = param, status


class VoiceId(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str


class SpeechRequest(BaseModel):
    """OpenAI's speech fields, then ours. Unknown fields are refused, never ignored."""

    model_config = ConfigDict(extra="forbid")
    model: str
    input: str
    voice: str | VoiceId | None = None
    response_format: Literal["mp3", "opus", "aac", "flac", "wav", "pcm"] = "mp3"
    speed: float = 1.0
    instructions: str | None = None
    stream_format: Literal["audio", "sse"] | None = None
    # extensions
    voices: dict[str, str] | None = None  # speaker -> voice name, for a transcript with speaker tags
    seed: int = Field(DEFAULT_SEED, ge=0, le=2**31 - 1)
    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    ref_audio: str | bytes | None = None  # base64 in JSON, a file in multipart
    ref_text: str | None = None


def parse(body: dict[str, Any]) -> SpeechRequest:
    """Validate a decoded body; the first problem becomes one BadRequest naming its field."""
    try:
        return SpeechRequest.model_validate(body)
    except ValidationError as e:
        first = e.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or None
        if first["type"] == "extra_forbidden":
            raise BadRequest(f"unknown field {field!r}; see the README's server section for the fields this server takes",
                             field) from None
        raise BadRequest(f"{field}: {first['msg']}", field) from None


def api_message(message: str) -> str:
    """A CLI message for an API caller: `--top-k` becomes `top_k`."""
    return re.sub(r"--([a-z][a-z-]*)", lambda m: m.group(1).replace("-", "_"), message)


def build_plan(req: SpeechRequest, options: ServeOptions, workdir: Path) -> tuple[Plan, list[str]]:
    """The Plan this request asks for, and warnings about what this engine cannot honour. Blocking (file I/O)."""
    from . import engines
    from .engines.higgs import validate_settings
    from .scripts import load
    from .textclean import reading

    engine, cls = options.engine, engines.engine_class(options.engine)
    _check_model(req.model, engine)
    _check_input(req.input, options.max_input_chars)
    for name in ("instructions", "ref_text"):  # a scene or clip transcript is short; megabytes of one would fill the prompt
        value = getattr(req, name)
        if value is not None and len(value) > options.max_input_chars:
            raise BadRequest(f"{name} is {len(value)} characters; this server takes at most {options.max_input_chars}", name)
    lo, hi = SERVE_SPEED_RANGE
    if not lo <= req.speed <= hi:
        raise BadRequest(f"speed {req.speed} is out of range for these engines; use {lo} to {hi}", "speed")
    warnings: list[str] = []
    higgs = options.higgs
    given = {k: getattr(req, k) for k in SAMPLING_FIELDS if getattr(req, k) is not None}
    try:
        validate_settings(replace(higgs, **given))
    except UsageError as e:
        raise BadRequest(api_message(str(e)), next(iter(given), None)) from None
    if cls.batches:
        for name, value in given.items():
            if value != getattr(higgs, name):
                raise BadRequest(f"{name} {value}: this server samples every request with {name} {getattr(higgs, name)} "
                                 f"(requests share one batch); omit it, or start the server with --{name.replace('_', '-')} {value}", name)
        higgs = replace(higgs, scene=req.instructions or higgs.scene, speed=req.speed if req.speed != 1.0 else higgs.speed)
    else:
        ignored = [k for k in given] + (["instructions"] if req.instructions else [])
        if ignored:
            warnings.append(f"{', '.join(ignored)} ignored: the {engine} engine does not sample or take instructions")
    try:
        script = load(req.input, "auto", "input", reading("auto", "remove"))  # as `higgs generate --text` reads it
        _check_cues(script)
        mapping = {spk.strip().upper(): check_name(name.strip()) for spk, name in (req.voices or {}).items()}
        default = _voice_name(req.voice)
        chunk = DEFAULT_DIALOGUE_CHUNK if len(script.speakers) > 1 else DEFAULT_CHUNK
        opts = RenderOptions(engine=engine, chunk=chunk, seed=req.seed, voices=mapping, default_voice=default, higgs=higgs,
                             finish=FinishOptions(loudness=DEFAULT_LOUDNESS))  # a whole file: the CLI's default programme level
        plan = make_plan(script, opts, engine)
    except BadRequest:
        raise
    except VoiceError as e:
        raise BadRequest(api_message(str(e)), "voices" if req.voices else "voice") from None
    except UsageError as e:
        raise BadRequest(api_message(str(e)), "input") from None
    if req.ref_audio is not None:
        plan = _cloned(plan, req, cls.clones, workdir)
    elif req.ref_text is not None:
        raise BadRequest("ref_text goes with ref_audio (the words spoken in the clip); send both or neither", "ref_text")
    if req.speed != 1.0 and not cls.batches:
        plan = replace(plan, cast={spk: faster(v, engine, req.speed) for spk, v in plan.cast.items()})
    return plan, warnings


def with_kept_takes(plan: Plan, store: ChunkCache) -> tuple[Plan, list[int]]:
    """The plan as `render` will look for it in `store`: each chunk's kept take (takes.py), and the take numbers.

    The plan's own gate is off: the server's (server_qa.py) hears the job's chunks and asks the scheduler for retakes."""
    from .planning import chunk_keys
    from .takes import TakeStore, resolve

    plan = replace(plan, options=replace(plan.options, qa=QaOptions(mode="off")))
    return resolve(plan, TakeStore(store.root), chunk_keys) if store.enabled else (plan, [0] * len(plan.chunks))


def _check_cues(script: Any) -> None:
    """A request never makes the server open a file: a [music: FILE] cue would read (or probe) the server's disk. Nor
    does a short request make it write an hour of silence: its [pause] tags add up to SERVE_MAX_PAUSE_SECONDS at most."""
    from .options import SERVE_MAX_PAUSE_SECONDS
    from .transcript import controls

    paused = 0.0
    for segment in script.segments:
        found = controls(segment.text)
        if any(c.kind == "music" for c in found):
            raise BadRequest(f"input:{segment.line}: [music: ...] cues are not taken by the server (it opens no files for a "
                             "request); remove them, or render with `higgs generate --music`", "input")
        paused += sum(c.seconds for c in found if c.kind == "pause")
        if paused > SERVE_MAX_PAUSE_SECONDS:
            raise BadRequest(f"input:{segment.line}: [pause] tags add up to more than {SERVE_MAX_PAUSE_SECONDS:g} s in one request; "
                             "shorten them, or render long silences with `higgs generate`", "input")


def _check_model(model: str, engine: str) -> None:
    if model in (engine, "higgs") or model in OPENAI_MODELS or model.startswith("gpt-4o-mini-tts"):
        return
    raise BadRequest(f"model {model!r} is not served here; use {engine!r} (or any OpenAI TTS model name: {', '.join(OPENAI_MODELS)})",
                     "model")


def _check_input(text: str, limit: int) -> None:
    if not text.strip():
        raise BadRequest("input is empty; send the text to speak", "input")
    if len(text) > limit:
        raise BadRequest(f"input is {len(text)} characters; this server takes at most {limit} per request "
                         "(split the text, or start the server with a larger --max-input-chars)", "input")


def _voice_name(voice: str | VoiceId | None) -> str | None:
    """A library voice name; anything path-like is refused before it could reach the file system."""
    if voice is None:
        return None
    name = voice.id if isinstance(voice, VoiceId) else voice
    try:
        return check_name(name.strip())
    except VoiceError as e:
        raise BadRequest(str(e), "voice") from None


def _cloned(plan: Plan, req: SpeechRequest, clones: bool, workdir: Path) -> Plan:
    """Every speaker in the voice of the request's own clip (like `higgs clone`)."""
    if not clones:
        raise BadRequest(f"ref_audio (voice cloning) needs the higgs engine; this server runs {plan.engine}", "ref_audio")
    if not req.ref_text or not req.ref_text.strip():
        raise BadRequest("ref_audio needs ref_text: the exact words spoken in the clip", "ref_text")
    data = req.ref_audio
    if isinstance(data, str):
        try:
            data = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise BadRequest("ref_audio is not valid base64; send the clip's bytes base64-encoded, or upload it as a file",
                             "ref_audio") from None
    clip = workdir / "ref_audio"
    clip.write_bytes(data or b"")
    try:
        prepare_clip(clip)
    except UsageError as e:
        raise BadRequest(str(e).replace(str(clip), "ref_audio"), "ref_audio") from None
    voice = Voice(name="ref-audio", source="request", clip=clip, transcript=req.ref_text.strip())
    return replace(plan, cast={spk: voice for spk in plan.script.speakers})


def faster(voice: Voice, engine: str, speed: float) -> Voice:
    """The voice at `speed` times its pace, through the engine's own pace setting (so the cache key follows)."""
    settings = voice.settings(engine)
    if engine == "espeak":
        settings["rate"] = round(float(settings.get("rate", 165)) * speed)
    else:
        settings["speed"] = round(float(settings.get("speed", 1.0)) * speed, 4)
    return replace(voice, engines={**voice.engines, engine: settings})


def voice_doc(v: Voice) -> dict[str, Any]:
    """A library voice in OpenAI's voice shape, plus what our library knows about it."""
    created = int(v.clip.stat().st_mtime) if v.clip and v.clip.exists() else 0
    return {"id": v.name, "object": "audio.voice", "name": v.name, "type": "audio_sample", "created_at": created,
            "source": v.source, "transcript": v.transcript, "description": v.description, "gender": v.gender,
            "language": v.language, "has_clip": v.clip is not None}


def library_voice(name: str) -> Voice:
    """A voice by library name only."""
    return resolve(check_name(name))
