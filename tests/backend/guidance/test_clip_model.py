"""Loading a CLIP (built-in, folder, hub id) and its embeddings, with tiny CLIPs from config."""

from __future__ import annotations

import pytest
import torch

from backend.guidance.clip_model import BUILTIN_CLIP_NAME, ClipModel
from backend.guidance.prior import ModelFamily, builtin_model_path
from protocol.errors import FieldError
from tests.tiny_clips import save_tiny_clip


def test_a_saved_folder_loads_with_its_input_size(tmp_path):
    clip = ClipModel.load(str(save_tiny_clip(tmp_path / "clip")))
    assert clip.image_size == 32
    assert clip.family is ModelFamily.LATENT  # not trained on the built-in world
    text = clip.encode_text(["a red cube", "a blue sphere, front view"])
    assert text.shape == (2, 16)
    torch.testing.assert_close(text.norm(dim=-1), torch.ones(2))


def test_image_embeddings_are_unit_and_take_any_render_size(tmp_path):
    clip = ClipModel.load(str(save_tiny_clip(tmp_path / "clip")))
    rgb = torch.rand(3, 3, 48, 48, requires_grad=True)
    image = clip.encode_images(rgb)  # resized to 32 x 32 inside
    assert image.shape == (3, 16)
    torch.testing.assert_close(image.norm(dim=-1), torch.ones(3))
    image[:, 0].sum().backward()
    assert rgb.grad is not None and rgb.grad.abs().sum() > 0


def test_the_text_is_pooled_at_its_first_eos_not_at_the_largest_token_id(tmp_path):
    clip = ClipModel.load(str(save_tiny_clip(tmp_path / "clip")))
    assert clip.tokenizer.eos_token_id != 2  # transformers' legacy argmax rule for id 2
    # Padding after <eos> changes nothing: the pooled state is the <eos> token's.
    one = clip.encode_text(["a red cube"])
    two = clip.encode_text(["a red cube", "a red cube, front view"])
    torch.testing.assert_close(one[0], two[0], atol=1e-5, rtol=1e-5)


def test_a_folder_that_is_not_a_clip_is_one_error_naming_the_field(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FieldError) as info:
        ClipModel.load(str(tmp_path / "empty"))
    assert info.value.field == "clip"
    assert "is not a CLIP checkpoint folder" in str(info.value)


def test_an_unreachable_hub_id_is_one_error_naming_the_field(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read at import
    with pytest.raises(FieldError) as info:
        ClipModel.load("openai/clip-vit-base-patch32-not-here")
    assert info.value.field == "clip"
    assert "hub id reachable" in str(info.value)


def test_the_built_in_clip_ships_in_the_package_and_takes_the_built_in_presets():
    assert (builtin_model_path(BUILTIN_CLIP_NAME) / "model.safetensors").is_file()
    clip = ClipModel.load(BUILTIN_CLIP_NAME)
    assert clip.family is ModelFamily.BUILTIN
    assert clip.image_size == 32
