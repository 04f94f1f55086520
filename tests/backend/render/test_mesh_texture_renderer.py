"""Mesh renderer against analytic cases: silhouette, depth, texture lookup, z-buffer, shading,
and gradients that reach exactly the sampled texels."""

from __future__ import annotations

import math

import pytest
import torch

from backend.render.cameras import camera_rays, orbit_cameras
from backend.render.mesh_texture_renderer import (
    TexturedSurface,
    rasterise,
    render_textured,
    sample_texture,
)
from backend.render.shading import ShadingConfig, ShadingMode, shade
from tests.backend.pipelines.edit_meshes import uv_cube

HALF = 0.35
DISTANCE = 2.0
FOVY_DEG = 40.0


def _cube_surface(flip_winding: bool = False) -> TexturedSurface:
    cube = uv_cube(HALF)
    faces = torch.from_numpy(cube.faces)
    if flip_winding:
        faces = faces[:, [0, 2, 1]]
    return TexturedSurface.from_parts(
        [(torch.from_numpy(cube.vertices).float(), faces, torch.from_numpy(cube.uvs).float())]
    )


def _cell_texture() -> torch.Tensor:
    """[3, 2, 3]: one colour per UV cell of uv_cube (cell (col, row), row 0 at v < 0.5)."""
    texture = torch.zeros(3, 2, 3)
    for k in range(6):
        col, row = k % 3, k // 3
        texture[:, 1 - row, col] = torch.tensor([k / 5.0, 1.0 - k / 5.0, 0.5])
    return texture


def _front_camera(azimuth: float = 0.0, elevation: float = 0.0):
    return orbit_cameras(
        torch.tensor([elevation]),
        torch.tensor([azimuth]),
        torch.tensor([DISTANCE]),
        torch.tensor([FOVY_DEG]),
    )


def _albedo_render(surface, texture, cameras, size=64, background=(0.0, 0.0, 0.0)):
    b = len(cameras)
    return render_textured(
        surface,
        [texture],
        cameras,
        size,
        size,
        torch.full((b,), int(ShadingMode.ALBEDO)),
        torch.tensor([background]).expand(b, 3),
    )


def test_front_view_of_a_cube_is_its_projected_square():
    size = 64
    out = _albedo_render(_cube_surface(), _cell_texture(), _front_camera(), size)
    focal = 0.5 * size / math.tan(math.radians(FOVY_DEG) / 2)
    half_pixels = focal * HALF / (DISTANCE - HALF)  # the front face, perspective
    expected = (2 * half_pixels) ** 2
    # Pixel centres inside the square: within one pixel row/column of the analytic area.
    assert abs(out.opacity.sum().item() - expected) < 4 * 2 * half_pixels
    centre = size // 2
    assert out.depth[0, 0, centre, centre].item() == pytest.approx(
        math.hypot(DISTANCE - HALF, 0.5 / focal * (DISTANCE - HALF) * math.sqrt(2)), rel=1e-4
    )


def test_each_side_shows_its_own_texture_cell():
    texture = _cell_texture()
    # uv_cube's sides: k = 2 * axis + (0 for +, 1 for -). Azimuth 0 looks from -Y (k = 3),
    # azimuth 90 from +X (k = 0), azimuth -90 from -X (k = 1), 180 from +Y (k = 2).
    for azimuth, side in ((0.0, 3), (90.0, 0), (-90.0, 1), (180.0, 2)):
        out = _albedo_render(_cube_surface(), texture, _front_camera(azimuth), 32)
        col, row = side % 3, side // 3
        expected = texture[:, 1 - row, col]
        # The texture is 2 x 3, so bilinear lookups near cell centres are exact.
        centre_colour = out.rgb[0, :, 16, 16]
        assert torch.allclose(centre_colour, expected, atol=0.05), (azimuth, centre_colour)


def test_nearest_face_wins_and_winding_does_not_matter():
    texture = _cell_texture()
    cameras = orbit_cameras(
        torch.tensor([30.0, -20.0]),
        torch.tensor([40.0, -130.0]),
        torch.tensor([2.0, 1.8]),
        torch.tensor([50.0, 50.0]),
    )
    front = _albedo_render(_cube_surface(), texture, cameras, 32)
    flipped = _albedo_render(_cube_surface(flip_winding=True), texture, cameras, 32)
    assert torch.allclose(front.rgb, flipped.rgb, atol=1e-5)
    surface = _cube_surface()
    fragments = rasterise(surface.vertices, surface.faces, cameras, 32, 32)
    expected = _brute_force_depth(surface, cameras, 32)
    assert torch.equal(fragments.face_ids >= 0, torch.isfinite(expected))
    hit = fragments.face_ids >= 0
    assert torch.allclose(fragments.depth[hit], expected[hit], atol=1e-5)


