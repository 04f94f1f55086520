"""tiny-clip's training script (a few steps) and the shipped model's zero-shot accuracy."""

from __future__ import annotations

import json
from dataclasses import replace

import torch

from backend.builtin_model import vocabulary
from backend.builtin_model.dataset import build_dataset
from backend.builtin_model.train_clip import (
    CLIP_DATA,
    ClipTrainConfig,
    label_of,
    train_clip,
    world_prompts,
    zero_shot_accuracy,
)
from backend.guidance.clip_model import ClipModel


def test_captions_are_labelled_by_shape_and_colour_synonyms_and_view_words_included():
    assert world_prompts()[label_of("a red cube")] == ("cube", "red")
    assert world_prompts()[label_of("a blue ball, front view")] == ("sphere", "blue")
    assert len(world_prompts()) == len(vocabulary.SHAPES) * len(vocabulary.COLOURS)


def test_a_short_run_writes_a_clip_folder_the_loader_reads(tmp_path):
    config = ClipTrainConfig(steps=2, batch=16, dataset_size=64, held_out=72, eval_every=2)
    accuracy = train_clip(tmp_path / "clip", config)
    assert set(accuracy) == {"solid", "pattern"}
    clip = ClipModel.load(str(tmp_path / "clip"))
    assert clip.image_size == 32
    record = json.loads((tmp_path / "clip" / "vocabulary.json").read_text())["training"]
    assert record["trained_steps"] == 2 and "held_out_accuracy" in record


def test_the_shipped_tiny_clip_names_colour_and_shape_of_fresh_renders():
    clip = ClipModel.load("tiny-clip")
    n = 2 * len(vocabulary.SHAPES) * 8
    data = replace(CLIP_DATA, pattern_background_prob=0.0)
    images, captions, _ = build_dataset(n, 7777, data, batch=n // len(vocabulary.SHAPES))
    labels = torch.tensor([label_of(c) for c in captions])
    accuracy = zero_shot_accuracy(
        clip.model, clip.tokenizer, images.float() / 255.0, labels, clip.mean, clip.std
    )
    assert accuracy.colour >= 0.95, accuracy
    assert accuracy.shape >= 0.8, accuracy
