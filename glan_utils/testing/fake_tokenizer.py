"""A word-level tokenizer served over vLLM's `/tokenizer_info`, `/tokenize` and `/detokenize` endpoints.

lm-eval's `local-completions` model auto-detects these (its "remote" tokenizer backend) and uses them to count
context tokens for loglikelihood, so multiple-choice tasks run against the fake server with no Hugging Face
tokenizer to download. Tokens are whitespace-separated words; ids are assigned in order of first sight.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import web

EOS = "</s>"
MAX_MODEL_LEN = 32768


@dataclass
class WordTokenizer:
    """Whitespace tokenizer with a growing vocabulary (id 0 is the end-of-sequence token)."""

    words: list[str] = field(default_factory=lambda: [EOS])
    ids: dict[str, int] = field(default_factory=lambda: {EOS: 0})

    def encode(self, text: str) -> list[int]:
        """Token ids of the words of `text`, adding unseen words to the vocabulary."""
        return [self.ids[word] if word in self.ids else self._add(word) for word in text.split()]

    def decode(self, ids: list[int]) -> str:
        """The words of `ids` joined by single spaces (unknown ids decode as their number)."""
        return " ".join(self.words[i] if 0 <= i < len(self.words) else str(i) for i in ids)

    def routes(self) -> list[web.RouteDef]:
        """The vLLM-style tokenizer endpoints, served at the server root (not under /v1)."""
        return [
            web.get("/tokenizer_info", self._info),
            web.post("/tokenize", self._tokenize),
            web.post("/detokenize", self._detokenize),
        ]

    def _add(self, word: str) -> int:
        self.ids[word] = len(self.words)
        self.words.append(word)
        return self.ids[word]

    async def _info(self, _: web.Request) -> web.Response:
        return web.json_response(
            {"eos_token": EOS, "bos_token": None, "pad_token": EOS, "model_max_length": MAX_MODEL_LEN}
        )

    async def _tokenize(self, request: web.Request) -> web.Response:
        tokens = self.encode(str((await request.json()).get("prompt", "")))
        return web.json_response({"tokens": tokens, "count": len(tokens), "max_model_len": MAX_MODEL_LEN})

    async def _detokenize(self, request: web.Request) -> web.Response:
        return web.json_response({"prompt": self.decode(list((await request.json()).get("tokens", [])))})
