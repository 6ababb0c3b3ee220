"""Text cleaned for speech: markup out (words kept), invisible characters and emoji handled, English numbers read out.

Two stages, both pure and both reporting what they did per line:

- `clean_text` runs when a script is read, line by line (line numbers stay the user's): Markdown emphasis,
  links, images, inline code, code fences, list and quote markers, rules and HTML comments are stripped
  with their words kept; a small SSML subset is honoured (`<break time>` becomes a `[pause:S]` tag,
  `<say-as interpret-as="characters">` spells out, `<sub alias>` reads the alias) and the rest is stripped
  with a warning; invisible characters (zero-width, soft hyphen, bidi controls) are removed; emoji are
  removed or named.
- `spoken` runs per chunk when a job is planned and gives what the engine is handed: English numbers,
  currencies, percentages, ordinals, years, ISO dates, clock times and common abbreviations as a person
  reads them (num2words), and letters of scripts the voice cannot speak (right-to-left scripts on an
  English voice) dropped with a warning naming the line. The chunk's `text` keeps the words as written.
"""

from __future__ import annotations

import html
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import UsageError
from .options import EMOJI_MODES, NUMBER_MODES, SCRIPT_FORMATS, SpeechOptions
from .scripts import Note


@dataclass(frozen=True)
class CleanOptions:
    """How text is cleaned when read (see options.SpeechOptions for the job-level settings)."""

    emoji: str = "remove"  # remove, name (read the emoji's Unicode name) or keep
    markup: bool = True  # strip Markdown and SSML


def reading(fmt: str, emoji: str) -> CleanOptions:
    """Validated reading options (script format, text cleaning) for scripts.load."""
    if fmt not in SCRIPT_FORMATS:
        raise UsageError(f"--format {fmt!r}: use one of {', '.join(SCRIPT_FORMATS)}")
    if emoji not in EMOJI_MODES:
        raise UsageError(f"--emoji {emoji!r}: use one of {', '.join(EMOJI_MODES)}")
    return CleanOptions(emoji=emoji)


def speech_options(numbers: str, lexicon: Path | None) -> SpeechOptions:
    """Validated speech options: how numbers reach the engine and the lexicon (loaded, so a bad file fails before rendering)."""
    if numbers not in NUMBER_MODES:
        raise UsageError(f"--numbers {numbers!r}: use one of {', '.join(NUMBER_MODES)}")
    from .lexicon import load

    return SpeechOptions(numbers=numbers, lexicon=load(lexicon) if lexicon else None)


# --- Markdown ---------------------------------------------------------------------------------------
_FENCE = re.compile(r"^\s*(```|~~~)")
_RULE = re.compile(r"^\s*([-*_])(\s*\1){2,}\s*$")
_TABLE_RULE = re.compile(r"^\s*\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)+\|?\s*$")
_TABLE_ROW = re.compile(r"^\s*\|.*\|\s*$")
_DEEP_HEADING = re.compile(r"^\s*#{4,6}\s+")
_ENTITY = re.compile(r"&(?:[a-zA-Z]{2,8}|#\d{2,6}|#x[0-9a-fA-F]{2,6});")
_REF_DEF = re.compile(r"^\s*\[[^\]]+\]:\s+\S+")
_BULLET = re.compile(r"^(\s*)(?:[-*+•])\s+(?=\S)")
_QUOTE = re.compile(r"^(\s*)(?:>\s?)+")
_IMAGE = re.compile(r"!\[(?P<alt>[^\]]*)\]\([^)]*\)")
_LINK = re.compile(r"\[(?P<text>[^\]]+)\]\([^)]*\)")
_AUTOLINK = re.compile(r"<(?P<url>(?:https?|mailto):[^>\s]+)>")
_URL = re.compile(r"\bhttps?://(?:www\.)?(?P<host>[^/\s]+)\S*")
_CODE = re.compile(r"`+(?P<code>[^`]+)`+")
_COMMENT = re.compile(r"<!--.*?-->")
# A narrator voice hint on its own line, for books: `<!-- voice: ava -->` (invisible in rendered Markdown) or abogen's
# `<<VOICE:ava>>` marker. books.py applies it to the chapter it is in; in a plain transcript it is only removed.
VOICE_HINT = re.compile(r"^\s*(?:<!--\s*voice\s*[:=]\s*(?P<a>[^<>\s]+)\s*-->|<<\s*voice\s*:\s*(?P<b>[^<>\s]+)\s*>>)\s*$", re.I)


