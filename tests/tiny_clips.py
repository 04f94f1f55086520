"""Tiny randomly initialised CLIP models, built from config like transformers' fast tests, and
saved in the `transformers` CLIP layout (`CLIPModel` + `CLIPProcessor`, save_pretrained)."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import CLIPConfig, CLIPModel

from backend.builtin_model.architecture import MAX_TOKENS
from backend.builtin_model.clip_architecture import build_clip_processor, build_clip_tokenizer
from backend.guidance.clip_model import ClipModel


def tiny_clip_parts(seed: int = 0) -> tuple[CLIPModel, object]:
    """A 1-layer, 16-wide CLIP on 32 x 32 images with the built-in world's tokenizer, and its
    processor."""
    torch.manual_seed(seed)
    tokenizer = build_clip_tokenizer()
    text = {
        "vocab_size": len(tokenizer),
        "hidden_size": 16,
        "intermediate_size": 24,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "max_position_embeddings": MAX_TOKENS,
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }
    vision = {
        "image_size": 32,
        "patch_size": 8,
        "hidden_size": 16,
        "intermediate_size": 24,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
    }
    model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16))
    return model, build_clip_processor(tokenizer)


def tiny_clip(seed: int = 0) -> ClipModel:
    """A tiny random CLIP, ready for guidance and scoring."""
    model, processor = tiny_clip_parts(seed)
    return ClipModel.from_components(model, processor, "tiny-random-clip")


def save_tiny_clip(folder: Path, seed: int = 0) -> Path:
    """Write a tiny random CLIP checkpoint folder; returns it."""
    model, processor = tiny_clip_parts(seed)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder
