"""Rule checks on a QA pair that need no call: each is named, so the data set can count what it removed and why.

They catch what an LLM answer often carries besides the answer (homework headers, greetings, submission
instructions, leaked chat-template tokens), what is not an answer at all (refusals, cut-off text, repetition loops,
an echo of the question, another language, escape garbage, mojibake, too few words), and questions that carry a
homework header or restate the syllabus. The checks are regular expressions, n-gram counts and a stopword share:
about 2,000 long answers a second on one core (0.5 ms a pair on the labelled set; benchmarks/bench_quality.py).
They read plain dicts (`question`, `answer`, `difficulty`, `concepts`, `language`), so the data set applies them
while streaming `answers.jsonl`.

Each rule is measured on `tests/data/rule_pairs.jsonl` (realistic pairs of every discipline family, labelled by
hand; `tests/test_rules.py` reports per-rule precision and recall). A rule whose flags hit too many clean pairs is a
*warning*: reported, never a reason to drop a pair unless `dataset.quality.drop_flags` names it. Escape, mojibake,
template-token and truncation checks read the prose only: code blocks and inline code may legitimately hold
`\\x00`, `&amp;` or `<|im_end|>`.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from itertools import groupby
from operator import eq
from typing import Any

from glan_utils.settings.data import QualityFilterSettings

Pair = Mapping[str, Any]

_FENCED = re.compile(r"^[ \t]*(```|~~~).*?(?:^[ \t]*\1[ \t]*$|\Z)", re.MULTILINE | re.DOTALL)
_INLINE = re.compile(r"`[^`\n]+`")
_HEADER = re.compile(
    r"^[\W_]*(?:(?:student\s*)?name\s*:|student(?:\s*id)?\s*:|date\s*:\s*(?:_|$)|course\s*:|class\s*:|instructor\s*:|"
    r"homework\b\s*(?:[\d#:*_–—-]|assignment|problem|set|question|help|solutions?|$)|hw\s*#?\s*\d|"
    r"assignment\s*(?:[\d#:*]|$)|problem\s*set\b|pset\b|worksheet\s*(?:[\d#:]|$)|quiz\s*\d|exercise\s*\d|"
    r"(?:question|problem|q)\s*\d+\s*(?:\(\s*\d+\s*(?:points?|marks?|pts)\s*\))?\s*[:.)]|"
    r"lab report\b[^\n]{0,20}question|answer (?:sheet|key)\b|subject\s*:\s*(?:homework|assignment|help|question)|"
    r"dear (?:student|students|class|learner|user|reader)\b)",
    re.IGNORECASE,
)
_GREETING = re.compile(
    r"^\W*(?:(?:hello|hi|hey)(?: there)?\s*[!.]|hi there\b|greetings\b|(?:sure|certainly|of course|absolutely)"
    r"(?: thing)?\s*[!,.:—–-]|(?:what a |that's a |this is a )?(?:great|good|excellent|interesting) question\b|"
    r"i'?d be (?:happy|glad) to|i would be (?:happy|glad) to|happy to help|thanks? (?:you )?for (?:the|your|asking))",
    re.IGNORECASE,
)
_SUBMISSION = re.compile(
    r"\b(?:submit|hand in|turn in|upload|e-?mail|send)\b[^.\n]{0,40}\b(?:answers?|solutions?|homework|assignments?|"
    r"work|worksheet|problem set)\b|"
    r"\b(?:homework|assignment|answers|solutions?|worksheet|problem set|essay)\b[^.\n]{0,20}\b(?:is|are) due\b|"
    r"\b(?:good|best of) luck\b",
    re.IGNORECASE,
)
_REFUSAL = re.compile(
    r"\b(?:i['’]?m|i am) (?:really |very |so |truly )?sorry,? (?:but|i)\b|\b(?:i apologi[sz]e|my apologies),? but\b|"
    r"\b(?:i\s+(?:cannot|can['’]?t|won['’]?t|will not|am unable to|am not able to|must decline to|regret that i cannot|"
    r"do not feel comfortable|don['’]?t feel comfortable)|i['’]?m (?:unable|not able) to)\s+(?:directly |fully )?"
    r"(?:help|answer|assist|provide|complete|do (?:that|this)|solve|write|comply|fulfil|fulfill|generate|analy[sz]e|"
    r"perform|listen|browse|access|attempt|respond|be of help)|"
    r"\b(?:won['’]?t|will not) be able to help\b|\bi['’]?m afraid i (?:can['’]?t|cannot)\b|"
    r"\bas an ai\b|\bas a (?:large )?language model\b|\bi (?:do not|don['’]?t) have (?:enough (?:context|information)|"
    r"access to|the ability to|personal)|\bit (?:would not|wouldn['’]?t) be appropriate for me\b|"
    r"\b(?:this request|it) (?:violates|goes against)\b|\bcontent polic(?:y|ies)\b|\bmy guidelines\b|"
    r"\blo siento, pero no puedo\b|\bje suis désolée?, mais je ne peux\b|\bes tut mir leid, aber ich kann\b|"
    r"\bmi dispiace, ma non posso\b|\bdesculpe, mas não posso\b",
    re.IGNORECASE,
)
_TEMPLATE = re.compile(
    r"<\|[a-z][a-z_]{1,30}\|>|\[/?INST\]|<</?SYS>>|<(?:start|end)_of_turn>|<(?:eos|bos|pad|unk)>|^\s*<s>|</s>\s*$|"
    r"^###\s*(?:Instruction|Response|Input)\s*:|^Human\s*:|^(?:assistant|user|system|model)\s*$|^User\s*:(?s:.*?)^Assistant\s*:",
    re.MULTILINE,
)
_ESCAPES = re.compile(r"\\u[0-9a-fA-F]{4}|\\x[0-9a-fA-F]{2}|\\'|(?:\\n(?=[A-Z0-9\\\s*#(-]|$).*){2}")
_ENTITIES = re.compile(r"&(?:#\d+|#x[0-9a-fA-F]+|quot|amp|apos|lt|gt|nbsp);")
_MARKUP_TOPIC = re.compile(r"\b(?:html|xml|markup|entit(?:y|ies)|escap\w*|character reference)", re.IGNORECASE)
_ENCODING_TOPIC = re.compile(
    r"\b(?:escape (?:sequences?|characters?|codes?)|escaping|unicode|encod\w*|utf-?8|ascii|bytes?|string literals?|"
    r"mojibake)\b",
    re.IGNORECASE,
)
_CHARSET_TOPIC = re.compile(
    r"\b(?:mojibake|encod\w*|decod\w*|unicode|utf-?8|cp1252|latin-?1|windows-1252|charset)\b", re.I
)
# A lead byte of a UTF-8 sequence read as cp1252/latin-1, followed by continuation bytes read the same way.
_MOJIBAKE = re.compile(
    r"[\u00c2-\u00f4][\u0080-\u00bf\u0152\u0153\u0160\u0161\u0178\u017d\u017e\u0192\u02c6\u02dc"
    r"\u2013\u2014\u2018-\u201e\u2020-\u2022\u2026\u2030\u2039\u203a\u20ac\u2122]{1,3}|\ufffd"
)
_DANGLING = re.compile(
    r"(?:[,(=+\-/×÷]|\b(?:and|or|nor|but|the|a|an|of|to|with|is|are|was|were|by|for|in|on|at|from|into|than|"
    r"that|which|who|then|so|because|as|if|when|where|while|between|its|their|our|your|his|her|this|these|those))\s*$",
    re.IGNORECASE,
)
_TERMINAL = tuple(".!?…)]}\"'”’»*_`$|%:;°")
_UNFINISHED_SUM = re.compile(r"[+\-×÷*/]\s*\d[\d.,]*\s*$")
_OPEN_ENDED = re.compile(r"\d\s*$|=\s*[^=\s]+(?:\s+[^=\s]+){0,2}\s*$|^\W*(?:final\s+)?answer\b", re.IGNORECASE)
_LETTERS = re.compile(r"[^\W\d_][^\W\d_ '’-]*(?: [^\W\d_][^\W\d_'’-]*)*")
_LIST_ITEM = re.compile(r"^\s*(?:[-*+•]|\d+[.)]|\(?[a-z]\))\s+")
_SYLLABUS = re.compile(
    r"\b(?:syllabus|class session|session \d+|key concepts?\s*(?::|of|are|include)|learning objectives?\s*:|"
    r"(?:this|today'?s) (?:class |lecture )?session (?:covers|we)|in this (?:session|lecture|unit|module),? we "
    r"(?:cover|discuss|learn|study))",
    re.IGNORECASE,
)
_LONG_TOKEN = re.compile(r"\S{20,}")
_RULE_CHARS = "-=_*#~|+"  # a run of these draws a line or a table border, not a loop
_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)
_ALNUM = re.compile(r"[\W_]+", re.UNICODE)


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
_REFUSAL_HINTS = (  # one of these is in every text _REFUSAL matches: a cheap gate before it
    "sorry",
    "apolog",
    "cannot",
    "cant",
    "comfortable",
    "decline",
    "regret",
    "can't",
    "can’t",
    "won't",
    "won’t",
    "will not",
    "unable",
    "not able",
    "afraid",
    "as an ai",
    "language model",
    "have enough",
    "have access",
    "the ability",
    "have personal",
    "appropriate",
    "violates",
    "goes against",
    "polic",
    "guidelines",
    "lo siento",
    "désolé",
    "leid",
    "dispiace",
    "desculpe",
)
_TEMPLATE_HINTS = ("<", "[inst]", "[/inst]", "###", "human", "user", "assistant", "system", "model")
_SUBMISSION_HINTS = ("submit", "hand in", "turn in", "upload", "mail", "send", "due", "luck")
_SYLLABUS_HINTS = ("syllabus", "session", "key concept", "learning objective", "in this")
LOOP_NGRAM = 6
"""Words per n-gram of the repetition check."""
LOOP_SHARE = 0.3
"""Share of an answer's words inside n-grams seen three times or more at which it is a loop."""


