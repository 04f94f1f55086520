"""The PyTorch mesh rasteriser: silhouette gradients against finite differences, antialiased
coverage against the analytic area, the renderer's rasteriser choice (nvdiffrast only on CUDA
when installed), and a rendered sphere's outline."""

from __future__ import annotations

import math

import torch
import trimesh

from backend.field.surface_mesh import SurfaceMesh
from backend.geometry.mesh_topology import face_neighbours
from backend.render import mesh_raster, nvdiffrast_raster
from backend.render.cameras import orbit_cameras
from backend.render.mesh_renderer import rasteriser_for, render_mesh
from backend.render.shading import ShadingMode

SIZE = 16
DISTANCE = 2.0
FOVY_DEG = 40.0


def _front_camera(dtype: torch.dtype = torch.float64):
    cameras = orbit_cameras(
        torch.tensor([0.0]), torch.tensor([0.0]), torch.tensor([DISTANCE]), torch.tensor([FOVY_DEG])
    )
    cameras.c2w = cameras.c2w.to(dtype)
    cameras.fovy = cameras.fovy.to(dtype)
    return cameras


def _tetrahedron() -> tuple[torch.Tensor, torch.Tensor]:
    """A small closed mesh facing the front camera (at -Y) with irregular corners."""
    vertices = torch.tensor(
        [[-0.31, -0.05, -0.27], [0.33, -0.02, -0.21], [0.04, 0.01, 0.36], [0.02, 0.35, 0.03]],
        dtype=torch.float64,
    )
    faces = torch.tensor([[0, 1, 2], [0, 3, 1], [1, 3, 2], [2, 3, 0]])
    return vertices, faces


def _coverage(vertices: torch.Tensor, faces: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """sum over pixels of weights * antialiased opacity, one front view."""
    raster = mesh_raster.rasterise(
        vertices, faces, face_neighbours(faces), _front_camera(), SIZE, SIZE
    )
    opacity = raster.hit[..., None].to(vertices.dtype)
    return (weights * mesh_raster.antialias(raster, opacity)).sum()


def test_face_neighbours_of_a_tetrahedron():
    _, faces = _tetrahedron()
    neighbours = face_neighbours(faces)
    for f in range(4):
        for k in range(3):
            g = int(neighbours[f, k])
            edge = {int(faces[f, (k + 1) % 3]), int(faces[f, (k + 2) % 3])}
            assert g != f and edge <= set(faces[g].tolist())


def test_silhouette_gradient_matches_finite_differences():
    vertices, faces = _tetrahedron()
    weights = torch.rand(1, SIZE, SIZE, 1, generator=torch.Generator().manual_seed(0)).double()
    moving = vertices.clone().requires_grad_(True)
    _coverage(moving, faces, weights).backward()
    analytic = moving.grad
    eps = 1e-5
    numeric = torch.zeros_like(vertices)
    for v in range(4):
        for c in range(3):
            plus, minus = vertices.clone(), vertices.clone()
            plus[v, c] += eps
            minus[v, c] -= eps
            numeric[v, c] = (_coverage(plus, faces, weights) - _coverage(minus, faces, weights)) / (
                2 * eps
            )
    # The silhouette is all the gradient there is: without antialiasing, coverage is a step
    # function of the vertices.
    assert numeric.abs().max() > 1.0
    torch.testing.assert_close(analytic, numeric, rtol=1e-4, atol=1e-4)


def test_antialiased_coverage_is_the_projected_area():
    # A front-facing square of side 0.5 at the look-at point covers (0.5 f / d)^2 pixels.
    vertices = torch.tensor(
        [[-0.25, 0.0, -0.25], [0.25, 0.0, -0.25], [0.25, 0.0, 0.25], [-0.25, 0.0, 0.25]],
        dtype=torch.float64,
    )
    vertices = vertices @ torch.tensor(
        [
            [math.cos(0.3), 0.0, math.sin(0.3)],
            [0.0, 1.0, 0.0],
            [-math.sin(0.3), 0.0, math.cos(0.3)],
        ],
        dtype=torch.float64,
    )  # turned in the image plane, so edges cross pixels at all offsets
    faces = torch.tensor([[0, 1, 2], [0, 2, 3]])
    focal = 0.5 * SIZE / math.tan(math.radians(FOVY_DEG) / 2)
    expected = (0.5 * focal / DISTANCE) ** 2
    hard = mesh_raster.rasterise(
        vertices, faces, face_neighbours(faces), _front_camera(), SIZE, SIZE
    ).hit.sum()
    soft = _coverage(vertices, faces, torch.ones(1, SIZE, SIZE, 1, dtype=torch.float64))
    assert abs(float(soft) - expected) < 0.02 * expected
    assert abs(float(soft) - expected) < abs(float(hard) - expected) + 1e-9


def test_nvdiffrast_only_on_cuda_when_installed(monkeypatch):
    assert rasteriser_for(torch.device("cpu")) is mesh_raster
    monkeypatch.setattr(nvdiffrast_raster.importlib.util, "find_spec", lambda name: None)
    assert rasteriser_for(torch.device("cuda")) is mesh_raster
    monkeypatch.setattr(nvdiffrast_raster.importlib.util, "find_spec", lambda name: object())
    assert rasteriser_for(torch.device("cuda")) is nvdiffrast_raster
    assert rasteriser_for(torch.device("cuda"), allow_nvdiffrast=False) is mesh_raster


def test_rendered_sphere_outline_and_colour():
    radius = 0.5
    sphere = trimesh.creation.icosphere(subdivisions=4, radius=radius)
    albedo = torch.logit(torch.tensor([0.2, 0.4, 0.9])).view(1, 3, 1, 1, 1).expand(1, 3, 4, 4, 4)
    surface = SurfaceMesh(
        torch.from_numpy(sphere.vertices).float(), torch.from_numpy(sphere.faces), albedo, 1.0
    )
    cameras = _front_camera(torch.float32)
    size = 48
    out = render_mesh(
        surface,
        cameras,
        size,
        size,
        torch.tensor([int(ShadingMode.ALBEDO)]),
        torch.zeros(1, 3),
    )
    focal = 0.5 * size / math.tan(math.radians(FOVY_DEG) / 2)
    # The outline of a sphere seen from distance d: a disc of angular radius asin(r / d).
    disc = math.pi * (focal * math.tan(math.asin(radius / DISTANCE))) ** 2
    assert abs(float(out.opacity.detach().sum()) - disc) < 0.03 * disc
    centre = out.rgb[0, :, size // 2, size // 2]
    torch.testing.assert_close(centre, torch.tensor([0.2, 0.4, 0.9]), atol=1e-4, rtol=0)
