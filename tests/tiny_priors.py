"""Tiny randomly initialised diffusion priors, built from config like diffusers' fast tests."""

from __future__ import annotations

import torch
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

from backend.builtin_model.architecture import build_tokenizer
from backend.guidance.camera_condition import CAMERA_CONDITION_DIM
from backend.guidance.prior import DiffusionPrior


def _text_encoder(vocab_size: int, max_tokens: int) -> CLIPTextModel:
    return CLIPTextModel(
        CLIPTextConfig(
            vocab_size=vocab_size,
            hidden_size=32,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=max_tokens,
            pad_token_id=0,
            bos_token_id=1,
            eos_token_id=2,
        )
    )


def tiny_unet(sample_size: int, channels: int, camera_dim: int = 0) -> UNet2DConditionModel:
    """A 2-level U-Net; camera_dim > 0: it takes a class label of that many numbers."""
    camera_kwargs = (
        {"class_embed_type": "projection", "projection_class_embeddings_input_dim": camera_dim}
        if camera_dim
        else {}
    )
    return UNet2DConditionModel(
        sample_size=sample_size,
        in_channels=channels,
        out_channels=channels,
        block_out_channels=(8, 16),
        layers_per_block=1,
        norm_num_groups=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=2,
        **camera_kwargs,
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
        _text_encoder(len(tokenizer), tokenizer.model_max_length),
        tokenizer,
    )


def tiny_latent_prior(seed: int = 0) -> DiffusionPrior:
    """SD-shaped: 8x8 latents (4 channels) from 32x32 images through a 2-level AutoencoderKL."""
    torch.manual_seed(seed)
    tokenizer = build_tokenizer()
    vae = AutoencoderKL(
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
    return DiffusionPrior.from_components(
        tiny_unet(16, 4),
        DDPMScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear"),
        _text_encoder(len(tokenizer), tokenizer.model_max_length),
        tokenizer,
        vae,
    )
