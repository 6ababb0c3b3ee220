"""Regenerate the bundled reference clips `voices/NAME.wav` from `voices/NAME.txt` and each voice's profile.

Each clip is the voice's transcript rendered by the piper engine with the profile's `engines: piper:`
settings (base voice, shift, pitch, formant, tilt, speed), then trimmed of silence, peak-normalised to 0.8 and given 8 ms edge fades, written
as 24 kHz mono 16-bit wav. Rendered with seed 0, so a rerun with the same profile and engine
gives the same clip.

    .venv/bin/python bench/make_voices.py [NAME ...]   # default: every bundled voice
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import render_clip  # noqa: E402


def main() -> None:
    from higgs_cli.audio import write_audio
    from higgs_cli.engines.piper import PiperEngine
    from higgs_cli.options import BUNDLED_VOICES_DIR, SAMPLE_RATE
    from higgs_cli.voices import resolve

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="voices to regenerate (default: all with a .txt and .yaml)")
    args = parser.parse_args()
    names = args.names or sorted(p.stem for p in BUNDLED_VOICES_DIR.glob("*.yaml") if p.with_suffix(".txt").is_file())
    os.environ["HIGGS_VOICES_DIR"] = tempfile.mkdtemp()  # empty: a user voice of the same name must not stand in
    engine = PiperEngine()
    for name in names:
        voice = resolve(name)
        if not voice.transcript:
            raise SystemExit(f"{BUNDLED_VOICES_DIR / name}.txt is missing or empty; write the clip's transcript first")
        audio = render_clip(engine, voice, voice.transcript)
        write_audio(BUNDLED_VOICES_DIR / f"{name}.wav", audio, SAMPLE_RATE)
        print(f"{name}: {len(audio) / SAMPLE_RATE:.2f} s, piper {voice.settings('piper')}")


if __name__ == "__main__":
    main()
