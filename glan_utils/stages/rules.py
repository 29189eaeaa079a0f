"""Rule checks on a QA pair that need no call: each is named, so the data set can count what it removed and why.

They catch what an LLM answer often carries besides the answer (headers, greetings, submission instructions),
what is not an answer at all (refusals, cut-off text, another language, escape garbage, too few words), and
questions that restate the syllabus instead of asking something. The checks are regular expressions and a
stopword share, so 100k pairs take seconds (benchmarks/bench_quality.py measures it). They read plain dicts
(`question`, `answer`, `difficulty`, `concepts`), so the data set applies them while streaming `answers.jsonl`.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from glan_utils.settings.data import QualityFilterSettings

Pair = Mapping[str, Any]

_HEADER = re.compile(
    r"^\s*(?:[#*_ ]*)(?:subject|name|date|course|student|class|assignment|homework(?: \d+| assignment)?|"
    r"problem set|to|from|re)\s*[:#]",
    re.IGNORECASE,
)
_DEAR = re.compile(r"^\s*dear\b", re.IGNORECASE)
_GREETING = re.compile(
    r"^\s*(?:hello|hi|hey|greetings|sure|certainly|of course|absolutely|great question|good question|"
    r"i'?d be (?:happy|glad) to|i would be (?:happy|glad) to|happy to help)\b",
    re.IGNORECASE,
)
_SUBMISSION = re.compile(
    r"\b(?:submit|hand in|turn in|upload)\b[^.\n]{0,40}\b(?:answers?|solutions?|homework|assignment|work)\b|"
    r"\bdue (?:date|by|on)\b|\bdeadline\b|\bgood luck\b",
    re.IGNORECASE,
)
_REFUSAL = re.compile(
    r"\b(?:i'?m sorry,? but|i am sorry,? but|i cannot (?:help|answer|assist|provide)|i can'?t (?:help|answer|"
    r"assist|provide)|as an ai\b|i am unable to|i'?m unable to|i'?m not able to)",
    re.IGNORECASE,
)
_ESCAPES = re.compile(r"\\u[0-9a-fA-F]{4}|\\x[0-9a-fA-F]{2}|&(?:#\d+|quot|amp|apos|lt|gt);|\\'|Ã[\x80-\xbf©¨¶]")
_DANGLING = re.compile(r"(?:[,:;(=+\-*/]|\b(?:and|or|the|a|an|of|to|with|is|are|by|for|in|that|then|so))\s*$", re.I)
_SYLLABUS = re.compile(
    r"\b(?:syllabus|class session|session \d+|key concepts?\s*:|learning objectives?\s*:)", re.IGNORECASE
)
_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# A few dozen words of the commonest function words per language: enough to tell languages apart in a
# paragraph, with no model. Languages not listed here are never flagged.
_STOPWORDS: dict[str, frozenset[str]] = {
    "english": _words(
        "the of and to in is that for it as with on be by this are we an at or from which can its if not so "
        "then have has was where when there these their than also each into our use using let"
    ),
    "french": _words(
        "le la les des est et un une du en que qui pour dans sur par pas plus avec ce cette sont nous au aux ou si donc"
    ),
    "german": _words(
        "der die das und ist ein eine zu den von mit sich des auf für nicht im dem als auch es an werden wir "
        "oder wenn dass"
    ),
    "spanish": _words(
        "el la los las de y en que es un una por con para del se al lo como más pero sus le ya o este si entonces"
    ),
    "portuguese": _words(
        "o a os as de e em que é um uma do da dos das para com não por se na no ao mais como mas ou então"
    ),
    "italian": _words("il lo la i gli le di e che è un una per con non del della si in da al sono come ma o se quindi"),
}


_LANGUAGES_OF: dict[str, tuple[str, ...]] = {
    word: tuple(lang for lang, stop in _STOPWORDS.items() if word in stop)
    for stop in _STOPWORDS.values()
    for word in stop
}
MIN_FUNCTION_WORDS = 3
_PUNCTUATION = ".,;:!?()[]\"'«»“”"
_SUBMISSION_HINTS = ("submit", "hand in", "turn in", "upload", "due ", "deadline", "good luck")
_REFUSAL_HINTS = ("sorry", "cannot", "can't", "can’t", "as an ai", "unable", "not able")
_SYLLABUS_HINTS = ("syllabus", "session", "key concept", "learning objective")


def _header(pair: Pair, _: QualityFilterSettings) -> bool:
    first = pair["answer"].lstrip().split("\n", 1)[0]
    return bool(_HEADER.match(first) or _DEAR.match(first))


def _greeting(pair: Pair, _: QualityFilterSettings) -> bool:
    return bool(_GREETING.match(pair["answer"]) or _GREETING.match(pair["question"]))


def _hinted(text: str, hints: tuple[str, ...]) -> bool:
    """A cheap substring pre-check, so the regular expression runs only on the few texts that may match."""
    lowered = text.casefold()
    return any(hint in lowered for hint in hints)


def _submission(pair: Pair, _: QualityFilterSettings) -> bool:
    text = pair["answer"] + "\n" + pair["question"]
    return _hinted(text, _SUBMISSION_HINTS) and bool(_SUBMISSION.search(text))


def _refusal(pair: Pair, _: QualityFilterSettings) -> bool:
    head = pair["answer"][:400]
    return _hinted(head, _REFUSAL_HINTS) and bool(_REFUSAL.search(head))


def _truncated(pair: Pair, _: QualityFilterSettings) -> bool:
    """Cut off: an open code fence or display-math block, or text that stops on a connective or an operator."""
    answer = pair["answer"].rstrip()
    return answer.count("```") % 2 == 1 or answer.count("$$") % 2 == 1 or bool(_DANGLING.search(answer[-40:]))


def stopword_share(text: str, language: str) -> float:
    """Share of the words of `text` that are function words of `language` (0 for a language not listed)."""
    words = _WORD.findall(text.casefold())
    stop = _STOPWORDS.get(language.casefold())
    return sum(w in stop for w in words) / len(words) if words and stop else 0.0


def detected_language(text: str) -> str | None:
    """The listed language whose function words clearly dominate the first ~100 words of `text` (at least three
    votes, twice any other language's; a word shared by k languages gives each 1/k); None when unclear."""
    words = text[:600].casefold().split()
    if len(text) > 600:
        words = words[:-1]  # the cut may have split the last word
    if len(words) < 12:
        return None
    votes = dict.fromkeys(_STOPWORDS, 0.0)
    for word in words:
        languages = _LANGUAGES_OF.get(word) or _LANGUAGES_OF.get(word.strip(_PUNCTUATION))
        for language in languages or ():
            votes[language] += 1 / len(languages)  # "de" is French, Spanish and Portuguese: a third each
    (best, top), (_, second) = sorted(votes.items(), key=lambda item: -item[1])[:2]
    return best if top >= MIN_FUNCTION_WORDS and top >= 2 * second else None


def _wrong_language(pair: Pair, _: QualityFilterSettings) -> bool:
    expected = str(pair.get("language") or "English").casefold()
    if expected not in _STOPWORDS:
        return False
    found = detected_language(pair["answer"])
    return found is not None and found != expected


def _escapes(pair: Pair, _: QualityFilterSettings) -> bool:
    return bool(_ESCAPES.search(pair["answer"]) or _ESCAPES.search(pair["question"]))


def _too_short(pair: Pair, limits: QualityFilterSettings) -> bool:
    least = limits.min_words_challenging if pair.get("difficulty") == "challenging" else limits.min_words_basic
    return len(pair["answer"].split()) < least


def _restates_syllabus(pair: Pair, _: QualityFilterSettings) -> bool:
    """Syllabus vocabulary in the question, or a question that is little more than its concept list."""
    question = pair["question"]
    if _hinted(question, _SYLLABUS_HINTS) and _SYLLABUS.search(question):
        return True
    concept_words = {w for c in pair.get("concepts") or () for w in _WORD.findall(str(c).casefold())}
    if len(question.split()) > 2 * len(concept_words):
        return False
    words = _WORD.findall(question.casefold())
    if not words:
        return False
    return sum(w in concept_words for w in words) >= 0.6 * len(words)


_CHECKS: dict[str, Callable[[Pair, QualityFilterSettings], bool]] = {
    "boilerplate_header": _header,
    "greeting": _greeting,
    "submission_instructions": _submission,
    "refusal": _refusal,
    "truncated": _truncated,
    "wrong_language": _wrong_language,
    "escape_garbage": _escapes,
    "answer_too_short": _too_short,
    "restates_syllabus": _restates_syllabus,
}
RULES: tuple[str, ...] = tuple(_CHECKS)
"""Every rule flag, in the order reports list them."""


def rule_flags(pair: Pair, limits: QualityFilterSettings | None = None) -> list[str]:
    """The names of the rules `pair` fails, in `RULES` order (empty = clean)."""
    limits = limits or QualityFilterSettings()
    return [name for name, check in _CHECKS.items() if check(pair, limits)]


def count_flags(pairs: Iterable[Pair], limits: QualityFilterSettings | None = None) -> Counter[str]:
    """How many pairs fail each rule (a pair may count under several)."""
    counts: Counter[str] = Counter({name: 0 for name in RULES})
    for pair in pairs:
        counts.update(rule_flags(pair, limits))
    return counts
