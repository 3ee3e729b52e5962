"""The grounding special tokens and the prompt layout (DESIGN step 2, ETA). Pure: no torch.

Layout of the user turn for a clip of C two-frame chunks (``timestamps=True``)::

    Query: {query}\\n
    <t=0.0s><|vision_start|><|video_pad|><|vision_end|><|frame_q|>      # chunk 1
    <t=1.0s><|vision_start|><|video_pad|><|vision_end|><|frame_q|>      # chunk 2 ...
    <|bridge_1|>...<|bridge_K|>

(no line breaks between chunks; shown here for reading). The query comes first so that every later token can attend
to it under causal attention. Each ``<|video_pad|>`` is one 1-step video that the processor expands to the chunk's
visual tokens. The timestamp is the time of the chunk's first frame.

Chat template: when the processor has one, the layout becomes the content of a single user turn
rendered by that template with the generation prompt appended (Qwen2-VL: default system turn, then
``<|im_start|>user\\n{layout}<|im_end|>\\n<|im_start|>assistant\\n``). Instruction-tuned checkpoints expect their
conversation format, and the generation prompt makes the same sequence usable for decoding a text answer (coupled
baseline). The layout is passed as a plain string so that any template, including a real checkpoint's own, renders
it verbatim. Without a template the bare layout is used.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bridge_stg.tokens import GroundingTokens, add_grounding_tokens

__all__ = ["GroundingTokens", "add_grounding_tokens", "build_prompt", "caption_layout", "chat_answer_suffix",
           "chat_prompt", "grounding_layout", "has_chat_template", "query_char_span", "timestamp_text"]

VISION_START = "<|vision_start|>"
VISION_END = "<|vision_end|>"
VIDEO_PAD = "<|video_pad|>"
QUERY_PREFIX = "Query: "


def timestamp_text(seconds: float) -> str:
    """``<t=1.5s>``: the explicit time of a chunk, with one decimal."""
    return f"<t={seconds:.1f}s>"


def grounding_layout(
    query: str, chunk_times_s: Sequence[float], tokens: GroundingTokens, timestamps: bool = True
) -> str:
    """The bare layout (module docstring) for a query and the start time of each 2-frame chunk."""
    chunks = _chunks(chunk_times_s, tokens.frame_query, timestamps)
    return f"{QUERY_PREFIX}{query}\n{chunks}{''.join(tokens.bridge_tokens())}"


def caption_layout(request: str, chunk_times_s: Sequence[float], timestamps: bool = True) -> str:
    """The grounding layout of a base checkpoint, which has no grounding tokens: the request, then the timestamped
    chunks (backbone pretraining writes a caption after each chunk's ``<|vision_end|>``)."""
    return f"{QUERY_PREFIX}{request}\n{_chunks(chunk_times_s, '', timestamps)}"


def _chunks(chunk_times_s: Sequence[float], after_chunk: str, timestamps: bool) -> str:
    if len(chunk_times_s) == 0:
        raise ValueError("a prompt needs at least one chunk")
    chunk = VISION_START + VIDEO_PAD + VISION_END + after_chunk
    return "".join((timestamp_text(t) if timestamps else "") + chunk for t in chunk_times_s)


def query_char_span(prompt: str, query: str) -> tuple[int, int]:
    """``[start, end)`` character range of ``query`` in a prompt built from :func:`grounding_layout`."""
    marker = f"{QUERY_PREFIX}{query}\n"
    at = prompt.find(marker)
    if at < 0:
        raise ValueError(f"the prompt does not contain the grounding layout of query {query!r}")
    start = at + len(QUERY_PREFIX)
    return start, start + len(query)


def has_chat_template(processor: Any) -> bool:
    """Whether ``processor`` carries a chat template (what ``processor.apply_chat_template`` renders)."""
    return bool(getattr(processor, "chat_template", None))


def chat_prompt(processor: Any, user_text: str) -> str:
    """``user_text`` as one user turn in ``processor``'s chat template, with the generation prompt appended.

    Without a chat template ``user_text`` is returned unchanged.
    """
    if not has_chat_template(processor):
        return user_text
    user = [{"role": "user", "content": user_text}]
    return processor.apply_chat_template(user, tokenize=False, add_generation_prompt=True)


def chat_answer_suffix(processor: Any, user_text: str, answer: str) -> str:
    """The text the chat template appends after :func:`chat_prompt` when the assistant replies ``answer``.

    That is the answer and the end-of-turn token (``answer<|im_end|>`` for Qwen); whitespace the template writes after
    the end-of-turn token is dropped, since decoding stops there. Without a template: ``answer`` + the tokenizer's
    EOS token. Raises ``ValueError`` when the template's assistant turn does not extend its generation prompt
    verbatim (e.g. templates that insert reasoning blocks into the last turn).
    """
    eos = getattr(getattr(processor, "tokenizer", processor), "eos_token", None) or ""
    if not has_chat_template(processor):
        return answer + eos
    prompt = chat_prompt(processor, user_text)
    turns = [{"role": "user", "content": user_text}, {"role": "assistant", "content": answer}]
    full = processor.apply_chat_template(turns, tokenize=False, add_generation_prompt=False)
    if not full.startswith(prompt):
        raise ValueError(
            "the chat template's assistant turn does not extend its generation prompt verbatim; "
            "use a Qwen2-VL-style template (bridge_stg.model.tiny.QWEN2_VL_CHAT_TEMPLATE)"
        )
    suffix = full[len(prompt):]
    if eos and eos in suffix:
        suffix = suffix[: suffix.rindex(eos) + len(eos)]
    return suffix


def build_prompt(
    processor: Any,
    query: str,
    chunk_times_s: Sequence[float],
    tokens: GroundingTokens,
    timestamps: bool = True,
) -> str:
    """The full prompt text of one sample: the layout, wrapped in the chat template when there is one."""
    return chat_prompt(processor, grounding_layout(query, chunk_times_s, tokens, timestamps))
