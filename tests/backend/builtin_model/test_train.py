"""The training script on a toy budget: what it saves loads as a camera-conditioned prior, and a
camera-conditioned run can start from a text-only one."""

from __future__ import annotations

from dataclasses import replace

import torch
from diffusers import UNet2DConditionModel

from backend.builtin_model.train import TrainConfig, train
from backend.guidance.prior import DiffusionPrior

TOY = TrainConfig(steps=2, batch=4, dataset_size=8, warmup=1, checkpoint_every=100)


def test_a_run_saves_a_model_the_prior_loads_with_its_camera(tmp_path):
    train(tmp_path / "model", TOY, grid_path=None)
    prior = DiffusionPrior.load(str(tmp_path / "model"))
    assert prior.camera_conditioned


def test_a_camera_run_starts_from_a_text_only_run(tmp_path):
    train(tmp_path / "text", replace(TOY, camera_conditioned=False), grid_path=None)
    start = UNet2DConditionModel.from_pretrained(tmp_path / "text" / "unet").state_dict()
    # One step at learning rate 0: what is saved is the starting point itself.
    camera = replace(TOY, steps=1, lr=0.0, init_from=str(tmp_path / "text"))
    train(tmp_path / "camera", camera, grid_path=None)
    saved = UNet2DConditionModel.from_pretrained(tmp_path / "camera" / "unet").state_dict()
    for key, value in start.items():
        assert torch.equal(saved[key], value), key
    embedding_out = saved["class_embedding.linear_2.weight"]
    assert torch.equal(embedding_out, torch.zeros_like(embedding_out))  # camera starts unheard
