"""A pronunciation lexicon: words or phrases -> a respelling, or IPA phonemes for engines that take them.

File forms (UTF-8):
  YAML   `Nguyen: win`, `Siobhan: /ʃɪˈvɔːn/`, or `Kubernetes: {say: koo-ber-net-eez, ipa: /kuːbərˈnɛtiːz/}`
  TSV    `word<TAB>replacement` per line (`#` starts a comment line)

YAML entries may also give `espeak: "h@l'oU"`: eSpeak NG's own phoneme mnemonics, which the espeak engine
takes in `[[...]]` (its alphabet is not IPA, so IPA cannot go to it).

Rules: whole words only (a phrase matches as a whole, never inside a longer word); an entry written all in
lower case matches in any case, an entry with a capital letter matches only that exact case (so `US` is not
`us`); longer entries win over shorter ones. Phonemes (`/.../`, IPA) reach engines listed in
options.PHONEME_ENGINES (Piper) as `[[...]]`; other engines get the entry's `say` respelling, or the word unchanged.
The lexicon runs on what the engine is given, after numbers are read out, and never inside sound-event markup.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from .errors import UsageError
from .options import PHONEME_ENGINES

_MARKUP = re.compile(r"(<SE(?:_[se])?>\[[^\]]*\]</SE(?:_[se])?>|\[\[[^\]]*\]\])")


@dataclass(frozen=True)
class Entry:
    word: str
    say: str | None  # respelling, for every engine
    ipa: str | None  # IPA phonemes, for engines that take them (PHONEME_ENGINES)
    espeak: str | None = None  # eSpeak NG phoneme mnemonics (its own alphabet, not IPA), for the espeak engine

    def replacement(self, engine: str) -> str | None:
        if self.espeak and engine == "espeak":
            return f"[[{self.espeak}]]"
        if self.ipa and engine in PHONEME_ENGINES:
            return f"[[{self.ipa}]]"
        return self.say


@dataclass(frozen=True)
class Lexicon:
    """Entries in matching order (longest first) and the file they came from."""

    entries: tuple[Entry, ...]
    source: str = ""

    def apply(self, text: str, engine: str, changes: list[tuple[str, str]] | None = None) -> str:
        """Replace every whole-word match outside sound-event markup and phoneme blocks; (word, replacement) pairs
        are appended to `changes` when given."""
        parts = _MARKUP.split(text)
        for i in range(0, len(parts), 2):
            parts[i] = self._replace(parts[i], engine, changes)
        return "".join(parts)

    @cached_property
    def _scanner(self) -> tuple[re.Pattern[str], dict[str, list[Entry]], list[int]]:
        """One regex finding any entry (any case), the entries by lower-cased word, and the entry lengths, longest first."""
        by_word: dict[str, list[Entry]] = {}
        for entry in self.entries:
            by_word.setdefault(entry.word.lower(), []).append(entry)
        words = sorted(by_word, key=len, reverse=True)
        return re.compile(rf"(?<!\w)(?:{'|'.join(map(re.escape, words))})(?!\w)", re.I), by_word, sorted({len(w) for w in words}, reverse=True)

    def _replace(self, text: str, engine: str, changes: list[tuple[str, str]] | None) -> str:
        """One left-to-right pass: a replacement is never looked at again, so one entry's respelling is never
        rewritten by another entry (`Nguyen: a win` and `a: ay` give "a win", not "ay win")."""
        if not self.entries:
            return text
        scanner = self._scanner[0]
        out, pos = [], 0
        while (m := scanner.search(text, pos)) is not None:
            hit = self._match(text, m.start(), engine)
            if hit is None:
                out.append(text[pos:m.start() + 1])
                pos = m.start() + 1
                continue
            end, new = hit
            out += [text[pos:m.start()], _note(changes, text[m.start():end], new)]
            pos = end
        return "".join(out) + text[pos:]

    def _match(self, text: str, at: int, engine: str) -> tuple[int, str] | None:
        """The entry that applies at `at`: the longest whose case rule and word boundaries hold and that has a
        replacement for this engine."""
        _, by_word, lengths = self._scanner
        for length in lengths:
            for entry in by_word.get(text[at:at + length].lower(), ()):
                new = entry.replacement(engine)
                end = at + length
                if new is None or (entry.word != entry.word.lower() and text[at:end] != entry.word):
                    continue
                if (at and (text[at - 1].isalnum() or text[at - 1] == "_")) or (end < len(text) and (text[end].isalnum() or text[end] == "_")):
                    continue
                return end, new
        return None


def _note(changes: list[tuple[str, str]] | None, word: str, new: str) -> str:
    if changes is not None:
        changes.append((word, new))
    return new


def _entry(word: str, value: object, where: str) -> Entry:
    word = " ".join(str(word).split())
    if not word:
        raise UsageError(f"{where}: an empty word; write `word: respelling`")
    if isinstance(value, dict):
        unknown = set(value) - {"say", "ipa", "espeak"}
        if unknown:
            raise UsageError(f"{where}: {word!r} has unknown key {sorted(unknown)[0]!r}; use say:, ipa: and/or espeak:")
        say, ipa, espeak = value.get("say"), value.get("ipa"), value.get("espeak")
    elif isinstance(value, str | int | float):
        say, ipa, espeak = str(value), None, None
    else:
        raise UsageError(f"{where}: {word!r} needs a respelling or /phonemes/, e.g. `{word}: {word.lower()}`")
    if say is not None and str(say).strip().startswith("/") and str(say).strip().endswith("/") and ipa is None:
        say, ipa = None, str(say)
    ipa = str(ipa).strip().strip("/").strip() if ipa is not None else None
    say = " ".join(str(say).split()) if say is not None else None
    espeak = " ".join(str(espeak).strip("[]").split()) if espeak is not None else None
    if not say and not ipa and not espeak:
        raise UsageError(f"{where}: {word!r} has an empty replacement")
    if any(ch in value for value in (say, ipa, espeak) if value for ch in "[]"):
        raise UsageError(f"{where}: {word!r}: a replacement cannot hold [ or ] (they mark tags and phoneme blocks); "
                         "write the sounds in letters or /IPA/")
    return Entry(word, say or None, ipa or None, espeak or None)


def load(path: Path) -> Lexicon:
    """Read a YAML or TSV lexicon; a bad file is a one-line error naming the entry and the fix."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError as e:
        raise UsageError(f"--lexicon {path}: file not found; check the path") from e
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"--lexicon {path}: cannot read it ({e}); save it as UTF-8") from e
    if path.suffix.lower() in (".tsv", ".txt") or ("\t" in text and ":" not in text.split("\n", 1)[0]):
        entries = _tsv(text, str(path))
    else:
        entries = _yaml(text, str(path))
    if not entries:
        raise UsageError(f"--lexicon {path}: no entries; write one `word: respelling` per line")
    entries.sort(key=lambda e: -len(e.word))
    return Lexicon(tuple(entries), str(path))