@lru_cache(maxsize=8)  # several rules read the same answer's prose
def prose(text: str) -> str:
    """`text` without fenced code blocks and inline code (a block left open runs to the end and is dropped too)."""
    if "`" not in text and "~~~" not in text:
        return text
    return _INLINE.sub(" ", _FENCED.sub("\n", text))


def _header(pair: Pair, _: QualityFilterSettings) -> bool:
    """A homework header on the answer's or the question's first line ("Homework 3", "Name: ____", "Q2 (5 marks):");
    a letter's "Dear Ms. Okafor," or a memo's "To:" is the content asked for, not a header."""
    return any(_HEADER.match(pair[key].lstrip().split("\n", 1)[0]) for key in ("answer", "question"))


def _greeting(pair: Pair, _: QualityFilterSettings) -> bool:
    """A chat opener ("Sure!", "Great question!") before the answer or the question; "Hi Tom," opens an email."""
    return bool(_GREETING.match(pair["answer"]) or _GREETING.match(pair["question"]))


def _hinted(text: str, hints: tuple[str, ...]) -> bool:
    """A cheap substring pre-check, so the regular expression runs only on the few texts that may match."""
    lowered = text.casefold()
    return any(hint in lowered for hint in hints)


def _submission(pair: Pair, _: QualityFilterSettings) -> bool:
    """Instructions to the student in the answer's last lines ("submit your answers", "good luck"); a due date in a
    finance question or a project deadline is content."""
    lines = [line for line in prose(pair["answer"]).splitlines() if line.strip()]
    tail = "\n".join(lines[-2:])
    return _hinted(tail, _SUBMISSION_HINTS) and bool(_SUBMISSION.search(tail))


def _refusal(pair: Pair, _: QualityFilterSettings) -> bool:
    """A refusal or an AI disclaimer in the answer's opening."""
    head = pair["answer"][:400]
    return _hinted(head, _REFUSAL_HINTS) and bool(_REFUSAL.search(head))


def _truncated(pair: Pair, _: QualityFilterSettings) -> bool:
    """Cut off: an open code fence or display-math block, a half table row, or a last prose line that stops on a
    comma, an operator or a connective, or mid-sentence: without end punctuation where the answer's other lines of
    its kind (list items, or the rest) have it. A line may end on ":" or ";" (a heading, a statement of code), on a
    number or an equation, or bare in a poem, a signature or a list whose items go without."""
    answer = pair["answer"].rstrip()
    if answer.count("```") % 2 or answer.count("$$") % 2:
        return True
    if answer.endswith(("```", "`", "$$")):
        return False
    lines = [line.strip() for line in prose(answer).splitlines() if line.strip()]
    if not lines:
        return False
    last, earlier = lines[-1], lines[:-1]
    if last.startswith("|"):
        return not last.endswith("|")
    if _DANGLING.search(last[-40:]) or (_UNFINISHED_SUM.search(last) and "=" not in last):
        return True
    if last.endswith(_TERMINAL) or last.startswith("#") or _OPEN_ENDED.search(last):
        return False
    item = bool(_LIST_ITEM.match(last))
    peers = [line for line in earlier if bool(_LIST_ITEM.match(line)) == item]
    if 2 * sum(not line.endswith(_TERMINAL) for line in peers) > len(peers):
        return False  # this answer's style ends such lines bare
    if item or len(last.split()) >= 6:
        return bool(peers) or not item
    # a short last line: a signature ("Priya Shah", "Head Teacher"), or a paragraph cut just after it began
    signature = all(word[:1].isupper() for word in last.split()) and len(last) >= 3
    before = earlier[-1] if earlier else ""
    return bool(_LETTERS.fullmatch(last)) and not signature and before.endswith(_TERMINAL) and len(before.split()) >= 6


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
    """Literal escapes (`\\u00e9`, `\\'`, a JSON `\\n` for every newline) or HTML entities in prose; a pair about
    encodings or markup may name them outside code, so for those pairs only the other kind counts."""
    topic = pair["question"] + "\n" + pair["answer"]
    for text in (prose(pair["answer"]), prose(pair["question"])):
        if "\\" in text and _ESCAPES.search(text) and not _ENCODING_TOPIC.search(topic):
            return True
        if "&" in text and _ENTITIES.search(text) and not _MARKUP_TOPIC.search(topic):
            return True
    return False


