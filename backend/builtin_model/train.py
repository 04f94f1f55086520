"""Train `tiny-shapes` on CPU: `python -m backend.builtin_model.train OUT_DIR`.

Reproducible from `--seed` (same data set, same initialisation, same batches). Writes the
diffusers folder layout (model_index.json, unet/, text_encoder/, tokenizer/, scheduler/,
vocabulary.json) from the EMA weights, plus a sample grid (one row per shape, one column per
colour).

The committed model is five runs (about 1 h 50 min on 2 idle cores):

    python -m backend.builtin_model.train stage1 --text-only             # 6,000 steps
    python -m backend.builtin_model.train stage2 --init-from stage1 \
        --steps 3000 --lr 1e-3 --seed 1                                   # 3,000 steps
    python -m backend.builtin_model.train stage3 --init-from stage2 \
        --steps 3000 --lr 1e-3 --seed 2                                   # 3,000 steps
    python -m backend.builtin_model.train stage4 --init-from stage3 \
        --steps 6000 --lr 1e-3 --seed 3                                   # 6,000 steps
    python -m backend.builtin_model.train tiny-shapes --init-from stage4 \
        --steps 6000 --lr 1e-3 --seed 4                                   # 6,000 steps

The first learns shapes and colours from text alone; the second adds the camera condition
(`backend.guidance.camera_condition`, its embedding starting at zero) on a fresh data set; the
later ones train the camera longer, each on another fresh data set, at one framing
(`backend.render.cameras.TRAINING_CAMERAS`) so that the azimuth can be learnt. What each run
changed, and its cost: docs/research/tiny-shapes-training.md.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from backend.builtin_model import architecture, vocabulary
from backend.builtin_model.dataset import DatasetConfig, build_dataset
from backend.builtin_model.sample_grid import save_sample_grid


@dataclass(frozen=True)
class TrainConfig:
    """Training hyperparameters."""

    steps: int = 6000
    """Optimiser steps."""
    batch: int = 32
    """Images per step."""
    dataset_size: int = 40_000
    """Pre-rendered images (the step budget sees each about 5 times)."""
    lr: float = 2e-3
    """Peak AdamW learning rate (after warm-up), cosine-decayed to 5% at the end."""
    warmup: int = 200
    """Linear warm-up steps."""
    ema_decay: float = 0.999
    """EMA decay of the weights that are saved."""
    min_snr_gamma: float = 5.0
    """Min-SNR loss weighting (Hang et al. 2023), gamma."""
    seed: int = 0
    """Seed of data, initialisation and batches."""
    checkpoint_every: int = 1500
    """Save the EMA model and a sample grid every this many steps."""
    camera_conditioned: bool = True
    """Condition the U-Net on the camera (`architecture.build_unet`)."""
    camera_dropout: float = 0.1
    """Share of images trained with c = 0 (camera unknown)."""
    init_from: str | None = None
    """Folder of a saved model to start from (its U-Net and text encoder); None: from scratch."""


def write_vocabulary(out: Path, info: dict) -> None:
    """vocabulary.json beside a built-in model: the world it was trained on and the training
    record."""
    vocab = {
        "shapes": list(vocabulary.SHAPES),
        "colours": list(vocabulary.COLOURS),
        "synonyms": vocabulary.SYNONYMS,
        "views": list(vocabulary.VIEW_WORDS),
        "training": info,
    }
    (out / "vocabulary.json").write_text(json.dumps(vocab, indent=2) + "\n")


def print_progress(step: int, steps: int, losses: list[float], start: float) -> None:
    """Every 50 steps: the mean loss of the last 50, seconds a step and the time left."""
    if (step + 1) % 50 == 0:
        rate = (time.time() - start) / (step + 1)
        print(
            f"step {step + 1}/{steps} loss {sum(losses[-50:]) / 50:.4f} "
            f"{rate:.2f} s/step, eta {rate * (steps - step - 1) / 60:.0f} min",
            flush=True,
        )


def _lr_at(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))


def save_model(
    out: Path,
    unet: torch.nn.Module,
    text_encoder: torch.nn.Module,
    tokenizer,
    scheduler,
    info: dict,
) -> None:
    """Write the diffusers folder layout of the built-in model."""
    out.mkdir(parents=True, exist_ok=True)
    unet.save_pretrained(out / "unet")
    text_encoder.save_pretrained(out / "text_encoder")
    tokenizer.save_pretrained(out / "tokenizer")
    scheduler.save_pretrained(out / "scheduler")
    model_index = {
        "_class_name": "TinyShapesPipeline",
        "_diffusers_version": "0.30.0",
        "scheduler": ["diffusers", "DDPMScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "PreTrainedTokenizerFast"],
        "unet": ["diffusers", "UNet2DConditionModel"],
    }
    (out / "model_index.json").write_text(json.dumps(model_index, indent=2) + "\n")
    write_vocabulary(out, info)


def _load_weights(folder: Path, unet: torch.nn.Module, text_encoder: torch.nn.Module) -> None:
    """Start from a saved model: its text encoder, and its U-Net weights (a text-only U-Net's
    weights leave a camera-conditioned U-Net's zero-initialised camera embedding as it is)."""
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextModel

    saved = UNet2DConditionModel.from_pretrained(folder / "unet").state_dict()
    missing, unexpected = unet.load_state_dict(saved, strict=False)
    if unexpected or any(not key.startswith("class_embedding.") for key in missing):
        raise ValueError(
            f"init_from: {folder} does not match the architecture "
            f"(missing {missing}, unexpected {unexpected})"
        )
    text_encoder.load_state_dict(
        CLIPTextModel.from_pretrained(folder / "text_encoder").state_dict()
    )


def train(out: Path, cfg: TrainConfig, grid_path: Path | None) -> None:
    torch.manual_seed(cfg.seed)
    t0 = time.time()
    images, captions, cameras = build_dataset(cfg.dataset_size, cfg.seed, DatasetConfig())
    print(f"data set: {len(captions)} images in {time.time() - t0:.0f} s", flush=True)

    tokenizer = architecture.build_tokenizer()
    ids = tokenizer(
        captions,
        padding="max_length",
        max_length=architecture.MAX_TOKENS,
        truncation=True,
        return_tensors="pt",
    ).input_ids
    unet = architecture.build_unet(cfg.camera_conditioned)
    text_encoder = architecture.build_text_encoder(len(tokenizer))
    if cfg.init_from is not None:
        _load_weights(Path(cfg.init_from), unet, text_encoder)
    scheduler = architecture.build_scheduler()
    params = [*unet.parameters(), *text_encoder.parameters()]
    ema_unet = architecture.build_unet(cfg.camera_conditioned).requires_grad_(False)
    ema_text = architecture.build_text_encoder(len(tokenizer)).requires_grad_(False)
    ema_unet.load_state_dict(unet.state_dict())
    ema_text.load_state_dict(text_encoder.state_dict())
    ema_params = [*ema_unet.parameters(), *ema_text.parameters()]
    optimiser = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.01)

    # alpha_bar_t of the schedule; SNR(t) = alpha_bar / (1 - alpha_bar).
    alphas_cumprod = scheduler.alphas_cumprod
    snr = alphas_cumprod / (1 - alphas_cumprod)
    batches = torch.Generator().manual_seed(cfg.seed + 1)
    losses: list[float] = []
    start = time.time()
    for step in range(cfg.steps):
        for group in optimiser.param_groups:
            group["lr"] = _lr_at(step, cfg)
        index = torch.randint(0, len(captions), (cfg.batch,), generator=batches)
        x0 = images[index].float() / 127.5 - 1.0  # [B, 3, H, W] in [-1, 1]
        t = torch.randint(0, scheduler.config.num_train_timesteps, (cfg.batch,), generator=batches)
        noise = torch.randn(x0.shape, generator=batches)
        x_t = scheduler.add_noise(x0, noise, t)
        v_target = scheduler.get_velocity(x0, noise, t)
        text = text_encoder(ids[index]).last_hidden_state
        camera = None
        if cfg.camera_conditioned:
            keep = torch.rand(cfg.batch, generator=batches) >= cfg.camera_dropout
            camera = cameras[index] * keep[:, None]  # c, zeroed where dropped
        v_pred = unet(x_t, t, encoder_hidden_states=text, class_labels=camera).sample
        # Min-SNR-gamma weighting for v-prediction: min(SNR, gamma) / (SNR + 1).
        weight = snr[t].clamp(max=cfg.min_snr_gamma) / (snr[t] + 1)
        loss = (weight * (v_pred - v_target).pow(2).mean(dim=(1, 2, 3))).mean()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimiser.step()
        decay = min(cfg.ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for ema, live in zip(ema_params, params, strict=True):
                ema.lerp_(live, 1 - decay)
        losses.append(loss.item())
        print_progress(step, cfg.steps, losses, start)
        if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.steps:
            info = {
                **asdict(cfg),
                "trained_steps": step + 1,
                "final_loss": sum(losses[-200:]) / 200,
            }
            save_model(out, ema_unet, ema_text, tokenizer, scheduler, info)
            if grid_path is not None:
                save_sample_grid(out, grid_path, seed=cfg.seed)
            print(f"saved {out} at step {step + 1}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path, help="output folder (diffusers layout)")
    parser.add_argument("--steps", type=int, default=TrainConfig.steps)
    parser.add_argument("--seed", type=int, default=TrainConfig.seed)
    parser.add_argument("--lr", type=float, default=TrainConfig.lr)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--text-only", action="store_true", help="no camera condition (the first stage)"
    )
    parser.add_argument(
        "--init-from", type=Path, default=None, help="start from this saved model's weights"
    )
    parser.add_argument(
        "--grid", type=Path, default=None, help="where to write the sample grid PNG"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = TrainConfig(
        steps=args.steps,
        seed=args.seed,
        lr=args.lr,
        camera_conditioned=not args.text_only,
        init_from=None if args.init_from is None else str(args.init_from),
    )
    train(args.out, cfg, args.grid)


if __name__ == "__main__":
    main()