def voice_hint(line: str) -> str | None:
    """The voice a hint line names, or None when the line is not a voice hint."""
    m = VOICE_HINT.match(line)
    return (m.group("a") or m.group("b")) if m else None

_EMPHASIS = (
    re.compile(r"(\*{1,3})(?=\S)(?P<w>.+?)(?<=\S)\1"),
    re.compile(r"(?<!\w)(_{1,3})(?=\S)(?P<w>.+?)(?<=\S)\1(?!\w)"),
    re.compile(r"~~(?=\S)(?P<w>.+?)(?<=\S)~~"),
)

# --- SSML (and the few HTML tags people paste) ---------------------------------------------------------
_BREAK = re.compile(r"<break\b(?P<attrs>[^>]*)/?>", re.I)
_SAY_AS = re.compile(r"<say-as\b(?P<attrs>[^>]*)>(?P<w>.*?)</say-as\s*>", re.I)
_SUB = re.compile(r"<sub\b[^>]*\balias\s*=\s*[\"'](?P<alias>[^\"']*)[\"'][^>]*>(?P<inner>.*?)</sub\s*>", re.I)
_QUIET_TAGS = re.compile(r"</?(?:speak|p|s|br|b|i|em|strong|u|span|div)\b[^>]*>", re.I)
_WARN_TAGS = re.compile(r"</?(?P<tag>emphasis|prosody|voice|lang|phoneme|say-as|sub|amazon:[\w-]+|mstts:[\w-]+)\b[^>]*>", re.I)
_DROP_TAGS = re.compile(r"<(?P<tag>audio|mark|desc)\b[^>]*/?>(?:.*?</(?P=tag)\s*>)?", re.I)
_ATTR = re.compile(r"(?P<key>[\w-]+)\s*=\s*[\"'](?P<value>[^\"']*)[\"']")
_STRENGTH = {"none": 0.0, "x-weak": 0.1, "weak": 0.2, "medium": 0.4, "strong": 0.7, "x-strong": 1.2}

# --- characters -----------------------------------------------------------------------------------------
_EMOJI = re.compile("[\U0001F000-\U0001FAFF\u2600-\u27BF\u2B00-\u2BFF\u2300-\u23FF\U0001F1E6-\U0001F1FF]")
_EMOJI_JOINERS = re.compile("[\uFE0E\uFE0F\u200D\U0001F3FB-\U0001F3FF\u20E3]")
_RTL = {"Hebrew": "\u0590-\u05FF\uFB1D-\uFB4F", "Arabic": "\u0600-\u06FF\u0750-\u077F\u08A0-\u08FF\uFB50-\uFDFF\uFE70-\uFEFF",
        "Syriac": "\u0700-\u074F", "Thaana": "\u0780-\u07BF", "N'Ko": "\u07C0-\u07FF"}
_RTL_RUN = {name: re.compile(f"[{chars}]+(?:[\\s\u064B-\u065F]*[{chars}]+)*") for name, chars in _RTL.items()}
_SPACES = re.compile(r"[ \t]{2,}")
_CJK = re.compile("[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]")  # numbers in CJK text are left to the engine


def clean_text(text: str, options: CleanOptions | None = None) -> tuple[str, list[Note]]:
    """Clean a whole script line by line (the line count is kept); returns the text and what was done."""
    options = options or CleanOptions()
    notes: list[Note] = []
    out = []
    fenced = False
    for number, line in enumerate(text.split("\n"), start=1):
        if options.markup and _FENCE.match(line):
            fenced = not fenced
            notes.append(Note(number, "removed", "Markdown code fence (the code's words are kept)"))
            out.append("")
            continue
        if voice_hint(line):
            notes.append(Note(number, "warning", f"voice hint {line.strip()!r} is for chapters of a book (higgs import / higgs build "
                                                 "BOOK); not spoken here: choose the voice with --voice"))
            out.append("")
            continue
        line = _characters(line, number, options, notes)
        if options.markup and not fenced:
            line = _outside_controls(line, lambda part, n=number: _markdown(_ssml(part, n, notes), n, notes))
        out.append(line)
    return "\n".join(out), notes


