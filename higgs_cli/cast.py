"""Casting: give every speaker a voice, with the reason, fitting the voice's gender to what the name and text say.

Order of precedence for one speaker: the explicit mapping (`--voice SPEAKER=NAME`, a project's `voices:`),
then the default voice, then an automatic pick. An automatic pick first infers the speaker's likely
gender from, in order, a description the project gives (`speakers: {SILAS: an old fisherman}`), one in
the transcript ("an old man called Silas", "Maya, a young woman"), a title in the tag (MRS_HALE,
SIR_TOBY), and the first name through gender-guesser's offline name dataset; it then hands out the
next unused bundled voice of that gender (`CAST_ORDER`). Speakers
whose gender stays unknown (NARRATOR, SPEAKER0) alternate, masculine first, counting only themselves, so
mapping another speaker never changes theirs (unless it takes their voice). When a gender's bundled
voices run out, automatic variants of that gender follow.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from .errors import VoiceError
from .options import CAST_ORDER
from .voices import Voice, auto_voice, resolve

FEMININE, MASCULINE = "feminine", "masculine"
_WORDS = {
    FEMININE: ("woman", "girl", "lady", "mother", "wife", "daughter", "sister", "aunt", "grandmother", "queen", "princess",
               "widow", "niece", "mrs", "miss", "ms", "madam", "female", "feminine", "she", "her"),
    MASCULINE: ("man", "boy", "gentleman", "father", "husband", "son", "brother", "uncle", "grandfather", "king", "prince",
                "widower", "nephew", "mr", "sir", "lord", "male", "masculine", "he", "him", "his"),
}
_TITLES = {w: g for g, words in _WORDS.items() for w in words if w in ("mrs", "miss", "ms", "madam", "lady", "queen", "mr", "sir", "lord", "king")}
_NEUTRAL_TITLES = ("dr", "doctor", "prof", "professor", "capt", "captain", "rev", "reverend", "judge", "officer", "detective", "agent")
_NOUN = r"(?P<noun>" + "|".join(w for words in _WORDS.values() for w in words if w not in ("she", "her", "he", "him", "his")) + r")"


@dataclass(frozen=True)
class Casting:
    """Speaker -> voice, and speaker -> one line saying why that voice (what `--dry-run` shows)."""

    voices: dict[str, Voice]
    why: dict[str, str]


def gender_of(voice: Voice) -> str | None:
    """A profile's gender as feminine/masculine ("female", "woman", "male" are accepted), else None."""
    g = (voice.gender or "").strip().lower()
    if g.startswith(("fem", "f", "w", "girl")):
        return FEMININE
    if g.startswith(("masc", "m", "boy")):
        return MASCULINE
    return None


def _auto_gender(voice: Voice) -> str:
    return FEMININE if voice.settings("piper").get("pitch", 1.0) >= 1.3 else MASCULINE


@lru_cache(maxsize=1)
def _detector():
    import gender_guesser.detector as detector

    return detector.Detector(case_sensitive=False)


def _described(speaker: str, text: str) -> tuple[str, str] | None:
    """(gender, the words) when the transcript describes the speaker: "a man called Silas", "Maya, a young woman"."""
    name = re.escape(_words(speaker)[0]) if _words(speaker) else None
    if not name or not text:
        return None
    patterns = (rf"\b(?:(?:a|an|the)\s+(?:[a-z'-]+\s+){{0,2}})?{_NOUN}\s+(?:called|named)\s+{name}\b", rf"\b{name}\s*,\s*(?:a|an|the)\s+(?:[a-z'-]+\s+){{0,2}}{_NOUN}\b")
    for pattern in patterns:
        found = re.search(pattern, text, re.IGNORECASE)
        if found:
            noun = found.group("noun").lower()
            return next(g for g, words in _WORDS.items() if noun in words), found.group(0)
    return None


def _gender_word(word: str) -> str | None:
    """The gender a description's word names: "woman", "she", "fisherman", "grandmother"; None for most words."""
    for gender, group in _WORDS.items():
        if word in group:
            return gender
    if word.endswith(("woman", "women")):
        return FEMININE
    if word.endswith(("man", "men")) and word not in ("human", "humans", "german", "germans", "amen"):
        return MASCULINE
    return None


def _words(speaker: str) -> list[str]:
    return [w for w in re.split(r"[^A-Za-z]+", speaker) if w]


