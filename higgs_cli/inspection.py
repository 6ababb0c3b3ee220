"""Inspecting a finished file: duration, loudness and true peak, speakers and music from its manifest, and a timeline PNG."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from .errors import UsageError
from .options import BLOCK_FRAMES, SAMPLE_RATE

PNG_WIDTH = 1200
WAVE_HEIGHT = 160
LANE_HEIGHT = 18
CURVE_HEIGHT = 80
MARGIN = 40
CURVE_FLOOR_DB = -60.0
FLAG_COLOUR = (220, 30, 30)  # chunks the quality gate failed
PALETTE = ((66, 133, 244), (219, 68, 55), (244, 180, 0), (15, 157, 88), (171, 71, 188), (0, 172, 193), (255, 112, 67), (158, 157, 36))


class InspectError(UsageError):
    """A file or manifest given to `inspect` cannot be read."""


def load_manifest(audio: Path, manifest: Path | None = None) -> dict[str, Any] | None:
    """The manifest given, else the one beside `audio` (same stem + `.json`), else None."""
    path = manifest or Path(audio).with_suffix(".json")
    if manifest is None and not path.is_file():
        return None
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise InspectError(f"{path}: manifest cannot be read ({e}); give the JSON that --json wrote") from e
    if not isinstance(doc, dict):
        raise InspectError(f"{path}: not a higgs manifest; give the JSON that --json wrote")
    return doc


def talk_time(chunks: list[dict[str, Any]]) -> dict[str, float]:
    """Seconds spoken per speaker, in order of first appearance."""
    out: dict[str, float] = {}
    for c in chunks:
        if c.get("start") is not None and c.get("end") is not None:
            out[c["speaker"]] = round(out.get(c["speaker"], 0.0) + float(c["end"]) - float(c["start"]), 3)
    return out


def inspect(path: Path, png: Path | None = None, manifest: Path | None = None, block: int = BLOCK_FRAMES) -> dict[str, Any]:
    """Measure `path`; add speakers, talk time and music levels from its manifest; draw a timeline PNG when asked."""
    from .loudness import measure_file

    path = Path(path)
    if not path.is_file():
        raise InspectError(f"{path}: file not found; check the path")
    if png is not None:
        check_png_path(Path(png))
    doc = load_manifest(path, manifest)
    report: dict[str, Any] = {"file": str(path), **measure_file(path, block)}
    if doc is not None:
        problem = manifest_mismatch(doc, report["duration"])
        if problem and manifest is not None:
            raise InspectError(f"{manifest}: {problem}; give the manifest written with {path.name}")
        if problem:
            report["warnings"] = [f"{path.with_suffix('.json')} ignored: {problem} (a manifest from an earlier render?)"]
            doc = None
    if doc is not None:
        chunks = doc.get("chunks") or []
        report["speakers"] = talk_time(chunks)
        music = (doc.get("finish") or {}).get("music")
        if music:
            report["music"] = {k: music.get(k) for k in ("gain_db", "duck_db", "under_speech_db", "clear_db")}
        if doc.get("qa"):
            report["flagged"] = flagged_chunks(chunks)
    if png is not None:
        draw_timeline(path, Path(png), report["duration"], doc, block)
        report["png"] = str(png)
    return report


MANIFEST_TOLERANCE_S = 0.25  # encoders pad lossy files by a few tens of ms


def manifest_mismatch(doc: dict[str, Any], duration: float) -> str | None:
    """Why a manifest cannot describe audio of `duration` seconds (None when it can)."""
    tolerance = MANIFEST_TOLERANCE_S + 0.01 * duration
    said = doc.get("duration")
    if isinstance(said, int | float) and abs(float(said) - duration) > tolerance:
        return f"it describes {float(said):.2f} s of audio but the file is {duration:.2f} s"
    ends = [float(c["end"]) for c in doc.get("chunks") or [] if isinstance(c, dict) and isinstance(c.get("end"), int | float)]
    if ends and max(ends) > duration + tolerance:
        return f"its chunks run to {max(ends):.2f} s but the file is {duration:.2f} s"
    return None


def check_png_path(png: Path) -> None:
    """Before measuring: the timeline can be written where asked."""
    from .files import check_writable

    if png.suffix.lower() != ".png":
        raise InspectError(f"--png {png}: give a file name ending in .png")
    if png.is_dir():
        raise InspectError(f"--png {png}: is a directory; give a file name such as {png / 'timeline.png'}")
    check_writable(png, "--png", InspectError)


def flagged_chunks(chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Chunks the quality gate failed: where they are, what they should say, what was heard, why."""
    return [{"index": c.get("index"), "line": c.get("line"), "start": c.get("start"), "end": c.get("end"), "text": c.get("text"),
             "heard": c["qa"].get("asr"), "reasons": c["qa"].get("reasons", [])}
            for c in chunks if isinstance(c.get("qa"), dict) and not c["qa"].get("passed", True)]