def _outside_controls(line: str, clean: Any) -> str:
    """Clean the text between control tags; `[music: my_bed_.ogg]` keeps its file name as written."""
    from .transcript import CONTROL_TAG

    tags = list(CONTROL_TAG.finditer(line))
    if not tags:
        return clean(line)
    pieces, pos = [], 0
    for m in tags:
        pieces += [clean(line[pos:m.start()]) if line[pos:m.start()].strip() else line[pos:m.start()], m.group(0)]
        pos = m.end()
    return "".join(pieces) + (clean(line[pos:]) if line[pos:].strip() else line[pos:])


def _characters(line: str, number: int, options: CleanOptions, notes: list[Note]) -> str:
    invisible = [ch for ch in line if unicodedata.category(ch) == "Cf" and ch not in "\u200d"]
    if invisible:
        names = sorted({unicodedata.name(ch, f"U+{ord(ch):04X}").lower() for ch in invisible})
        notes.append(Note(number, "removed", f"{len(invisible)} invisible character(s): {', '.join(names)}"))
        line = "".join(ch for ch in line if ch not in invisible)
    line = line.replace("\u00a0", " ").replace("\u202f", " ")
    if options.emoji != "keep" and _EMOJI.search(line):
        found = _EMOJI.findall(line)
        if options.emoji == "name":
            line = _EMOJI.sub(lambda m: f" {unicodedata.name(m.group(0), 'emoji').lower()} ", line)
            notes.append(Note(number, "converted", f"emoji read by name: {', '.join(unicodedata.name(e, 'emoji').lower() for e in found)}"))
        else:
            line = _EMOJI.sub(" ", line)
            notes.append(Note(number, "removed", f"{len(found)} emoji ({''.join(found)}); --emoji name reads them out"))
        line = _EMOJI_JOINERS.sub("", line)
    return line.replace("\u200d", "")


def _markdown(line: str, number: int, notes: list[Note]) -> str:
    done: list[str] = []
    if _RULE.match(line) or _TABLE_RULE.match(line):
        notes.append(Note(number, "removed", "Markdown rule" if _RULE.match(line) else "Markdown table rule"))
        return ""
    if _ENTITY.search(line):
        line = html.unescape(line)
        done.append("HTML entities decoded")
    if _TABLE_ROW.match(line):
        line = ", ".join(cell.strip() for cell in line.strip().strip("|").split("|") if cell.strip())
        done.append("table row read as a list")
    line, n = _DEEP_HEADING.subn("", line)
    if n:
        done.append("level 4-6 heading read as a paragraph (only # to ### make chapters)")
    if _REF_DEF.match(line):
        notes.append(Note(number, "removed", "Markdown link definition"))
        return ""
    for pattern, what, repl in ((_COMMENT, "HTML comment", " "), (_IMAGE, "image (alt text kept)", r"\g<alt>"),
                                (_AUTOLINK, "link", r"\g<url>"), (_LINK, "link (its words kept)", r"\g<text>"),
                                (_URL, "web address (read as its host name)", r"\g<host>"), (_CODE, "inline code marks", r"\g<code>")):
        line, n = pattern.subn(repl, line)
        if n:
            done.append(what)
    for pattern in _EMPHASIS:
        line, n = pattern.subn(r"\g<w>", line)
        if n:
            done.append("emphasis marks")
    for pattern, what in ((_QUOTE, "quote marker"), (_BULLET, "list marker")):
        line, n = pattern.subn(r"\1", line)
        if n:
            done.append(what)
    if done:
        notes.append(Note(number, "removed", "Markdown " + ", ".join(dict.fromkeys(done))))
    return line


def _attrs(text: str) -> dict[str, str]:
    return {m.group("key").lower(): m.group("value") for m in _ATTR.finditer(text)}


def _break(m: re.Match[str], number: int, notes: list[Note]) -> str:
    attrs = _attrs(m.group("attrs"))
    seconds = _STRENGTH.get(attrs.get("strength", "medium"), 0.4)
    time = attrs.get("time", "")
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s)?\s*", time)
    if found:
        seconds = float(found.group(1)) / (1000 if found.group(2) == "ms" else 1)
    elif time:
        notes.append(Note(number, "warning", f"<break time={time!r}> is not a time; used {seconds} s"))
    notes.append(Note(number, "converted", f"SSML <break> -> [pause:{seconds:g}]"))
    return f" [pause:{seconds:g}] " if seconds > 0 else " "