def _brute_force_depth(surface: TexturedSurface, cameras, size: int) -> torch.Tensor:
    """[B, size, size] nearest ray-triangle distance over all faces (inf on misses)."""
    rays = camera_rays(cameras, size, size)
    o = rays.origins.reshape(-1, 1, 3).double()
    d = rays.directions.reshape(-1, 1, 3).double()
    v = surface.vertices[surface.faces].double()  # [F, 3, 3]
    e1, e2 = v[:, 1] - v[:, 0], v[:, 2] - v[:, 0]
    p = torch.cross(d.expand(-1, len(v), 3), e2.expand(len(o), -1, 3), dim=-1)
    det = (e1 * p).sum(-1)
    s = o - v[:, 0]
    u = (s * p).sum(-1) / det
    q = torch.cross(s, e1.expand(len(o), -1, 3), dim=-1)
    w = (d * q).sum(-1) / det
    t = (e2 * q).sum(-1) / det
    inside = (u >= 0) & (w >= 0) & (u + w <= 1) & (t > 0)
    t = torch.where(inside, t, torch.inf)
    return t.min(-1).values.view(len(cameras), size, size).float()


def test_lit_colour_is_the_shading_formula_with_the_face_normal():
    surface = _cube_surface()
    texture = torch.full((3, 4, 4), 0.6)
    cameras = _front_camera()
    cameras.light_position = torch.tensor([[0.5, -2.0, 1.0]])
    shading = ShadingConfig()
    out = render_textured(
        surface,
        [texture],
        cameras,
        16,
        16,
        torch.tensor([int(ShadingMode.LIT)]),
        torch.zeros(1, 3),
        shading,
    )
    fragments = rasterise(surface.vertices, surface.faces, cameras, 16, 16)
    face = fragments.face_ids[0, 8, 8]
    weights = fragments.barycentric[0, 8, 8]
    point = (weights[:, None] * surface.vertices[surface.faces[face]]).sum(0)
    expected = shade(
        torch.full((1, 1, 3), 0.6),
        torch.tensor([[[0.0, -1.0, 0.0]]]),  # the -Y side faces the camera
        point.view(1, 1, 3),
        cameras.light_position,
        torch.tensor([int(ShadingMode.LIT)]),
        shading,
    )
    assert torch.allclose(out.rgb[0, :, 8, 8], expected.view(3), atol=1e-5)
    assert torch.allclose(out.normal[0, :, 8, 8], torch.tensor([0.0, -1.0, 0.0]), atol=1e-6)


def test_gradients_reach_only_sampled_texels_with_bilinear_weights():
    surface = _cube_surface()
    texture = torch.rand(3, 8, 12, requires_grad=True)
    out = _albedo_render(surface, texture, _front_camera(), 16)
    pixel = out.rgb[0, 1, 8, 8]  # green channel of one pixel on the front side
    (grad,) = torch.autograd.grad(pixel, texture, retain_graph=True)
    assert grad[0].abs().sum() == 0 and grad[2].abs().sum() == 0
    assert grad[1].sum().item() == pytest.approx(1.0, abs=1e-5)  # bilinear weights sum to 1
    assert 1 <= (grad[1] > 0).sum() <= 4
    (background,) = torch.autograd.grad(out.rgb[0, :, 0, 0].sum(), texture)
    assert background.abs().sum() == 0


def test_texture_lookup_puts_row_zero_at_the_top_and_wraps():
    texture = torch.tensor([[[0.0, 1.0], [2.0, 3.0]]])  # [1, 2, 2]: row 0 = top = v near 1
    uv = torch.tensor([[0.25, 0.75], [0.75, 0.75], [0.25, 0.25], [1.75, -0.75]])
    assert sample_texture(texture, uv)[:, 0].tolist() == [0.0, 1.0, 2.0, 3.0]


def test_parts_sample_their_own_textures():
    cube = uv_cube(HALF)
    vertices = torch.from_numpy(cube.vertices).float()
    faces = torch.from_numpy(cube.faces)
    uvs = torch.from_numpy(cube.uvs).float()
    left = (vertices - torch.tensor([0.4, 0.0, 0.0])) * 0.5
    right = (vertices + torch.tensor([0.4, 0.0, 0.0])) * 0.5
    surface = TexturedSurface.from_parts([(left, faces, uvs), (right, faces, uvs)])
    red, blue = torch.zeros(3, 4, 4), torch.zeros(3, 4, 4)
    red[0], blue[2] = 1.0, 1.0
    b = 1
    out = render_textured(
        surface,
        [red, blue],
        _front_camera(),
        32,
        32,
        torch.full((b,), int(ShadingMode.ALBEDO)),
        torch.zeros(b, 3),
    )
    # Azimuth 0 looks along +Y: world -X (the first part) is on the image's left.
    assert out.rgb[0, 0, 16, 9].item() == 1.0 and out.rgb[0, 2, 16, 9].item() == 0.0
    assert out.rgb[0, 2, 16, 22].item() == 1.0 and out.rgb[0, 0, 16, 22].item() == 0.0
