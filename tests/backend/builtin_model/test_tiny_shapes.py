"""The built-in model: plain diffusers loading offline, vocabulary, and what SDS makes of it."""

from __future__ import annotations

import random

import pytest
import torch
from diffusers import DDPMScheduler, UNet2DConditionModel
from transformers import AutoTokenizer, CLIPTextModel

from backend.builtin_model import vocabulary
from backend.builtin_model.dataset import (
    DatasetConfig,
    render_batch,
    silhouettes,
    training_views,
)
from backend.builtin_model.sample_grid import sample_images
from backend.export.glb import read_glb
from backend.geometry.oriented_box import OrientedBox
from backend.guidance.camera_condition import camera_condition
from backend.guidance.prior import DiffusionPrior, ModelFamily, builtin_model_path
from backend.pipelines.generate import generate
from backend.pipelines.presets import preset_config
from backend.pipelines.runner import load_prior
from protocol.messages import GenerateRequest, Result
from tests.judging import nearest_colour, nearest_shape, surface_colour

MODEL = builtin_model_path()


def test_loads_through_the_plain_diffusers_api_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    unet = UNet2DConditionModel.from_pretrained(MODEL, subfolder="unet")
    text_encoder = CLIPTextModel.from_pretrained(MODEL, subfolder="text_encoder")
    tokenizer = AutoTokenizer.from_pretrained(MODEL, subfolder="tokenizer")
    scheduler = DDPMScheduler.from_pretrained(MODEL, subfolder="scheduler")
    assert unet.config.sample_size == 32 and scheduler.config.prediction_type == "v_prediction"
    ids = tokenizer(
        ["a red cube"], padding="max_length", max_length=12, return_tensors="pt"
    ).input_ids
    assert tokenizer.unk_token_id not in ids[0].tolist()
    # The camera condition (backend.guidance.camera_condition) is the U-Net's class label:
    # [sin el, cos el, cos(k az), sin(k az) for k = 1..4], here a view from straight in front.
    camera = torch.tensor([[0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]])
    with torch.no_grad():
        text = text_encoder(ids).last_hidden_state
        out = unet(
            torch.randn(1, 3, 32, 32),
            torch.tensor([500]),
            encoder_hidden_states=text,
            class_labels=camera,
        ).sample
    assert out.shape == (1, 3, 32, 32)


def test_weights_fit_the_size_budget():
    total = sum(f.stat().st_size for f in MODEL.rglob("*") if f.is_file())
    assert total <= 25 * 2**20


def _error_turned(prior: DiffusionPrior, shape: str, turn_deg: float) -> float:
    """Denoising error of the model on held-out red `shape`s seen from above 58 degrees (t = 600)
    when its camera label is turned by `turn_deg` about the vertical, over the error with the
    true label, minus 1."""
    images, _, cameras = render_batch(
        shape, ["red"] * 384, DatasetConfig(), torch.Generator().manual_seed(123), random.Random(1)
    )
    top = cameras.elevation > 58.0
    x0, c2w = images[top] * 2 - 1, cameras.c2w[top]
    # The label a box turned by `turn_deg` would give these cameras (as compose passes it).
    turn = OrientedBox((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), turn_deg).rotation()
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))
    t = torch.full((len(x0),), 600)
    x_t = prior.add_noise(x0, noise, t)
    target = prior.training_target(x0, noise, t)
    errors = []
    with torch.no_grad():
        text = prior.encode_text([f"a red {shape}"]).expand(len(x0), -1, -1)
        for frame in (None, turn):
            out = prior.model_output(x_t, t, text, camera_condition(c2w, frame))
            errors.append(float((out - target).pow(2).mean()))
    return errors[1] / errors[0] - 1


def test_the_model_knows_which_way_a_cube_is_turned():
    """A cube seen from above is a square turned by the camera's azimuth; a cylinder is a disc
    whatever the azimuth. A prior that reads the azimuth predicts the cube worse under a label
    turned by 45 degrees, and the cylinder hardly worse. Measured on the committed model: cube
    +284%, cylinder +0.9% (table +284%, sphere +0.4%); after three of its five training runs
    the cube gave +28%, and the model trained with random camera distance, fov and object
    scale +1.1%, which fails here."""
    prior = DiffusionPrior.load(None, torch.device("cpu"))
    assert _error_turned(prior, "cube", 45.0) > 0.10
    assert abs(_error_turned(prior, "cylinder", 45.0)) < 0.03