def _say_as(m: re.Match[str], number: int, notes: list[Note]) -> str:
    kind = _attrs(m.group("attrs")).get("interpret-as", "").lower()
    words = m.group("w")
    if kind in ("characters", "spell-out", "verbatim", "telephone", "digits"):
        notes.append(Note(number, "converted", f"SSML say-as {kind}: {words!r} spelled out"))
        return " ".join(ch for ch in words if not ch.isspace() and ch not in "-()")
    if kind == "ordinal" and words.strip().isdigit():
        from num2words import num2words

        notes.append(Note(number, "converted", f"SSML say-as ordinal: {words}"))
        return num2words(int(words), to="ordinal")
    if kind not in ("cardinal", "number", "date", "time", "currency", ""):
        notes.append(Note(number, "warning", f"SSML say-as {kind!r} is not supported; the words are read as written"))
    return words


def _ssml(line: str, number: int, notes: list[Note]) -> str:
    if "<" not in line:
        return line
    line = _BREAK.sub(lambda m: _break(m, number, notes), line)
    line = _SAY_AS.sub(lambda m: _say_as(m, number, notes), line)
    if any(not m.group("alias").strip() for m in _SUB.finditer(line)):
        notes.append(Note(number, "warning", "SSML <sub alias=\"\"> gives no words; its text is read instead"))
    line, n = _SUB.subn(lambda m: m.group("alias") if m.group("alias").strip() else m.group("inner"), line)
    if n:
        notes.append(Note(number, "converted", "SSML <sub alias> read as its alias"))
    line, n = _DROP_TAGS.subn(" ", line)
    if n:
        notes.append(Note(number, "warning", "SSML <audio>/<mark> dropped: this tool cannot play or mark inside speech"))
    warned = sorted({m.group("tag").lower() for m in _WARN_TAGS.finditer(line)})
    if warned:
        line = _WARN_TAGS.sub("", line)
        notes.append(Note(number, "warning", f"SSML <{'>, <'.join(warned)}> not supported by the engines here; stripped, words kept"))
    line, n = _QUIET_TAGS.subn(" ", line)
    if n:
        notes.append(Note(number, "removed", f"{n} SSML/HTML structure tag(s)"))
    broken = _BROKEN_TAG.search(line)
    if broken:  # `<break time="1s" then`, `<breaktime="1s"/>`: not a tag we can read, so its text would be spoken
        notes.append(Note(number, "warning", f"{broken.group(0)[:40]!r} looks like an SSML/HTML tag this tool cannot read, so it is spoken "
                                             "as text; fix it (e.g. close it with `/>`) or remove it"))
    return _SPACES.sub(" ", line)


_BROKEN_TAG = re.compile(r"</?[A-Za-z][\w:-]*(?:\s+[\w:-]+\s*=|=|\s*/?>)[^>]{0,40}")  # tag-shaped text left after cleaning


