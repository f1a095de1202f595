"""A deterministic, model-free labeler (``context:<n>``): the explanation quotes the end of the text the
vector was read at, ``The text ends with: "... they had lunch at the [village]"`` (the last `n` words,
the current token in brackets). It interprets nothing, so an NLA trained on it learns to quote context:
the label that shows an NLA *reads* its vectors in minutes; the LLM labelers give useful explanations.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from hubkit.errors import DataError

CONTEXT_TEMPLATE = 'The text ends with: "{quote}"'
DEFAULT_WORDS = 10
MAX_WORDS = 200
TOKEN_OPEN, TOKEN_CLOSE = "[", "]"
ELLIPSIS = "..."


def mark_token(prefix: str, token: str) -> str:
    """The prefix on one line with its final token in brackets (``the vill[age]`` for a word piece); a token the
    prefix does not end with (a decode of part of a character) marks the last word."""
    if token.strip() and prefix.endswith(token):
        before = prefix[: len(prefix) - len(token)]
        core = token.strip()
        lead = token[: len(token) - len(token.lstrip())]
        tail = token[len(token.rstrip()) :]
        marked = f"{before}{lead}{TOKEN_OPEN}{core}{TOKEN_CLOSE}{tail}"
    else:
        words = prefix.split()
        head = prefix[: prefix.rstrip().rfind(words[-1])] if words else ""
        marked = f"{head}{TOKEN_OPEN}{words[-1]}{TOKEN_CLOSE}" if words else ""
    return " ".join(marked.split())


def quote_context(prefix: str, token: str, n_words: int = DEFAULT_WORDS) -> str:
    """The last `n_words` words of the marked prefix, with ``...`` in front when some were left out."""
    words = mark_token(prefix, token).split()
    quote = " ".join(words[-n_words:])
    return f"{ELLIPSIS} {quote}" if len(words) > n_words else quote


@dataclass(frozen=True)
class ContextLabeler:
    """`context:<n>`: quotes the last `n_words` words of each row's prefix, current token marked."""

    n_words: int = DEFAULT_WORDS

    def __post_init__(self) -> None:
        if not 1 <= self.n_words <= MAX_WORDS:
            raise DataError(
                f"labeler context:{self.n_words}: the word count must be between 1 and {MAX_WORDS}"
            )

    @property
    def name(self) -> str:
        return f"context:{self.n_words}"

    @property
    def prompt_sha256(self) -> str:
        """What stands for the prompt in provenance: a hash of the quoting rule and its settings."""
        rule = "\0".join((self.name, CONTEXT_TEMPLATE, TOKEN_OPEN, TOKEN_CLOSE, ELLIPSIS))
        return hashlib.sha256(rule.encode()).hexdigest()

    def explain(self, prefix: str, token: str) -> str:
        return CONTEXT_TEMPLATE.format(quote=quote_context(prefix, token, self.n_words))


def parse_context_arg(arg: str | None) -> ContextLabeler:
    """``None`` or ``""`` → the default word count; ``"12"`` → 12 words; anything else is refused."""
    if not arg:
        return ContextLabeler()
    try:
        n = int(arg)
    except ValueError:
        raise DataError(
            f"labeler context:{arg}: expected a word count, e.g. context:{DEFAULT_WORDS}"
        ) from None
    return ContextLabeler(n)