def _sampled_cube_turns(
    prior: DiffusionPrior, views: list[tuple[float, float]], n: int
) -> torch.Tensor:
    """For n samples of "a red cube" per (elevation, azimuth) view, the turn in degrees ([-45,
    45), steps of 3) of the canonical cube whose training-set silhouette best matches the
    sample's (pixels unlike the sample's border colour): [len(views) * n]."""
    turns = torch.arange(-45.0, 45.0, 3.0)
    found = []
    for elevation, azimuth in views:
        # A cube turned by -d about Z looks, from azimuth a, as the canonical one from a + d.
        turned_views = training_views(torch.full_like(turns, elevation), azimuth + turns)
        references = silhouettes("cube", turned_views, 32) > 0.5
        cameras = training_views(torch.full((n,), elevation), torch.full((n,), azimuth))
        images = sample_images(
            prior, ["a red cube"] * n, seed=int(azimuth), camera=camera_condition(cameras.c2w)
        )
        border = torch.cat([images[..., 0, :], images[..., -1, :]], dim=-1)  # [n, 3, 64]
        background = border.median(dim=-1).values[:, :, None, None]
        masks = (images - background).abs().amax(dim=1) > 0.12  # [n, 32, 32]
        overlap = (masks[:, None] & references[None]).sum((2, 3))
        union = (masks[:, None] | references[None]).sum((2, 3))
        found.append(turns[(overlap / union).argmax(dim=1)])
    return torch.cat(found)


@pytest.mark.slow
def test_sampled_cubes_are_turned_as_the_camera_says():
    """The camera condition must fix the cube's turn in the image, not only its look on
    average: score distillation averages the views, and cubes turned at random between views
    average to a rounded block. Measured (4 views x 16 samples): after three of the model's five
    training runs the median error was 15 degrees (mean 17; turns at random give 22.5) and the
    cube distilled at fill 0.76-0.77; the committed model gives 6 degrees (mean 6.3); a model
    whose samples do not follow the camera fails here."""
    prior = DiffusionPrior.load(None, torch.device("cpu"))
    views = [(15.0, 20.0), (30.0, 35.0), (45.0, 0.0), (60.0, 70.0)]
    errors = _sampled_cube_turns(prior, views, n=16).abs()
    assert errors.median() <= 9.0, f"median turn error {errors.median():.0f} degrees"


def test_vocabulary_warning_names_the_known_world():
    assert vocabulary.vocabulary_warning("a red cube, front view") is None
    assert vocabulary.vocabulary_warning("a crimson box") is not None  # colour unknown
    warning = vocabulary.vocabulary_warning("a weathered bronze statue of a fox")
    assert "'fox'" in warning and "cube" in warning and "red" in warning
    assert vocabulary.read_prompt("a purple donut").shape == "torus"


CASES = [
    ("a red cube", "red", "cube"),
    ("a blue sphere", "blue", "sphere"),
    ("a yellow cone", "yellow", "cone"),
    ("a green torus", "green", "torus"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("prompt", "colour", "shape"), CASES)
def test_generate_makes_the_asked_colour_and_shape(prompt, colour, shape):
    prior = load_prior(None, torch.device("cpu"))
    config = preset_config("preview", "sds", ModelFamily.BUILTIN)
    events = list(generate(GenerateRequest(prompt=prompt, seed=0), prior, config, lambda: False))
    assert isinstance(events[-1], Result)
    (mesh,) = read_glb(events[-1].meshes[0].glb)
    rgb = surface_colour(mesh)
    assert nearest_colour(rgb) == colour, f"surface colour {rgb.round(2)}"
    found_shape, features = nearest_shape(mesh.vertices, mesh.faces)
    detail = f"nearest {found_shape}; features [fill, taper, aspect, hole] = {features.round(2)}"
    assert found_shape == shape, detail
