"""The edit pipeline: texture mode keeps geometry and UVs bit-identical, region edits leave the
outside unchanged (texels; geometry in shape mode), bad meshes give clear errors, and with the
built-in model a red cube asked to be "a green cube" comes back green."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
import trimesh
from scipy.spatial import cKDTree

from backend.builtin_model.vocabulary import COLOURS
from backend.export.export_field import ExportConfig
from backend.export.glb import read_glb, write_glb
from backend.export.marching import MarchingConfig
from backend.export.texture_bake import texel_samples
from backend.export.textured_mesh import TexturedMesh
from backend.field.grid_field import GridFieldConfig
from backend.field.mesh_to_field import sample_surface
from backend.guidance.distillation import DistillationStep
from backend.guidance.prior import DiffusionPrior, ModelFamily
from backend.pipelines import methods as methods_module
from backend.pipelines.edit import edit
from backend.pipelines.edit_source import read_sources, surface_colour, transform_points
from backend.pipelines.presets import DistillConfig, preset_config
from backend.render.cameras import orbit_cameras
from backend.render.mesh_texture_renderer import TexturedSurface, render_textured
from backend.render.renderer import RenderConfig
from backend.render.shading import ShadingMode
from protocol.errors import ErrorCode, ProtocolError
from protocol.limits import Limits
from protocol.messages import IDENTITY, JobWarning, Result
from tests.backend.export.export_shapes import raw_glb
from tests.backend.pipelines.edit_meshes import cube_glb, edit_request, uv_cube

FAST = replace(
    preset_config("preview", "sds", ModelFamily.BUILTIN),
    steps=6,
    preview_every=3,
    render=RenderConfig(12, 12),
    grid=GridFieldConfig(resolution=32),
    export=ExportConfig(marching=MarchingConfig(coarse_resolution=32, fine_resolution=48)),
    face_budget=1500,
    texture_size=128,
)
"""A few steps at small sizes: what the structural tests need."""


class Darken:
    """A stand-in distillation method with a strong, known effect: its loss pulls every
    rendered pixel toward black, so whatever may change does change."""

    name = "darken"
    guidance_scale = 1.0

    def step(self, x0, guided_noise, c2w, progress, generator) -> DistillationStep:
        return DistillationStep(
            loss=(x0 + 1.0).mean() * 10.0, grad_norm=0.0, timesteps=torch.zeros(len(x0))
        )


@pytest.fixture
def darken(monkeypatch):
    monkeypatch.setattr(methods_module, "make_method", lambda *args: Darken())


def _run(request, prior, config: DistillConfig = FAST) -> tuple[Result, list]:
    events = list(edit(request, prior, config, lambda: False))
    assert isinstance(events[-1], Result)
    return events[-1], events


def _affine(scale: float, yaw_deg: float, translation) -> tuple[float, ...]:
    c, s = math.cos(math.radians(yaw_deg)), math.sin(math.radians(yaw_deg))
    matrix = np.eye(4)
    matrix[:3, :3] = scale * np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    matrix[:3, 3] = translation
    return tuple(matrix.reshape(-1))


def _hand_made_parts() -> list[TexturedMesh]:
    """Two parts with shuffled vertex and face order, a node transform, a non-manifold fin
    (three faces on one edge) and a duplicated face."""
    rng = np.random.default_rng(1)
    body = uv_cube(0.3, texture_size=256)
    order = rng.permutation(len(body.vertices))
    inverse = np.argsort(order)
    body = replace(
        body,
        name="body",
        vertices=body.vertices[order],
        uvs=body.uvs[order],
        faces=inverse[body.faces][rng.permutation(len(body.faces))],
    )
    fin = uv_cube(0.1, texture_size=300)
    extra = np.array([[0, 1, 5], [0, 1, 9], [2, 3, 0]])  # a third face on edge (0, 1), a repeat
    transform = np.eye(4)
    transform[:3, 3] = (0.0, 0.0, 0.45)
    fin = replace(fin, name="fin", faces=np.concatenate([fin.faces, extra]), transform=transform)
    return [body, fin]


def test_texture_mode_keeps_geometry_and_uvs_bit_identical(pixel_prior):
    glb = write_glb(_hand_made_parts())
    request = edit_request([glb], "a green cube", transforms=[_affine(2.0, 30.0, (1, 2, 3))])
    result, events = _run(request, pixel_prior)
    before = read_glb(glb)
    after = read_glb(result.meshes[0].glb)
    assert [m.name for m in after] == ["body", "fin"]
    for old, new in zip(before, after, strict=True):
        assert new.vertices.tobytes() == old.vertices.tobytes()
        assert new.faces.tobytes() == old.faces.tobytes()
        assert new.uvs.tobytes() == old.uvs.tobytes()
        assert np.array_equal(new.transform, old.transform)
        assert new.texture.shape[0] >= max(old.texture.shape[0], 256)
        assert new.texture.shape[1] >= max(old.texture.shape[1], 256)
    assert result.meshes[0].name == "mesh0"
    assert result.meshes[0].transform == request.meshes[0].transform
    assert any(type(e).__name__ == "Preview" for e in events)


def test_texture_region_keeps_every_texel_outside(pixel_prior, darken):
    transform = _affine(1.5, 40.0, (-1.0, 0.5, 2.0))
    glb = cube_glb(texture_size=256)
    region = (-5.0, -5.0, 2.0, 5.0, 5.0, 5.0)  # the world's upper half of the cube
    request = edit_request([glb], "a dark cube", region=region, transforms=[transform])
    result, _ = _run(request, pixel_prior, replace(FAST, steps=12))
    (before,) = read_glb(glb)
    (after,) = read_glb(result.meshes[0].glb)
    samples = texel_samples(before.vertices, before.faces, before.uvs, 256)
    world = transform_points(np.asarray(transform).reshape(4, 4), samples.points)
    inside = world[:, 2] >= 2.0
    old = before.texture[samples.rows, samples.cols].astype(int)
    new = after.texture[samples.rows, samples.cols].astype(int)
    assert np.array_equal(new[~inside], old[~inside])
    assert inside.sum() > 1000 and (~inside).sum() > 1000
    # Inside, the stand-in method darkened the texels.
    assert new[inside].sum(axis=1).mean() < old[inside].sum(axis=1).mean() - 30


def test_region_away_from_the_mesh_changes_nothing(pixel_prior):
    glb = cube_glb(texture_size=256)
    request = edit_request([glb], "a green cube", region=(5.0, 5.0, 5.0, 6.0, 6.0, 6.0))
    result, events = _run(request, pixel_prior)
    assert any(isinstance(e, JobWarning) and "region" in e.message for e in events)
    (before,), (after,) = read_glb(glb), read_glb(result.meshes[0].glb)
    assert np.array_equal(after.texture, before.texture)


def test_mesh_without_uvs_gets_a_new_layout_from_vertex_colours(pixel_prior):
    sphere = trimesh.creation.icosphere(2, radius=0.5)
    colours = np.tile(np.array([[20, 200, 40, 255]], dtype=np.uint8), (len(sphere.vertices), 1))
    mesh = TexturedMesh(
        "ball", sphere.vertices, sphere.faces.astype(np.int64), vertex_colors=colours
    )
    glb = write_glb([mesh])
    result, events = _run(edit_request([glb], "a red sphere"), pixel_prior)
    assert any(isinstance(e, JobWarning) and "no UVs" in e.message for e in events)
    (before,), (after,) = read_glb(glb), read_glb(result.meshes[0].glb)
    # Same triangles at the same positions, in the same order; vertices split along seams.
    assert np.array_equal(after.vertices[after.faces], before.vertices[before.faces])
    assert after.uvs is not None and after.texture.shape == (256, 256, 3)
    samples = texel_samples(after.vertices, after.faces, after.uvs, 256)
    mean = after.texture[samples.rows, samples.cols].mean(axis=0)
    assert np.abs(mean - [20, 200, 40]).max() < 25  # six random-prior steps move little


def test_shape_region_keeps_the_geometry_outside(pixel_prior, darken):
    transform = np.asarray(_affine(2.0, 30.0, (1.0, 2.0, 0.5))).reshape(4, 4)
    glb = cube_glb(half=0.35)
    region = (-10.0, -10.0, 0.8, 10.0, 10.0, 10.0)  # above world z = 0.8 (top at 1.2)
    request = edit_request(
        [glb], "a dark cube", mode="shape", region=region, transforms=[tuple(transform.reshape(-1))]
    )
    config = replace(FAST, steps=15)
    result, _ = _run(request, pixel_prior, config)
    (after,) = read_glb(result.meshes[0].glb)
    assert np.array_equal(after.transform, np.eye(4))
    (source,) = read_sources(request)
    voxel = 2.0 * source.frame.scale / (config.grid.resolution - 1)  # metres

    def world_surface(mesh: TexturedMesh) -> tuple[np.ndarray, np.ndarray]:
        """Dense surface samples: world points [N, 3] and their colours [N, 3]."""
        faces, weights, points = sample_surface(
            mesh.vertices, mesh.faces, 40_000, np.random.default_rng(0)
        )
        return transform_points(transform, points), surface_colour(mesh, faces, weights)

    (old, old_colour), (new, new_colour) = world_surface(read_glb(glb)[0]), world_surface(after)
    margin = 2.0 * voxel
    old_out = old[:, 2] < region[2] - margin
    new_out = new[:, 2] < region[2] - margin
    # Outside: the new surface lies on the old one and covers it (both within ~a voxel), in the
    # old colour (but for a few samples next to texture seams, where baking dilates colours).
    assert cKDTree(old).query(new[new_out])[0].max() < 1.2 * voxel
    assert cKDTree(new).query(old[old_out])[0].max() < 1.2 * voxel
    assert np.percentile(np.abs(new_colour[new_out] - old_colour[0]).max(axis=1), 99) < 0.02
    # Inside, the stand-in method darkened the surface.
    new_in = new[:, 2] > region[2] + margin
    assert new_in.sum() > 1000
    assert new_colour[new_in].sum(axis=1).mean() < old_colour[0].sum() - 0.3


def test_several_meshes_keep_names_and_transforms(pixel_prior):
    transforms = [_affine(1.0, 0.0, (0, 0, 0)), _affine(0.5, 90.0, (3, 0, 1))]
    request = edit_request([cube_glb(), cube_glb(half=0.2)], "a blue cube", transforms=transforms)
    result, _ = _run(request, pixel_prior, replace(FAST, steps=2))
    assert [m.name for m in result.meshes] == ["mesh0", "mesh1"]
    assert [m.transform for m in result.meshes] == [tuple(t) for t in transforms]


_TRIANGLE = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], dtype=np.float32)


@pytest.mark.parametrize(
    ("glb", "transform", "message"),
    [
        (b"glTF not really", None, "unreadable GLB"),
        (raw_glb(_TRIANGLE, mode=0), None, "no triangle mesh"),
        (raw_glb(_TRIANGLE, np.zeros(0)), None, "empty"),
        (raw_glb(np.array([[0, 0, 0], [np.nan, 0, 0], [0, 1, 0]])), None, "NaN"),
        (raw_glb(_TRIANGLE), tuple(np.diag([0.0, 0.0, 0.0, 1.0]).reshape(-1)), "no size"),
    ],
)
def test_bad_meshes_are_rejected_with_their_field(pixel_prior, glb, transform, message):
    transforms = [IDENTITY, IDENTITY if transform is None else transform]
    request = edit_request([cube_glb(), glb], "a green cube", transforms=transforms)
    with pytest.raises(ProtocolError, match=message) as caught:
        list(edit(request, pixel_prior, FAST, lambda: False))
    assert caught.value.code == ErrorCode.BAD_MESH
    assert caught.value.field == "meshes[1].glb"
    assert caught.value.message.startswith("meshes[1].glb: ")


def test_too_many_faces_and_strips(pixel_prior):
    request = edit_request([cube_glb()], "a green cube")
    with pytest.raises(ProtocolError, match="12 faces, the limit is 11") as caught:
        read_sources(request, Limits(max_faces=11))
    assert caught.value.code == ErrorCode.BAD_MESH
    strip = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]], dtype=np.float32)
    result, _ = _run(
        edit_request([raw_glb(strip, np.arange(4), mode=5)], "a red cube"),
        pixel_prior,
        replace(FAST, steps=1),
    )
    (after,) = read_glb(result.meshes[0].glb)
    assert len(after.faces) == 2  # the strip came back as two triangles, UV-unwrapped


def test_shape_mode_needs_an_invertible_transform(pixel_prior):
    flat = tuple(np.diag([1.0, 1.0, 0.0, 1.0]).reshape(-1))
    request = edit_request([cube_glb()], "a green cube", mode="shape", transforms=[flat])
    with pytest.raises(ProtocolError, match="invertible") as caught:
        list(edit(request, pixel_prior, FAST, lambda: False))
    assert caught.value.field == "meshes[0].transform"


def _albedo_colour(mesh: TexturedMesh) -> np.ndarray:
    """Mean albedo over the object's pixels in four side views, [3] in [0, 1]."""
    surface = TexturedSurface.from_parts(
        [
            (
                torch.from_numpy(mesh.vertices).float(),
                torch.from_numpy(mesh.faces),
                torch.from_numpy(mesh.uvs).float(),
            )
        ]
    )
    cameras = orbit_cameras(
        torch.full((4,), 20.0),
        torch.tensor([0.0, 90.0, 180.0, -90.0]),
        torch.full((4,), 2.0),
        torch.full((4,), 45.0),
    )
    texture = torch.from_numpy(mesh.texture.copy()).permute(2, 0, 1).float() / 255.0
    out = render_textured(
        surface,
        [texture],
        cameras,
        64,
        64,
        torch.full((4,), int(ShadingMode.ALBEDO)),
        torch.zeros(4, 3),
    )
    mask = out.opacity[:, 0] > 0
    return out.rgb.permute(0, 2, 3, 1)[mask].mean(0).numpy()


@pytest.mark.slow
def test_red_cube_edited_to_green_comes_back_green_with_the_same_geometry():
    torch.manual_seed(0)
    prior = DiffusionPrior.load(None)
    glb = cube_glb(half=0.35)  # the built-in red, one texture
    config = preset_config("preview", "sds", ModelFamily.BUILTIN)
    result, _ = _run(edit_request([glb], "a green cube"), prior, config)
    (before,), (after,) = read_glb(glb), read_glb(result.meshes[0].glb)
    assert after.vertices.tobytes() == before.vertices.tobytes()
    assert after.faces.tobytes() == before.faces.tobytes()
    colour = _albedo_colour(after)
    nearest = min(COLOURS, key=lambda name: np.linalg.norm(np.asarray(COLOURS[name]) - colour))
    assert nearest == "green", colour
    assert _albedo_colour(before).argmax() == 0  # it was red
