"""The exception hierarchy: every message is one line that names the fix."""

from __future__ import annotations


class HiggsError(Exception):
    """Base for errors the CLI reports as one line; `exit_code` is what the process returns."""

    exit_code = 1


class UsageError(HiggsError):
    """The user asked for something that cannot work as given (exit 2)."""

    exit_code = 2


class TranscriptError(UsageError):
    """A transcript cannot be read or parsed; carries `file:line` when known."""

    def __init__(self, message: str, path: str | None = None, line: int | None = None):
        where = path or "<text>"
        if line is not None:
            where = f"{where}:{line}"
        super().__init__(f"{where}: {message}")
        self.path = path
        self.line = line


class VoiceError(UsageError):
    """A voice name, clip or profile is unknown or invalid."""


class OutputError(UsageError):
    """The output path cannot be written or has an unsupported format."""


class EngineUnavailable(UsageError):
    """The requested engine cannot run on this machine."""


class RenderError(HiggsError):
    """Synthesis failed at run time (exit 1)."""


class QualityError(HiggsError):
    """Chunks failed the quality gate in strict mode, or `higgs check` flagged some (exit 3)."""

    exit_code = 3


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP arrived: unwound like Ctrl-C (temp files removed), the process exits 128 + the signal number."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum
