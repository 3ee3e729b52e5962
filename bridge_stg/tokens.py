"""The special tokens Bridge-STG adds to a Qwen2-VL vocabulary, and the label of unsupervised positions.

Kept in the lowest layer because both the collator (``data``) and the backbone adapter (``model``) need them, and
``model`` does not import ``data``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Family = Literal["qwen2_vl", "qwen2_5_vl"]  # the backbone families (model_type of the checkpoint's config.json)
IGNORE_INDEX = -100  # the label of a sequence position that no loss reads (the Hugging Face convention)


@dataclass(frozen=True)
class GroundingTokens:
    """The special tokens Bridge-STG adds to the vocabulary: one frame-query token and K bridge tokens."""

    frame_query: str = "<|frame_q|>"
    bridge_template: str = "<|bridge_{}|>"
    num_bridge: int = 4

    def __post_init__(self) -> None:
        if self.num_bridge < 1:
            raise ValueError(f"num_bridge must be >= 1, got {self.num_bridge}")
        if "{}" not in self.bridge_template:
            raise ValueError(f"bridge_template must contain '{{}}', got {self.bridge_template!r}")

    def bridge_tokens(self) -> list[str]:
        """``<|bridge_1|>`` ... ``<|bridge_K|>``."""
        return [self.bridge_template.format(i) for i in range(1, self.num_bridge + 1)]

    def all_tokens(self) -> list[str]:
        """The frame-query token followed by the bridge tokens."""
        return [self.frame_query, *self.bridge_tokens()]


def add_grounding_tokens(tokenizer: Any, tokens: GroundingTokens) -> dict[str, int]:
    """Add ``tokens`` to ``tokenizer`` as special tokens (idempotent) and return ``{token: id}``.

    The single place where grounding tokens enter a vocabulary: the collator and the model adapter both call it (the
    adapter then resizes the embeddings to ``len(tokenizer)``). Tokens already present keep their ids. Special
    tokens are never split by the tokenizer and are not normalised.
    """
    missing = [tok for tok in tokens.all_tokens() if tok not in tokenizer.get_vocab()]
    if missing:
        tokenizer.add_special_tokens({"extra_special_tokens": missing}, replace_extra_special_tokens=False)
    ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok in tokens.all_tokens()}
    assert len(set(ids.values())) == len(ids), f"grounding tokens share ids: {ids}"
    return ids