def _mojibake(pair: Pair, _: QualityFilterSettings) -> bool:
    """UTF-8 text decoded as cp1252 or latin-1 ("Ã©" for "é", "â€™" for "’"), or replacement characters, anywhere
    (code too) unless the pair is about encodings."""
    text = pair["answer"] + "\n" + pair["question"]
    if text.isascii():
        return False
    for match in _MOJIBAKE.finditer(text):
        if _misdecoded(match.group()):
            return not _CHARSET_TOPIC.search(text)
    return False


def _misdecoded(text: str) -> bool:
    """Whether `text` is UTF-8 bytes read as cp1252 or latin-1 (or a replacement character)."""
    if text == "\ufffd":
        return True
    for codec in ("cp1252", "latin-1"):
        try:
            text.encode(codec).decode("utf-8")
        except UnicodeError:
            continue
        return True
    return False


def _repetition(pair: Pair, _: QualityFilterSettings) -> bool:
    """A degenerate loop, the commonest failure of small models: a line three times in a row, a word twenty times
    in a row ("the the the ..."), a 20-character token of one or two characters ("......"), or most of the answer
    inside word n-grams seen three times or more."""
    answer = pair["answer"]
    lines = [line.strip() for line in answer.splitlines() if len(line.split()) >= 2]
    if any(a == b == c for a, b, c in zip(lines, lines[1:], lines[2:], strict=False)):
        return True
    if any(len(set(token)) <= 2 and token.strip(_RULE_CHARS) for token in _LONG_TOKEN.findall(prose(answer))):
        return True
    words = answer.casefold().split()
    if sum(map(eq, words, words[1:])) >= 19 and any(len(list(run)) >= 20 for _, run in groupby(words)):
        return True
    if len(words) < 4 * LOOP_NGRAM:
        return False
    grams = list(zip(*(words[k:] for k in range(LOOP_NGRAM)), strict=False))
    counts = Counter(grams)
    if max(counts.values()) < 3:
        return False
    covered = end = 0
    for i, gram in enumerate(grams):
        if counts[gram] >= 3:
            covered += i + LOOP_NGRAM - max(i, end)
            end = i + LOOP_NGRAM
    return covered >= LOOP_SHARE * len(words)