def waveform_columns(path: Path, duration: float, width: int, block: int = BLOCK_FRAMES) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel-column minimum and maximum of the signal, streamed in blocks."""
    from .containers import read_blocks

    per = max(1, math.ceil(duration * SAMPLE_RATE / width))
    lo, hi = np.zeros(width), np.zeros(width)
    carry, col = np.zeros(0, np.float32), 0
    for chunk in read_blocks(path, SAMPLE_RATE, block):
        carry = np.concatenate([carry, chunk])
        whole = min(len(carry) // per, width - col)
        if whole:
            frames = carry[: whole * per].reshape(whole, per)
            lo[col: col + whole], hi[col: col + whole] = frames.min(axis=1), frames.max(axis=1)
            col, carry = col + whole, carry[whole * per:]
    if carry.size and col < width:
        lo[col], hi[col] = carry.min(), carry.max()
    return lo, hi


def draw_timeline(path: Path, png: Path, duration: float, doc: dict[str, Any] | None, block: int = BLOCK_FRAMES) -> None:
    """Waveform, chunk boundaries, one lane per speaker and the music gain curve, on one time axis."""
    from PIL import Image, ImageDraw

    chunks = [c for c in (doc or {}).get("chunks", []) if c.get("start") is not None]
    speakers = list(dict.fromkeys(c["speaker"] for c in chunks))
    curve = ((doc or {}).get("finish") or {}).get("music", {}) or {}
    height = MARGIN + WAVE_HEIGHT + 10 + LANE_HEIGHT * len(speakers) + (CURVE_HEIGHT + 10 if curve.get("curve") else 0) + MARGIN
    width = PNG_WIDTH
    img = Image.new("RGB", (width + 2 * MARGIN, height), "white")
    draw = ImageDraw.Draw(img)
    scale = width / max(duration, 1e-6)
    _draw_wave(draw, *waveform_columns(path, duration, width, block))
    _draw_flagged(draw, flagged_chunks(chunks), scale)
    for c in chunks:
        x = MARGIN + float(c["start"]) * scale
        draw.line([(x, MARGIN), (x, MARGIN + WAVE_HEIGHT)], fill=(200, 200, 200))
    y = MARGIN + WAVE_HEIGHT + 10
    for i, spk in enumerate(speakers):
        draw.text((2, y + 3), spk[:6], fill="black")
        for c in (c for c in chunks if c["speaker"] == spk):
            draw.rectangle([MARGIN + float(c["start"]) * scale, y + 2, MARGIN + float(c["end"]) * scale, y + LANE_HEIGHT - 2], fill=PALETTE[i % len(PALETTE)])
        y += LANE_HEIGHT
    if curve.get("curve"):
        _draw_curve(draw, curve["curve"], y + 10, scale)
    _draw_axis(draw, duration, scale, height)
    from .files import temp_path

    tmp = temp_path(png, ".partial")
    try:
        img.save(tmp, format="PNG")
        tmp.replace(png)
    except OSError as e:
        raise InspectError(f"--png {png}: writing failed ({e.strerror or e}); check the disk and folder") from e
    finally:
        tmp.unlink(missing_ok=True)


def _draw_flagged(draw: Any, flagged: list[dict[str, Any]], scale: float) -> None:
    """A red band above the waveform over each chunk the quality gate failed, labelled with its index."""
    for c in flagged:
        left, right = MARGIN + float(c["start"]) * scale, MARGIN + float(c["end"]) * scale
        draw.rectangle([left, MARGIN - 12, max(right, left + 2), MARGIN - 4], fill=FLAG_COLOUR)
        draw.text((left, MARGIN - 26), f"#{c['index']}", fill=FLAG_COLOUR)


def _draw_wave(draw: Any, lo: np.ndarray, hi: np.ndarray) -> None:
    mid, half = MARGIN + WAVE_HEIGHT / 2, WAVE_HEIGHT / 2
    for x, (a, b) in enumerate(zip(lo, hi)):
        draw.line([(MARGIN + x, mid - b * half), (MARGIN + x, mid - a * half)], fill=(60, 60, 60))


def _draw_curve(draw: Any, curve: dict[str, Any], top: int, scale: float) -> None:
    step, values = float(curve["step"]), curve["db"]
    draw.text((2, top), "music", fill="black")

    def ypos(v: float) -> float:
        return top + CURVE_HEIGHT * min(1.0, max(0.0, v / CURVE_FLOOR_DB))

    points = [(MARGIN + i * step * scale, ypos(v)) for i, v in enumerate(values)]
    draw.line([(MARGIN, ypos(0)), (MARGIN + len(values) * step * scale, ypos(0))], fill=(220, 220, 220))
    if len(points) > 1:
        draw.line(points, fill=(15, 157, 88), width=2)


def _draw_axis(draw: Any, duration: float, scale: float, height: int) -> None:
    tick = next((t for t in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600) if duration / t <= 12), 7200)
    t = 0.0
    while t <= duration:
        x = MARGIN + t * scale
        draw.line([(x, height - MARGIN + 4), (x, height - MARGIN + 10)], fill="black")
        label = f"{int(t // 60)}:{int(t % 60):02d}" if tick >= 60 or duration >= 60 else f"{t:g}s"
        draw.text((x - 10, height - MARGIN + 12), label, fill="black")
        t += tick
