"""Component configurations of `tiny-shapes`: a pixel-space text-conditioned U-Net, a small
CLIP-style text encoder trained jointly with it, and a word-level tokenizer over the world's
vocabulary. Standard diffusers/transformers classes, so the same loading and guidance code
serves this model and Stable Diffusion.
"""

from __future__ import annotations

import torch
from diffusers import DDPMScheduler, UNet2DConditionModel
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
from transformers import CLIPTextConfig, CLIPTextModel, PreTrainedTokenizerFast

from backend.builtin_model import vocabulary
from backend.guidance.camera_condition import CAMERA_CONDITION_DIM

RESOLUTION = 32
"""Native image side of the model, pixels."""
MAX_TOKENS = 12
"""Token sequence length (with <bos>/<eos>/padding)."""
TEXT_WIDTH = 64
"""Text embedding width = U-Net cross-attention width."""
SPECIAL_TOKENS = ("<pad>", "<bos>", "<eos>", "<unk>")
"""The special tokens of `tiny-shapes`, in id order."""


def build_tokenizer(special_tokens: tuple[str, ...] = SPECIAL_TOKENS) -> PreTrainedTokenizerFast:
    """Word-level tokenizer: lower-case, split on whitespace and punctuation, <bos> ... <eos>;
    `special_tokens` (<pad>, <bos>, <eos>, <unk> in some order) take the first ids."""
    words = [*special_tokens, *vocabulary.all_words()]
    ids = {w: i for i, w in enumerate(words)}
    tok = Tokenizer(models.WordLevel(ids, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A <eos>", special_tokens=[("<bos>", ids["<bos>"]), ("<eos>", ids["<eos>"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
        model_max_length=MAX_TOKENS,
    )


def build_text_encoder(vocab_size: int) -> CLIPTextModel:
    """A 2-layer, 64-wide CLIP text transformer (randomly initialised)."""
    return CLIPTextModel(
        CLIPTextConfig(
            vocab_size=vocab_size,
            hidden_size=TEXT_WIDTH,
            intermediate_size=2 * TEXT_WIDTH,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=MAX_TOKENS,
            pad_token_id=0,
            bos_token_id=1,
            eos_token_id=2,
        )
    )


def build_unet(camera_conditioned: bool = True) -> UNet2DConditionModel:
    """1.4M-parameter 32x32 U-Net; cross-attention only at 8x8 and in the mid block, 2 heads
    (attention resolution and head count dominate its cost on a CPU).

    camera_conditioned: take the camera condition c (`backend.guidance.camera_condition`) as a
    projected class label added to the timestep embedding. The embedding's last layer starts
    at zero, so such a U-Net starts as the text-only one (a text-only checkpoint loads into it
    unchanged).
    """
    camera = (
        {
            "class_embed_type": "projection",
            "projection_class_embeddings_input_dim": CAMERA_CONDITION_DIM,
        }
        if camera_conditioned
        else {}
    )
    unet = UNet2DConditionModel(
        sample_size=RESOLUTION,
        in_channels=3,
        out_channels=3,
        block_out_channels=(32, 64, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
        cross_attention_dim=TEXT_WIDTH,
        attention_head_dim=2,  # diffusers quirk: this is the number of heads
        norm_num_groups=16,
        **camera,
    )
    if camera_conditioned:
        torch.nn.init.zeros_(unet.class_embedding.linear_2.weight)
        torch.nn.init.zeros_(unet.class_embedding.linear_2.bias)
    return unet


def build_scheduler() -> DDPMScheduler:
    """Cosine noise schedule, v-prediction (faster convergence for small models)."""
    return DDPMScheduler(
        num_train_timesteps=1000,
        beta_schedule="squaredcos_cap_v2",
        prediction_type="v_prediction",
        clip_sample=False,
    )