def _template_tokens(pair: Pair, _: QualityFilterSettings) -> bool:
    """Chat-template or role markers leaked into the answer (`<|im_end|>`, `[INST]`, `</s>`, "### Response:")."""
    answer = pair["answer"]
    return _hinted(answer, _TEMPLATE_HINTS) and bool(_TEMPLATE.search(prose(answer)))


def _normalised(text: str) -> str:
    return _ALNUM.sub(" ", text.casefold()).strip()


def _echo(pair: Pair, _: QualityFilterSettings) -> bool:
    """The answer is the question again, give or take a few words."""
    if len(pair["answer"]) > 2 * len(pair["question"]) + 200:
        return False
    question, answer = _normalised(pair["question"]), _normalised(pair["answer"])
    return bool(question) and question in answer and len(answer.replace(question, " ").split()) < 10


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


@dataclass(frozen=True)
class Rule:
    """A named check; `drops` is False for a warning (counted and shown, dropped only when `drop_flags` names it)."""

    name: str
    check: Callable[[Pair, QualityFilterSettings], bool]
    drops: bool = True


_RULES: tuple[Rule, ...] = (
    Rule("boilerplate_header", _header),
    Rule("greeting", _greeting),
    Rule("submission_instructions", _submission),
    Rule("refusal", _refusal),
    Rule("template_tokens", _template_tokens),
    Rule("repetition_loop", _repetition),
    Rule("echoes_question", _echo),
    Rule("truncated", _truncated),
    Rule("wrong_language", _wrong_language),
    Rule("escape_garbage", _escapes),
    Rule("mojibake", _mojibake),
    Rule("answer_too_short", _too_short),
    Rule("restates_syllabus", _restates_syllabus),
)
RULES: tuple[str, ...] = tuple(rule.name for rule in _RULES)
"""Every rule flag, in the order reports list them."""
DROPPING: tuple[str, ...] = tuple(rule.name for rule in _RULES if rule.drops)
"""The rules that drop a pair by default (`dataset.quality.drop_flags: null`); the others are warnings."""


def rule_flags(pair: Pair, limits: QualityFilterSettings | None = None) -> list[str]:
    """The names of the rules `pair` fails, in `RULES` order (empty = clean)."""
    limits = limits or QualityFilterSettings()
    return [rule.name for rule in _RULES if rule.check(pair, limits)]


def count_flags(pairs: Iterable[Pair], limits: QualityFilterSettings | None = None) -> Counter[str]:
    """How many pairs fail each rule (a pair may count under several)."""
    counts: Counter[str] = Counter({name: 0 for name in RULES})
    for pair in pairs:
        counts.update(rule_flags(pair, limits))
    return counts
