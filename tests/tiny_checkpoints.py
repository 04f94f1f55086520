"""Tiny checkpoints in the real published layouts, written with `save_pretrained` at test time
(nothing downloaded): a Stable Diffusion folder (`StableDiffusionPipeline`: AutoencoderKL,
CLIPTextModel, a CLIPTokenizer read from real vocab.json / merges.txt files, a scheduler) and a
DeepFloyd-IF-style folder (`IFPipeline`: pixel space, a T5 encoder read with its attention mask,
a U-Net with a learned-variance output)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import DDIMScheduler, DDPMScheduler, IFPipeline, StableDiffusionPipeline
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import CLIPTokenizer, PreTrainedTokenizerFast, T5Config, T5EncoderModel

from tests.tiny_priors import tiny_text_encoder, tiny_unet, tiny_vae

WORDS = ("a", "red", "blue", "green", "cube", "sphere", "cone", "of", "the")
"""Words the tiny tokenizers merge into single tokens (anything else still tokenizes)."""


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2 / CLIP's reversible byte -> printable character table."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    table, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            table[byte] = chr(byte)
        else:
            table[byte] = chr(256 + extra)
            extra += 1
    return table


def write_clip_bpe_files(folder: Path) -> tuple[Path, Path]:
    """A real CLIP BPE vocabulary: every byte symbol (with and without the end-of-word mark),
    merges that build `WORDS`, and the two special tokens. Returns (vocab.json, merges.txt)."""
    symbols = list(_bytes_to_unicode().values())
    vocab = [*symbols, *(s + "</w>" for s in symbols)]
    merges = []
    for word in WORDS:
        pieces = [*word[:-1], word[-1] + "</w>"]
        while len(pieces) > 1:
            merges.append(f"{pieces[0]} {pieces[1]}")
            pieces = [pieces[0] + pieces[1], *pieces[2:]]
            vocab.append(pieces[0])
    vocab = list(dict.fromkeys([*vocab, "<|startoftext|>", "<|endoftext|>"]))
    merges = list(dict.fromkeys(merges))
    folder.mkdir(parents=True, exist_ok=True)
    vocab_file, merges_file = folder / "vocab.json", folder / "merges.txt"
    vocab_file.write_text(json.dumps({token: i for i, token in enumerate(vocab)}))
    merges_file.write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    return vocab_file, merges_file


def clip_tokenizer(scratch: Path, max_tokens: int = 16) -> CLIPTokenizer:
    """A CLIPTokenizer read from the files `write_clip_bpe_files` writes."""
    vocab_file, merges_file = write_clip_bpe_files(scratch)
    return CLIPTokenizer(str(vocab_file), str(merges_file), model_max_length=max_tokens)


def t5_tokenizer(max_tokens: int = 16) -> PreTrainedTokenizerFast:
    """A T5-style (unigram) tokenizer with <pad> 0, </s> 1, <unk> 2, as T5's ids are."""
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    pieces += [(word, -1.0) for word in WORDS] + [(chr(c), -5.0) for c in range(97, 123)]
    tokenizer = Tokenizer(models.Unigram(pieces, unk_id=2))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="$A </s>", special_tokens=[("</s>", 1)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token="<pad>",
        eos_token="</s>",
        unk_token="<unk>",
        model_max_length=max_tokens,
    )


def save_tiny_stable_diffusion(folder: Path, seed: int = 0) -> Path:
    """A Stable-Diffusion-layout folder: 8x8 latents of 32x32 images, CLIP text, v-prediction
    off (epsilon, as SD 1.x), DDIM scheduler as SD ships; returns `folder`."""
    torch.manual_seed(seed)
    tokenizer = clip_tokenizer(folder.parent / f"{folder.name}-bpe")
    text_encoder = tiny_text_encoder(
        len(tokenizer),
        tokenizer.model_max_length,
        pad=tokenizer.pad_token_id,
        bos=tokenizer.bos_token_id,
        eos=tokenizer.eos_token_id,
    )
    pipeline = StableDiffusionPipeline(
        vae=tiny_vae(),
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=tiny_unet(16, 4),
        scheduler=DDIMScheduler(beta_schedule="scaled_linear", clip_sample=False, steps_offset=1),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipeline.save_pretrained(folder)
    _as_published_clip_tokenizer(folder / "tokenizer", tokenizer)
    return folder


def _as_published_clip_tokenizer(folder: Path, tokenizer: CLIPTokenizer) -> None:
    """Rewrite a saved tokenizer as Stable Diffusion's repositories publish it: vocab.json and
    merges.txt (no tokenizer.json), with the class and length in tokenizer_config.json."""
    for name in ("tokenizer.json", "vocab.json", "merges.txt"):
        (folder / name).unlink(missing_ok=True)
    write_clip_bpe_files(folder)
    (folder / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "CLIPTokenizer",
                "model_max_length": tokenizer.model_max_length,
                "bos_token": "<|startoftext|>",
                "eos_token": "<|endoftext|>",
                "unk_token": "<|endoftext|>",
                "pad_token": "<|endoftext|>",
            }
        )
    )


def save_tiny_deepfloyd_if(folder: Path, seed: int = 0) -> Path:
    """A DeepFloyd-IF-stage-I-layout folder: 16x16 pixels, a T5 encoder (read with its
    attention mask), a U-Net predicting eps and a learned variance (6 channels) with IF's text
    projection and pooled-text time embedding; returns `folder`."""
    torch.manual_seed(seed)
    tokenizer = t5_tokenizer()
    text_encoder = T5EncoderModel(
        T5Config(
            vocab_size=len(tokenizer),
            d_model=32,
            d_kv=8,
            d_ff=37,
            num_layers=2,
            num_heads=2,
            pad_token_id=0,
            eos_token_id=1,
        )
    )
    unet = tiny_unet(
        16,
        3,
        out_channels=6,
        encoder_hid_dim=32,
        encoder_hid_dim_type="text_proj",
        addition_embed_type="text",
        addition_embed_type_num_heads=2,
    )
    pipeline = IFPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        unet=unet,
        scheduler=DDPMScheduler(beta_schedule="squaredcos_cap_v2", variance_type="learned_range"),
        safety_checker=None,
        feature_extractor=None,
        watermarker=None,
        requires_safety_checker=False,
    )
    pipeline.save_pretrained(folder)
    return folder
