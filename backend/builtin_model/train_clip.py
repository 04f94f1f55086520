"""Train `tiny-clip` on CPU: `python -m backend.builtin_model.train_clip OUT_DIR`.

A contrastive image-text model (CLIP's symmetric cross-entropy over a batch's image-caption
similarities) trained on the procedural renders `tiny-shapes` learns from
(`backend.builtin_model.dataset`: the same shapes, colours, captions with view words, cameras,
shading and solid backgrounds), half of them over Dream Fields' pattern backgrounds
(`backend.render.pattern_backgrounds`), without textureless views (a white render of "a red
cube" would teach it that colour does not matter). Captions of the same object and colour are
both right for an image: the targets spread over them. Reproducible from `--seed`; writes the
`transformers` CLIP layout (`CLIPModel` + `CLIPProcessor`, save_pretrained) and prints the
zero-shot accuracy on held-out renders (`zero_shot_accuracy`).

The committed model (docs/research/tiny-clip.md):

    python -m backend.builtin_model.train_clip tiny-clip
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import CLIPModel, PreTrainedTokenizerFast

from backend.builtin_model import vocabulary
from backend.builtin_model.architecture import MAX_TOKENS
from backend.builtin_model.clip_architecture import (
    build_clip_model,
    build_clip_processor,
    build_clip_tokenizer,
)
from backend.builtin_model.dataset import DatasetConfig, build_dataset
from backend.builtin_model.train import print_progress, write_vocabulary
from backend.guidance.clip_model import image_embeddings, normalise_pixels, text_embeddings
from backend.render.shading import ShadingConfig

CLIP_DATA = DatasetConfig(
    colourless_caption_prob=0.0,
    null_caption_prob=0.0,
    shading=ShadingConfig(textureless_prob=0.0),
    pattern_background_prob=0.5,
)
"""The renders of `tiny-clip`: every caption names colour and shape, no textureless views,
half over pattern backgrounds."""


@dataclass(frozen=True)
class ClipTrainConfig:
    """Training hyperparameters of `tiny-clip`."""

    steps: int = 3000
    """Optimiser steps."""
    batch: int = 128
    """Image-caption pairs per step (the contrastive batch)."""
    dataset_size: int = 16_128
    """Pre-rendered training images (7 batches of 256 per shape)."""
    held_out: int = 1440
    """Held-out renders per background kind for the zero-shot accuracy (20 per shape x
    colour)."""
    lr: float = 2e-3
    """Peak AdamW learning rate (after warm-up), cosine-decayed to 5% at the end."""
    warmup: int = 100
    """Linear warm-up steps."""
    weight_decay: float = 0.05
    """AdamW weight decay."""
    seed: int = 0
    """Seed of the data, the initialisation and the batches (held-out renders: seed + 1000)."""
    eval_every: int = 500
    """Print the held-out accuracy and save the model every this many steps."""


@dataclass(frozen=True)
class ZeroShotAccuracy:
    """Zero-shot accuracy of a CLIP on labelled renders: each image's best-matching prompt
    "a {colour} {shape}" among every shape x colour of the world."""

    shape: float
    """Share of images whose best prompt names their shape."""
    colour: float
    """Share of images whose best prompt names their colour."""
    both: float
    """Share of images whose best prompt is their own."""


def world_prompts() -> list[tuple[str, str]]:
    """Every (shape, colour) of the built-in world, shape-major."""
    return [(s, c) for s in vocabulary.SHAPES for c in vocabulary.COLOURS]


def prompt_of(shape: str, colour: str) -> str:
    """The zero-shot prompt of a shape and colour."""
    return f"a {colour} {shape}"


def label_of(caption: str) -> int:
    """Index in `world_prompts` of the (shape, colour) a training caption names."""
    report = vocabulary.read_prompt(caption)
    return vocabulary.SHAPES.index(report.shape) * len(vocabulary.COLOURS) + list(
        vocabulary.COLOURS
    ).index(report.colour)


def tokenize(tokenizer: PreTrainedTokenizerFast, texts: list[str]) -> dict[str, torch.Tensor]:
    """Token ids and attention masks [N, MAX_TOKENS]."""
    return dict(
        tokenizer(
            texts,
            padding="max_length",
            max_length=MAX_TOKENS,
            truncation=True,
            return_tensors="pt",
        )
    )


@torch.no_grad()
def zero_shot_accuracy(
    model: CLIPModel,
    tokenizer: PreTrainedTokenizerFast,
    images: torch.Tensor,
    labels: torch.Tensor,
    mean: torch.Tensor,
    std: torch.Tensor,
) -> ZeroShotAccuracy:
    """Accuracy on images [N, 3, H, W] in [0, 1] with labels [N] (indices of
    `world_prompts`)."""
    model.eval()
    prompts = world_prompts()
    tokens = tokenize(tokenizer, [prompt_of(s, c) for s, c in prompts])
    best = []
    text = text_embeddings(model, tokens["input_ids"], tokens["attention_mask"])
    for chunk in images.split(256):
        image = image_embeddings(model, normalise_pixels(chunk, mean, std))
        best.append((image @ text.T).argmax(dim=-1))
    predicted = torch.cat(best)
    colours = len(vocabulary.COLOURS)
    return ZeroShotAccuracy(
        shape=float((predicted // colours == labels // colours).float().mean()),
        colour=float((predicted % colours == labels % colours).float().mean()),
        both=float((predicted == labels).float().mean()),
    )


def _renders(
    count: int, seed: int, cfg: DatasetConfig, batch: int = 256
) -> tuple[torch.Tensor, list[str]]:
    """uint8 renders [N, 3, H, W] and their captions; `batch` images of a shape in turn."""
    images, captions, _ = build_dataset(count, seed, cfg, batch)
    return images, captions


def _lr_at(step: int, cfg: ClipTrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))


def train_clip(out: Path, cfg: ClipTrainConfig) -> dict[str, ZeroShotAccuracy]:
    """Train, save to `out` every `eval_every` steps and at the end; returns the final
    held-out accuracy per background ("solid", "pattern")."""
    torch.manual_seed(cfg.seed)
    t0 = time.time()
    images, captions = _renders(cfg.dataset_size, cfg.seed, CLIP_DATA)
    labels = torch.tensor([label_of(c) for c in captions])
    per_shape = cfg.held_out // len(vocabulary.SHAPES)
    held_out = {
        name: _renders(
            cfg.held_out,
            cfg.seed + offset,
            replace(CLIP_DATA, pattern_background_prob=share),
            per_shape,
        )
        for name, offset, share in (("solid", 1000, 0.0), ("pattern", 2000, 1.0))
    }
    held_out_labels = {k: torch.tensor([label_of(c) for c in v[1]]) for k, v in held_out.items()}
    print(
        f"renders: {len(captions)} + 2 x {cfg.held_out} held out in {time.time() - t0:.0f} s",
        flush=True,
    )

    tokenizer = build_clip_tokenizer()
    processor = build_clip_processor(tokenizer)
    mean = torch.tensor(processor.image_processor.image_mean)
    std = torch.tensor(processor.image_processor.image_std)
    tokens = tokenize(tokenizer, captions)
    model = build_clip_model(tokenizer)
    optimiser = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    batches = torch.Generator().manual_seed(cfg.seed + 1)
    accuracy: dict[str, ZeroShotAccuracy] = {}
    losses: list[float] = []
    start = time.time()
    for step in range(cfg.steps):
        model.train()
        for group in optimiser.param_groups:
            group["lr"] = _lr_at(step, cfg)
        index = torch.randint(0, len(captions), (cfg.batch,), generator=batches)
        pixels = normalise_pixels(images[index].float() / 255.0, mean, std)
        image = image_embeddings(model, pixels)
        text = text_embeddings(model, tokens["input_ids"][index], tokens["attention_mask"][index])
        # CLIP loss: logits_ij = exp(s) <f_i, g_j>; symmetric cross-entropy, with the target
        # of a row spread over every caption of the same shape and colour.
        logits = model.logit_scale.exp() * image @ text.T
        same = (labels[index][:, None] == labels[index][None, :]).float()
        target = same / same.sum(dim=-1, keepdim=True)
        loss = 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimiser.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))  # CLIP's clip at 100
        losses.append(loss.item())
        print_progress(step, cfg.steps, losses, start)
        if (step + 1) % cfg.eval_every == 0 or step + 1 == cfg.steps:
            accuracy = {
                name: zero_shot_accuracy(
                    model, tokenizer, imgs.float() / 255.0, held_out_labels[name], mean, std
                )
                for name, (imgs, _) in held_out.items()
            }
            for name, acc in accuracy.items():
                print(
                    f"held-out {name} backgrounds at step {step + 1}: shape {acc.shape:.3f} "
                    f"colour {acc.colour:.3f} both {acc.both:.3f}",
                    flush=True,
                )
            info = {
                **asdict(cfg),
                "trained_steps": step + 1,
                "final_loss": sum(losses[-100:]) / len(losses[-100:]),
                "held_out_accuracy": {k: asdict(v) for k, v in accuracy.items()},
                "seconds": round(time.time() - t0),
            }
            save_clip(out, model, processor, info)
    return accuracy


def save_clip(out: Path, model: CLIPModel, processor, info: dict) -> None:
    """Write the `transformers` CLIP layout, plus vocabulary.json (the world and the training
    record)."""
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    write_vocabulary(out, info)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path, help="output folder (transformers CLIP layout)")
    parser.add_argument("--steps", type=int, default=ClipTrainConfig.steps)
    parser.add_argument("--seed", type=int, default=ClipTrainConfig.seed)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    train_clip(args.out, ClipTrainConfig(steps=args.steps, seed=args.seed))


if __name__ == "__main__":
    main()
