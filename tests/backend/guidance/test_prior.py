"""Loading priors in the diffusers layout, offline, and the noise-prediction conversions."""

from __future__ import annotations

import json

import pytest
import torch

from backend.guidance.prior import DiffusionPrior, resolve_model
from protocol.errors import FieldError
from tests.tiny_priors import tiny_pixel_prior, tiny_unet


def _save(prior: DiffusionPrior, folder) -> None:
    prior.unet.save_pretrained(folder / "unet")
    prior.text_encoder.save_pretrained(folder / "text_encoder")
    prior.tokenizer.save_pretrained(folder / "tokenizer")
    prior.scheduler.save_pretrained(folder / "scheduler")
    index = {
        "_class_name": "TinyShapesPipeline",
        "unet": ["diffusers", "UNet2DConditionModel"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "PreTrainedTokenizerFast"],
        "scheduler": ["diffusers", "DDPMScheduler"],
    }
    (folder / "model_index.json").write_text(json.dumps(index))


def test_load_from_a_local_folder_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    original = tiny_pixel_prior()
    _save(original, tmp_path)
    loaded = DiffusionPrior.load(str(tmp_path))
    assert not loaded.latent and loaded.resolution == 16
    x_t, t = torch.randn(1, 3, 16, 16), torch.tensor([300])
    text = original.encode_text(["a red cube"])
    assert torch.allclose(loaded.encode_text(["a red cube"]), text)
    with torch.no_grad():
        assert torch.allclose(
            loaded.predict_noise(x_t, t, text), original.predict_noise(x_t, t, text), atol=1e-6
        )


def test_missing_model_names_the_field(tmp_path):
    with pytest.raises(
        FieldError, match=r"model: .*nowhere.* is neither a local folder nor a hub id"
    ):
        DiffusionPrior.load(str(tmp_path / "nowhere"))


def test_a_unet_with_another_camera_label_width_is_refused_by_name():
    # e.g. a tiny-shapes trained with the earlier 3-number condition (the direction to the camera)
    stale = tiny_pixel_prior()
    with pytest.raises(ValueError, match=r"model: its U-Net takes a class label of 3 numbers"):
        DiffusionPrior.from_components(
            tiny_unet(16, 3, camera_dim=3), stale.scheduler, stale.text_encoder, stale.tokenizer
        )


def test_builtin_name_resolves_to_the_package_folder():
    assert resolve_model(None).endswith("tiny-shapes")
    assert resolve_model("tiny-shapes") == resolve_model(None)
    assert resolve_model("runwayml/stable-diffusion-v1-5") == "runwayml/stable-diffusion-v1-5"


@pytest.mark.parametrize("prediction_type", ["v_prediction", "sample"])
def test_noise_from_v_and_sample_predictions(prediction_type):
    prior = tiny_pixel_prior(prediction_type=prediction_type)
    x0, eps = torch.randn(2, 3, 16, 16), torch.randn(2, 3, 16, 16)
    t = torch.tensor([10, 600])
    x_t = prior.add_noise(x0, eps, t)
    a = prior.alphas_cumprod[t].view(-1, 1, 1, 1)
    # Feed the converter a perfect prediction and expect the true eps back.
    perfect = a.sqrt() * eps - (1 - a).sqrt() * x0 if prediction_type == "v_prediction" else x0

    class Oracle(torch.nn.Module):
        config = prior.unet.config

        def forward(self, x, t, encoder_hidden_states):
            return type("Out", (), {"sample": perfect})()

    prior.unet = Oracle()
    got = prior.predict_noise(x_t, t, torch.zeros(2, 4, 32))
    assert torch.allclose(got, eps, atol=1e-4)


def test_a_hub_id_this_machine_cannot_reach_is_one_clear_error(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read at import
    with pytest.raises(FieldError) as caught:
        DiffusionPrior.load("stabilityai/stable-diffusion-2-1-base")
    assert caught.value.field == "model"
    assert "'stabilityai/stable-diffusion-2-1-base' is neither a local folder nor a hub id" in str(
        caught.value
    )