def infer_gender(speaker: str, text: str = "", description: str | None = None) -> tuple[str | None, str]:
    """The speaker's likely gender (or None) and the reason: from a given description, the transcript text, a title or the first name."""
    if description:
        gender = next((g for w in re.findall(r"[a-z]+", description.lower()) if (g := _gender_word(w))), None)
        if gender:
            return gender, f'the project describes {speaker} as "{description}"'
    described = _described(speaker, text)
    if described:
        return described[0], f'the transcript says "{described[1]}"'
    words = [w.lower() for w in _words(speaker)]
    for w in words:
        if w in _TITLES:
            return _TITLES[w], f"the tag's title {w.upper()} is {_TITLES[w]}"
    for w in words:  # a role that says it: "Male speaker", "OLD_WOMAN", "Narrator (female)"
        gender = next((g for g, group in _WORDS.items() if w in group and w not in ("he", "him", "his", "she", "her")), None)
        if gender:
            return gender, f"the name says {w!r}"
    words = [w for w in words if w not in _NEUTRAL_TITLES] or words  # "Dr. Ada Lovelace": the first name is Ada
    if not words or re.fullmatch(r"speaker\d*", words[0]):
        return None, "the tag is not a name"
    verdict = _detector().get_gender(words[0].capitalize())
    guess = {"male": MASCULINE, "mostly_male": MASCULINE, "female": FEMININE, "mostly_female": FEMININE}.get(verdict)
    label = words[0].capitalize()
    if guess:
        return guess, f"the name {label} is {verdict.replace('_', ' ')} in gender-guesser's name data"
    return None, f"gender-guesser does not know the name {label}" if verdict == "unknown" else f"the name {label} is used for both genders"


def cast(speakers: tuple[str, ...], mapping: dict[str, str], default: str | None, distinct: bool, text: str = "",
         descriptions: dict[str, str] | None = None, names: dict[str, str] | None = None) -> Casting:
    """Give every speaker a voice: explicit mapping first, then the default, then picks of the fitting gender.

    `names` (SPEAKERn -> the name a converted script gave it) lets the mapping say `ALICE` for SPEAKER0 and lets
    casting guess a gender from the name.
    """
    names = names or {}
    mapping = by_name(mapping, names)
    unknown = sorted(set(mapping) - set(speakers))
    if unknown:
        known = ", ".join(f"{s} ({names[s]})" if s in names else s for s in speakers)
        raise VoiceError(f"--voice maps speaker {unknown[0]} which is not in the transcript; speakers are: {known}")
    chosen = {spk: resolve(spec) for spk, spec in mapping.items()}
    why = {spk: "mapped explicitly" for spk in chosen}
    taken = {v.name for v in chosen.values()}
    anonymous = 0
    autos = iter(range(1 << 16))
    for spk in speakers:
        if spk in chosen:
            continue
        if default and (not distinct or default not in taken):
            chosen[spk], why[spk] = resolve(default), "the default voice"
        else:
            gender, reason = infer_gender(names.get(spk, spk), text, (descriptions or {}).get(spk))
            if gender is None:
                gender, anonymous = (MASCULINE, FEMININE)[anonymous % 2], anonymous + 1
                reason += f"; alternating, so {gender}"
            chosen[spk] = _next_voice(gender, taken, autos)
            why[spk] = f"{reason} -> a {gender} voice"
        taken.add(chosen[spk].name)
    return Casting({spk: chosen[spk] for spk in speakers}, {spk: why[spk] for spk in speakers})


def by_name(mapping: dict[str, str], names: dict[str, str]) -> dict[str, str]:
    """Mapping keys that name a speaker (`ALICE`, `DR. SMITH`: upper-cased as --voice gives them) -> that speaker's SPEAKERn."""
    ours = {" ".join(name.split()).upper(): spk for spk, name in names.items()}
    return {ours.get(" ".join(key.split()).upper(), key): voice for key, voice in mapping.items()}


def _next_voice(gender: str, taken: set[str], autos) -> Voice:
    """The first unused bundled voice of `gender` in CAST_ORDER, else the next automatic variant of that gender."""
    for name in CAST_ORDER:
        if name not in taken:
            voice = resolve(name)
            if gender_of(voice) == gender:
                return voice
    for k in autos:
        voice = auto_voice(k)
        if _auto_gender(voice) == gender and voice.name not in taken:
            return Voice(name=voice.name, source=voice.source, description=voice.description, gender=gender, engines=voice.engines)
    raise VoiceError("ran out of automatic voices; map some speakers with --voice")