def _tsv(text: str, source: str) -> list[Entry]:
    entries, seen = [], {}
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        word, tab, value = line.partition("\t")
        if not tab:
            raise UsageError(f"{source}:{number}: no tab; a TSV lexicon line is WORD<TAB>REPLACEMENT")
        entry = _entry(word, value.strip(), f"{source}:{number}")
        if entry.word in seen:
            line_before, before = seen[entry.word]
            if before != entry:
                raise UsageError(f"{source}:{number}: {entry.word!r} is already on line {line_before} with another "
                                 "replacement; keep one")
            continue
        seen[entry.word] = (number, entry)
        entries.append(entry)
    return entries


def _yaml(text: str, source: str) -> list[Entry]:
    from .yamlsafe import load_yaml

    data = load_yaml(text, source)
    if not isinstance(data, dict):
        raise UsageError(f"{source}: a lexicon is a mapping of `word: respelling` lines")
    for word, value in data.items():  # YAML reads yes/no/on/off, null and numbers as values, not the words written
        for what, item in (("word", word), ("replacement", value)):
            if isinstance(item, bool) or (what == "word" and not isinstance(item, str)):
                raise UsageError(f"{source}: a {what} was read by YAML as {item!r} ({type(item).__name__}), not as the text written; "
                                 f"quote it, e.g. \"yes\": \"yeah\"")
    return [_entry(word, value, source) for word, value in data.items()]
