"""CLIP score and R-precision: on synthetic embeddings against their definitions, and with the
built-in tiny-clip on analytic objects rendered by the project's mesh renderer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.measure import marching_cubes

from backend.builtin_model import shapes, vocabulary
from backend.export.textured_mesh import TexturedMesh
from backend.guidance.clip_model import ClipModel
from backend.scoring.clip_score import (
    clip_score,
    render_meshes,
    score_cameras,
    score_meshes,
    world_distractors,
)


class ColourClip:
    """A stand-in CLIP whose embeddings are exact: a caption embeds as its colour's unit RGB,
    an image as its mean colour's unit RGB."""

    device = torch.device("cpu")

    def encode_text(self, prompts: list[str]) -> torch.Tensor:
        rgb = [vocabulary.COLOURS[vocabulary.read_prompt(p).colour] for p in prompts]
        return torch.nn.functional.normalize(torch.tensor(rgb), dim=-1)

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.normalize(images.mean(dim=(2, 3)), dim=-1)


def _solid(colours: list[tuple[float, float, float]]) -> torch.Tensor:
    return torch.tensor(colours)[:, :, None, None].expand(len(colours), 3, 4, 4)


def test_score_is_the_mean_cosine_and_r_precision_the_share_of_views_ranked_first():
    red, blue = vocabulary.COLOURS["red"], vocabulary.COLOURS["blue"]
    images = _solid([red, red, blue, red])  # one view of four shows the wrong colour
    result = clip_score(ColourClip(), images, "a red cube", ["a blue cube", "a green cube"])
    unit = torch.nn.functional.normalize(torch.tensor([red, blue]), dim=-1)
    expected = (3 * 1.0 + float(unit[0] @ unit[1])) / 4
    assert result.score == pytest.approx(expected, abs=1e-6)
    assert result.r_precision == pytest.approx(0.75)
    assert result.best_captions == ("a red cube", "a red cube", "a blue cube", "a red cube")
    assert (result.views, result.distractors) == (4, 2)


def test_the_world_distractors_are_every_other_shape_and_colour():
    distractors = world_distractors("a red box")
    assert len(distractors) == len(vocabulary.SHAPES) * len(vocabulary.COLOURS) - 1
    assert "a red cube" not in distractors
    assert {"a blue cube", "a red sphere"} <= set(distractors)


def _analytic_mesh(shape: str, colour: str) -> TexturedMesh:
    """The built-in world's object, meshed by marching cubes, with a solid texture."""
    n = 48
    axis = torch.linspace(-0.6, 0.6, n)
    grid = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1).reshape(-1, 3)
    parts = shapes.object_parts(shape)
    sdf = torch.stack([p.sdf(grid) for p in parts], -1).min(-1).values.reshape(n, n, n)
    vertices, faces, _, _ = marching_cubes(sdf.numpy(), 0.0, spacing=(1.2 / (n - 1),) * 3)
    texture = np.zeros((4, 4, 3), dtype=np.uint8)
    texture[:] = np.round(np.array(vocabulary.COLOURS[colour]) * 255).astype(np.uint8)
    return TexturedMesh(
        name=shape,
        vertices=vertices.astype(np.float64) - 0.6,
        faces=faces[:, ::-1].astype(np.int64).copy(),
        uvs=np.full((len(vertices), 2), 0.5),
        texture=texture,
    )


def test_renders_show_the_mesh_in_its_colour_over_grey():
    images = render_meshes([_analytic_mesh("cube", "red")], score_cameras(4), 32)
    assert images.shape == (4, 3, 32, 32)
    centre = images[:, :, 12:20, 12:20].mean(dim=(0, 2, 3))
    assert centre[0] > 2 * centre[2]  # red, lit
    torch.testing.assert_close(images[:, :, 0, 0], torch.full((4, 3), 0.5))


@pytest.mark.parametrize(("shape", "colour"), [("cube", "red"), ("sphere", "blue")])
def test_tiny_clip_ranks_the_right_prompt_first_for_analytic_objects(shape, colour):
    clip = ClipModel.load("tiny-clip")
    prompt = f"a {colour} {shape}"
    result = score_meshes(clip, [_analytic_mesh(shape, colour)], prompt)
    assert result.r_precision == 1.0, result.best_captions
    assert result.score > 0