# --- the spoken form: numbers, abbreviations, unspeakable scripts ------------------------------------------
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December")
_CURRENCY = {"$": "USD", "£": "GBP", "€": "EUR", "¥": "JPY"}
_ABBREVIATIONS = {
    r"\bDr\.(?=\s+[A-Z])": "Doctor", r"\bMr\.": "Mister", r"\bMrs\.": "Missus", r"\bMs\.(?=\s+[A-Z])": "Miz",
    r"\bProf\.(?=\s+[A-Z])": "Professor", r"\bSt\.(?=\s+[A-Z])": "Saint", r"\bJr\.": "Junior", r"\bSr\.(?=\s)": "Senior",
    r"\be\.g\.": "for example", r"\bi\.e\.": "that is", r"\betc\.": "et cetera", r"\bvs\.?(?=\s)": "versus",
    r"\bNo\.(?=\s*\d)": "number", r"\bapprox\.": "approximately", r"\bDept\.": "Department",
}
_ABBREVIATION_RES = [(re.compile(k), v) for k, v in _ABBREVIATIONS.items()]
_NUM = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?"
_MONEY = re.compile(rf"(?P<sym>[$£€¥])\s?(?P<num>{_NUM})(?:\s?(?P<scale>thousand|million|billion|trillion|[kKmMbB]n?)\b)?")
_PERCENT = re.compile(rf"(?P<num>-?(?:{_NUM}))\s?%")
_ORDINAL = re.compile(r"\b(?P<num>\d+)(?:st|nd|rd|th)\b")
_ISO_DATE = re.compile(r"\b(?P<y>\d{4})-(?P<m>\d{2})-(?P<d>\d{2})\b")
_MONTH_DATE = re.compile(rf"\b(?P<month>{'|'.join(_MONTHS)})\s+(?P<d>\d{{1,2}})(?:st|nd|rd|th)?\b(?:,?\s+(?P<y>\d{{4}})\b)?")
_TIME = re.compile(r"\b(?P<h>\d{1,2}):(?P<m>\d{2})\b(?:\s?(?P<ampm>[aApP])\.?[mM]\.?)?")
_YEAR = re.compile(r"(?<![\d.,$£€¥])\b(?P<y>1[1-9]\d\d|20\d\d)\b(?![.,]\d)(?!\s?%)")
_DECADE = re.compile(r"\b(?P<y>1[1-9]\d0|20\d0)s\b")
_YEAR_RANGE = re.compile(r"\b(?P<a>1[1-9]\d\d|20\d\d)[-–](?P<b>1[1-9]\d\d|20\d\d|\d\d)\b(?!-)")
_PHONE = re.compile(r"(?<![\w-])(?:\(\d{3}\)\s?|\d{3}[-.])?\d{3}-\d{4}(?![\w-])")  # 555-1234, (555) 123-4567: digit by digit
_NUMBER = re.compile(rf"(?<![\w.])(?P<neg>-)?(?P<num>{_NUM})(?![\w])")


def _n2w(value: float | int, **kw) -> str:
    from num2words import num2words

    return num2words(value, lang="en", **kw).replace(",", "")


def _number(text: str) -> str:
    return _n2w(float(text.replace(",", "")) if "." in text else int(text.replace(",", "")))


def _money(m: re.Match[str]) -> str:
    code, num, scale = _CURRENCY[m.group("sym")], m.group("num").replace(",", ""), m.group("scale")
    unit = {"USD": "dollars", "GBP": "pounds", "EUR": "euros", "JPY": "yen"}[code]
    if scale:
        word = {"k": "thousand", "m": "million", "b": "billion", "bn": "billion"}.get(scale.lower(), scale.lower())
        return f"{_number(num)} {word} {unit}"
    if code == "JPY" or "." not in num:
        return f"{_n2w(int(float(num)))} {unit if num != '1' else unit.rstrip('s')}"
    return _n2w(float(num), to="currency", currency=code).replace(",", "")


def _time(m: re.Match[str]) -> str:
    hour, minute, ampm = int(m.group("h")), int(m.group("m")), m.group("ampm")
    if hour > 23 or minute > 59:
        return m.group(0)
    words = _n2w(hour)
    if minute == 0:
        words += "" if ampm else " o'clock" if hour <= 12 else " hundred"
    else:
        words += (" oh " if minute < 10 else " ") + _n2w(minute)
    return words + (f" {ampm.upper()} M" + ("." if m.group(0).endswith(".") else "") if ampm else "")


def _date(month: int, day: int, year: str | None) -> str:
    words = f"{_MONTHS[month - 1]} {_n2w(day, to='ordinal')}"
    return words + (f", {_n2w(int(year), to='year')}" if year else "")


def _year_range(m: re.Match[str]) -> str:
    a, b = m.group("a"), m.group("b")
    end = int(a[:2] + b) if len(b) == 2 else int(b)
    return f"{_n2w(int(a), to='year')} to {_n2w(end, to='year')}" if end > int(a) else m.group(0)


def _digits(m: re.Match[str]) -> str:
    groups = re.findall(r"\d+", m.group(0))
    return ", ".join(" ".join(_n2w(int(d)) if d != "0" else "oh" for d in group) for group in groups)


def _percent(m: re.Match[str]) -> str:
    num = m.group("num")
    return f"minus {_number(num[1:])} percent" if num.startswith("-") else f"{_number(num)} percent"


