"""Response encoders: float32 mono pieces in, bytes of one audio format out as soon as they exist (`-o -`, the server).

wav is written with a streaming header (sizes unknown, as a live stream must), pcm is raw signed 16-bit
little-endian at SAMPLE_RATE (OpenAI's `pcm`), and mp3, opus (Ogg), aac (ADTS) and flac come out of an
ffmpeg process fed through a pipe, read on a thread so neither side can block the other.
"""

from __future__ import annotations

import queue
import struct
import subprocess
import threading

import numpy as np

from .errors import UsageError
from .options import SAMPLE_RATE

MEDIA_TYPES = {
    "mp3": "audio/mpeg", "opus": "audio/ogg", "aac": "audio/aac", "flac": "audio/flac", "wav": "audio/wav", "pcm": "audio/pcm",
}
STREAM_FORMATS = tuple(MEDIA_TYPES)
_FFMPEG_ARGS = {  # output side of the ffmpeg command per format
    "mp3": ["-c:a", "libmp3lame", "-b:a", "128k", "-f", "mp3"],
    "opus": ["-c:a", "libopus", "-b:a", "48k", "-f", "ogg"],
    "aac": ["-c:a", "aac", "-b:a", "96k", "-f", "adts"],
    "flac": ["-c:a", "flac", "-f", "flac"],
}
SETTLE_SECONDS = 0.25  # after feeding ffmpeg a piece, wait this long for its first encoded bytes (latency vs stalls)
_UNKNOWN = 0xFFFFFFFF  # the RIFF and data sizes of a wav whose length is not known yet


def pcm16(audio: np.ndarray) -> bytes:
    """Float samples to signed 16-bit little-endian bytes, converted by libsndfile exactly as AudioWriter's files are."""
    import io

    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.clip(audio, -1.0, 1.0), SAMPLE_RATE, format="RAW", subtype="PCM_16", endian="LITTLE")
    return buf.getvalue()


def wav_header(frames: int | None = None, rate: int = SAMPLE_RATE) -> bytes:
    """A 16-bit mono PCM wav header; without `frames` the sizes say "unknown" (a stream)."""
    data = _UNKNOWN if frames is None else frames * 2
    riff = _UNKNOWN if frames is None else 36 + data
    return (b"RIFF" + struct.pack("<I", riff) + b"WAVEfmt " + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
            + b"data" + struct.pack("<I", data))


class Encoder:
    """Turns float32 pieces at SAMPLE_RATE into bytes of `fmt`; write() returns what is ready, close() the rest."""

    def __init__(self, fmt: str):
        if fmt not in MEDIA_TYPES:
            raise UsageError(f"unknown audio format {fmt!r}; use one of: {', '.join(MEDIA_TYPES)}")
        self.fmt, self.media_type = fmt, MEDIA_TYPES[fmt]
        self._started = False
        self._proc: subprocess.Popen[bytes] | None = None
        self._out: queue.Queue[bytes | None] = queue.Queue()
        self._reader: threading.Thread | None = None

    def write(self, audio: np.ndarray) -> bytes:
        head = b""
        if not self._started:
            self._started = True
            if self.fmt == "wav":
                head = wav_header()
            elif self.fmt in _FFMPEG_ARGS:
                self._start_ffmpeg()
        if self._proc is None:
            return head + (pcm16(audio) if audio.size else b"")
        if not audio.size:
            return self._drain(block=False)
        assert self._proc.stdin is not None
        self._proc.stdin.write(pcm16(audio))
        self._proc.stdin.flush()
        return self._drain(block=False, settle=SETTLE_SECONDS)

    def close(self) -> bytes:
        """Finish the stream: the encoder's last bytes (an empty stream still gets its header)."""
        head = self.write(np.zeros(0, np.float32)) if not self._started else b""
        if self._proc is None:
            return head
        assert self._proc.stdin is not None
        self._proc.stdin.close()
        tail = self._drain(block=True)
        code = self._proc.wait()
        if code != 0:
            raise RuntimeError(f"ffmpeg exited with status {code} while encoding {self.fmt}")
        return head + tail

    def abort(self) -> None:
        """Stop without finishing (the client went away): kill the encoder process."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()

    def _start_ffmpeg(self) -> None:
        from .containers import ffmpeg_exe

        args = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-f", "s16le", "-ar", str(SAMPLE_RATE),
                "-ac", "1", "-i", "pipe:0", "-flush_packets", "1", *_FFMPEG_ARGS[self.fmt], "pipe:1"]
        self._proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self._reader = threading.Thread(target=self._read, name=f"encode-{self.fmt}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        while block := self._proc.stdout.read1(1 << 16):
            self._out.put(block)
        self._out.put(None)

    def _drain(self, block: bool, settle: float = 0.0) -> bytes:
        """What the encoder has produced; `block` waits for the end, `settle` up to that long for a first block."""
        pieces = []
        while True:
            try:
                item = self._out.get(block=block or (settle > 0 and not pieces), timeout=None if block else settle or None)
            except queue.Empty:
                break
            if item is None:
                break
            pieces.append(item)
        return b"".join(pieces)


def encode(audio: np.ndarray, fmt: str) -> bytes:
    """A whole clip in one format (wav with its real sizes)."""
    if fmt == "wav":
        return wav_header(len(audio)) + pcm16(audio)
    encoder = Encoder(fmt)
    return encoder.write(audio) + encoder.close()
