"""Checks of a predictor's inputs that need no model (the command line runs them before loading one): the query's
text, and the error type every bad input raises. Pure Python."""

from __future__ import annotations

# The longest query accepted, in tokens of the model's tokenizer. The prompt of the synthetic evaluation budget
# (16 frames of 112x112) holds ~250 tokens besides the query, the real budgets (32 frames of ~100k pixels) ~2,200;
# the sentences of VidSTG and HC-STVG are under ~80 tokens. 256 leaves room for any sentence the model was trained
# on while refusing what is not a sentence (a pasted paragraph or file), which would outweigh the video in the prompt
# and which the model never learned to read.
MAX_QUERY_TOKENS = 256
# A cheap bound checked before the tokenizer is loaded (the command line checks it before loading the model): no
# query of MAX_QUERY_TOKENS tokens is longer than this (a token of these tokenizers is at most ~16 characters of text).
MAX_QUERY_CHARS = 16 * MAX_QUERY_TOKENS


class GroundingInputError(ValueError):
    """A bad input to the predictor (the video, the query, the model folder); the message says what and how to fix
    it, in one line."""


def check_query_text(query: str) -> str:
    """The query without surrounding white space; empty or longer than :data:`MAX_QUERY_CHARS` characters raises
    :class:`GroundingInputError` (the token limit needs the model: :meth:`Grounder.check_query`)."""
    if not isinstance(query, str):
        raise GroundingInputError(f"the query must be a string, got {type(query).__name__}")
    text = query.strip()
    if not text:
        raise GroundingInputError("the query is empty: give the sentence that describes the object, e.g. "
                                  "\"the red circle while it moves left\"")
    if len(text) > MAX_QUERY_CHARS:
        raise GroundingInputError(f"the query has {len(text)} characters; at most {MAX_QUERY_CHARS} are accepted "
                                  f"(it is limited to {MAX_QUERY_TOKENS} tokens): give one sentence")
    return text
