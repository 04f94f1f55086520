"""Component configurations of `tiny-clip`: a small ViT image encoder and a text transformer
trained contrastively on the built-in world, in the `transformers` CLIP layout (`CLIPModel` +
`CLIPProcessor`), so the code that loads it loads any CLIP checkpoint.
"""

from __future__ import annotations

from transformers import (
    CLIPConfig,
    CLIPImageProcessor,
    CLIPModel,
    CLIPProcessor,
    PreTrainedTokenizerFast,
)

from backend.builtin_model.architecture import MAX_TOKENS, RESOLUTION, build_tokenizer

CLIP_SPECIAL_TOKENS = ("<pad>", "<bos>", "<unk>", "<eos>")
"""The special tokens of `tiny-clip`, in id order. <eos> is not id 2: a CLIP text model whose
config says eos_token_id = 2 pools at the largest token id (a legacy rule of transformers),
any other id at the first <eos>, which is what CLIP means."""
WIDTH = 64
"""Width of both transformers and of the joint embedding."""
PATCH = 4
"""ViT patch side in pixels (8 x 8 patches of a 32 x 32 image)."""
IMAGE_LAYERS = 4
"""Transformer layers of the image encoder."""
TEXT_LAYERS = 2
"""Transformer layers of the text encoder."""
HEADS = 2
"""Attention heads (few heads are cheap on a CPU)."""


def build_clip_tokenizer() -> PreTrainedTokenizerFast:
    """The word-level tokenizer of the built-in world with `CLIP_SPECIAL_TOKENS`."""
    return build_tokenizer(CLIP_SPECIAL_TOKENS)


def build_clip_model(tokenizer: PreTrainedTokenizerFast) -> CLIPModel:
    """A randomly initialised `tiny-clip`: a 32 x 32 ViT and a text transformer, both
    `WIDTH` wide, joined in a `WIDTH`-dimensional embedding."""
    text = {
        "vocab_size": len(tokenizer),
        "hidden_size": WIDTH,
        "intermediate_size": 2 * WIDTH,
        "num_hidden_layers": TEXT_LAYERS,
        "num_attention_heads": HEADS,
        "max_position_embeddings": MAX_TOKENS,
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }
    vision = {
        "image_size": RESOLUTION,
        "patch_size": PATCH,
        "hidden_size": WIDTH,
        "intermediate_size": 2 * WIDTH,
        "num_hidden_layers": IMAGE_LAYERS,
        "num_attention_heads": HEADS,
    }
    return CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=WIDTH))


def build_clip_processor(tokenizer: PreTrainedTokenizerFast) -> CLIPProcessor:
    """The processor: images resized to `RESOLUTION` and normalised with OpenAI CLIP's mean and
    standard deviation (the `CLIPImageProcessor` defaults), and the world's tokenizer."""
    images = CLIPImageProcessor(
        size={"shortest_edge": RESOLUTION}, crop_size={"height": RESOLUTION, "width": RESOLUTION}
    )
    return CLIPProcessor(image_processor=images, tokenizer=tokenizer)