def _iso_date(m: re.Match[str]) -> str:
    month, day = int(m.group("m")), int(m.group("d"))
    return _date(month, day, m.group("y")) if 1 <= month <= 12 and 1 <= day <= 31 else m.group(0)


def _month_date(m: re.Match[str]) -> str:
    day = int(m.group("d"))
    return _date(_MONTHS.index(m.group("month")) + 1, day, m.group("y")) if 1 <= day <= 31 else m.group(0)


def _rules() -> list[tuple[re.Pattern[str], Any]]:
    """Applied in this order: abbreviations, money, percentages, dates, times, ordinals, decades, years, other numbers."""
    return [*((pattern, lambda m, w=words: w) for pattern, words in _ABBREVIATION_RES),
            (_PHONE, _digits), (_MONEY, _money), (_PERCENT, _percent), (_ISO_DATE, _iso_date), (_YEAR_RANGE, _year_range), (_MONTH_DATE, _month_date), (_TIME, _time),
            (_ORDINAL, lambda m: _n2w(int(m.group("num")), to="ordinal")), (_DECADE, lambda m: _decade(int(m.group("y")))),
            (_YEAR, lambda m: _n2w(int(m.group("y")), to="year")),
            (_NUMBER, lambda m: ("minus " if m.group("neg") else "") + _number(m.group("num")))]


FLOAT_DIGITS = 15  # digits a float holds exactly; decimals longer than this are not read out


def numbers_to_words(text: str, changes: list[tuple[str, str]] | None = None) -> str:
    """English numbers, currencies, percentages, dates, times, ordinals and abbreviations as a person reads them.
    Each replacement is appended to `changes` as (written, spoken) when given."""
    for pattern, read in _rules():
        text = pattern.sub(_recorded(read, changes), text)
    return text


def _recorded(read: Any, changes: list[tuple[str, str]] | None) -> Any:
    def replace(m: re.Match[str]) -> str:
        if "." in m.group(0) and len(re.sub(r"\D", "", m.group(0))) > FLOAT_DIGITS:
            return m.group(0)  # past a float's precision: words would name another number; the engine reads the digits
        try:
            new = read(m)
        except (ArithmeticError, ValueError):  # num2words gives up on some huge values: left as written
            return m.group(0)
        if changes is not None and new != m.group(0):
            changes.append((m.group(0), new))
        return new
    return replace


def _decade(year: int) -> str:
    words = _n2w(year, to="year")
    return words[:-1] + "ies" if words.endswith("y") else words + "s"


def unspeakable(text: str, language: str) -> tuple[str, list[str]]:
    """Drop runs of scripts a voice of `language` cannot speak (right-to-left scripts on a non-RTL voice)."""
    found = []
    for name, pattern in _RTL_RUN.items():
        if language.lower().startswith(("he", "iw", "ar", "fa", "ur", "syr", "dv")):
            continue
        if pattern.search(text):
            found.append(name)
            text = pattern.sub(" ", text)
    return re.sub(r"\s{2,}", " ", text).strip() if found else text, found


def spoken(text: str, language: str = "en", numbers: str = "words", lexicon: Any = None,
           engine: str = "") -> tuple[str, list[tuple[str, str]], str]:
    """What the engine is given for a chunk's text: numbers read out (English voices, non-CJK text), unspeakable
    scripts dropped, then the lexicon; with (kind, message) notes to report against the chunk's line, and the
    text before the lexicon (what a listener should hear written out: respellings and phonemes are not words)."""
    notes: list[tuple[str, str]] = []
    if numbers == "words" and language.lower().startswith("en") and not _CJK.search(text):
        changes: list[tuple[str, str]] = []
        text = numbers_to_words(text, changes)
        if changes:
            notes.append(("converted", "read out: " + "; ".join(f"{a!r} -> {b!r}" for a, b in changes)))
    text, dropped = unspeakable(text, language)
    if dropped:
        notes.append(("warning", f"{' and '.join(dropped)} letters dropped: a voice for {language!r} cannot speak them; "
                                 "give this speaker a voice in that language"))
    heard = text
    if lexicon is not None:
        changes = []
        text = lexicon.apply(text, engine, changes)
        if changes:
            notes.append(("converted", "lexicon: " + "; ".join(f"{a!r} -> {b!r}" for a, b in dict.fromkeys(changes))))
    return text, notes, heard
