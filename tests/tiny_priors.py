"""Tiny randomly initialised diffusion priors, built from config like diffusers' fast tests."""

from __future__ import annotations

import torch
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

from backend.builtin_model.architecture import build_tokenizer
from backend.guidance.camera_condition import CAMERA_CONDITION_DIM
from backend.guidance.prior import DiffusionPrior


def tiny_text_encoder(
    vocab_size: int, max_tokens: int, pad: int = 0, bos: int = 1, eos: int = 2
) -> CLIPTextModel:
    """A 2-layer CLIP text encoder, 32 wide."""
    return CLIPTextModel(
        CLIPTextConfig(
            vocab_size=vocab_size,
            hidden_size=32,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=max_tokens,
            pad_token_id=pad,
            bos_token_id=bos,
            eos_token_id=eos,
        )
    )


def tiny_unet(
    sample_size: int, channels: int, camera_dim: int = 0, out_channels: int | None = None, **extra
) -> UNet2DConditionModel:
    """A 2-level U-Net; camera_dim > 0: it takes a class label of that many numbers;
    `out_channels` (default `channels`) and `extra` config as diffusers takes them."""
    camera_kwargs = (
        {"class_embed_type": "projection", "projection_class_embeddings_input_dim": camera_dim}
        if camera_dim
        else {}
    )
    return UNet2DConditionModel(
        sample_size=sample_size,
        in_channels=channels,
        out_channels=out_channels or channels,
        block_out_channels=(8, 16),
        layers_per_block=1,
        norm_num_groups=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=2,
        **camera_kwargs,
        **extra,
    )


def tiny_pixel_prior(
    prediction_type: str = "epsilon", seed: int = 0, camera_conditioned: bool = False
) -> DiffusionPrior:
    """16x16 RGB pixel-space prior with the built-in model's tokenizer (optionally taking the
    camera condition as its class label, like the built-in model)."""
    torch.manual_seed(seed)
    tokenizer = build_tokenizer()
    return DiffusionPrior.from_components(
        tiny_unet(16, 3, CAMERA_CONDITION_DIM if camera_conditioned else 0),
        DDPMScheduler(num_train_timesteps=1000, prediction_type=prediction_type),
        tiny_text_encoder(len(tokenizer), tokenizer.model_max_length),
        tokenizer,
    )


def tiny_vae() -> AutoencoderKL:
    """A 2-level AutoencoderKL: 16x16 latents (4 channels) of 32x32 images."""
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=(8, 16),
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        norm_num_groups=4,
        layers_per_block=1,
        sample_size=32,
    )


def tiny_latent_prior(seed: int = 0) -> DiffusionPrior:
    """SD-shaped: 16x16 latents (4 channels) from 32x32 images through `tiny_vae`."""
    torch.manual_seed(seed)
    tokenizer = build_tokenizer()
    return DiffusionPrior.from_components(
        tiny_unet(16, 4),
        DDPMScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear"),
        tiny_text_encoder(len(tokenizer), tokenizer.model_max_length),
        tokenizer,
        tiny_vae(),
    )
