import io
from dataclasses import fields

import numpy as np
import pytest
import torch
import trimesh
from export_shapes import BLUE, RED, SphereField

from backend.export.errors import MeshError
from backend.export.export_field import ExportConfig, export_field, to_glb
from backend.export.field_protocol import ExportableField, field_device
from backend.export.glb import read_glb
from backend.export.marching import MarchingConfig

_SMALL = ExportConfig(marching=MarchingConfig(coarse_resolution=32, fine_resolution=32))


def _texel_colours(mesh, uv: np.ndarray) -> np.ndarray:
    """Nearest-texel colours [N, 3] in [0, 1] at UVs [N, 2] (origin bottom-left)."""
    height, width, _ = mesh.texture.shape
    cols = np.clip((uv[:, 0] * width).astype(int), 0, width - 1)
    rows = np.clip(((1.0 - uv[:, 1]) * height).astype(int), 0, height - 1)
    return mesh.texture[rows, cols] / 255.0


def test_sphere_field_exports_a_closed_mesh_of_the_right_radius(exported_sphere):
    mesh, _ = exported_sphere
    assert mesh.name == "ball"
    assert len(mesh.faces) <= 3000
    radius = np.linalg.norm(mesh.vertices, axis=1).mean()
    assert radius == pytest.approx(0.5, rel=0.02)
    # xatlas splits vertices along seams; merged by position the surface is closed.
    closed = trimesh.Trimesh(mesh.vertices, mesh.faces, process=True)
    assert closed.is_watertight
    assert closed.volume > 0


def test_uvs_and_texture_are_present(exported_sphere):
    mesh, _ = exported_sphere
    assert mesh.uvs.shape == (len(mesh.vertices), 2)
    assert mesh.uvs.min() >= 0.0 and mesh.uvs.max() <= 1.0
    assert mesh.texture.shape == (256, 256, 3) and mesh.texture.dtype == np.uint8


def test_baked_colours_match_the_albedo_on_the_surface(exported_sphere):
    mesh, _ = exported_sphere
    # Sample at face centroids (UV centroid -> texel) of faces wholly on one side of x = 0.
    corner_x = mesh.vertices[mesh.faces][..., 0]
    colours = _texel_colours(mesh, mesh.uvs[mesh.faces].mean(axis=1))
    red = corner_x.min(axis=1) > 0.0
    blue = corner_x.max(axis=1) < 0.0
    assert red.sum() > 500 and blue.sum() > 500
    assert np.allclose(colours[red], RED, atol=0.01)
    assert np.allclose(colours[blue], BLUE, atol=0.01)


def test_every_stage_is_timed_and_to_glb_adds_the_write(exported_sphere):
    mesh, timings = exported_sphere
    for stage in ("marching_ms", "cleanup_ms", "decimate_ms", "unwrap_ms", "bake_ms"):
        assert getattr(timings, stage) > 0.0, stage
    data = to_glb(mesh, "renamed", timings=timings)
    assert timings.write_ms > 0.0
    assert timings.total_ms == pytest.approx(sum(getattr(timings, f.name) for f in fields(timings)))
    (back,) = read_glb(data)
    assert back.name == "renamed"
    assert back.vertices[:, 2].max() == pytest.approx(0.5, abs=0.01)  # +Z stays +Z


def test_glb_loads_in_trimesh_with_its_texture(exported_sphere):
    mesh, _ = exported_sphere
    scene = trimesh.load_scene(io.BytesIO(to_glb(mesh)), file_type="glb")
    (geometry,) = scene.geometry.values()
    assert geometry.visual.material.baseColorTexture.size == (256, 256)
    assert len(geometry.faces) == len(mesh.faces)


def test_export_is_deterministic():
    first = export_field(SphereField(), _SMALL, face_budget=400, texture_size=32)
    second = export_field(SphereField(), _SMALL, face_budget=400, texture_size=32)
    for name in ("vertices", "faces", "uvs", "texture"):
        assert np.array_equal(getattr(first, name), getattr(second, name)), name


class _ModuleField(torch.nn.Module):
    """The protocol implemented by an nn.Module with a parameter (as the real field is)."""

    def __init__(self) -> None:
        super().__init__()
        self.bound = 1.0
        self.radius = torch.nn.Parameter(torch.tensor(0.4))

    def density(self, points: torch.Tensor) -> torch.Tensor:
        return 30.0 * torch.sigmoid((self.radius - points.norm(dim=-1)) / 0.01)

    def albedo(self, points: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(points * 0.0 + self.radius)


def test_module_fields_satisfy_the_protocol_and_need_no_grad():
    field = _ModuleField()
    assert isinstance(field, ExportableField)
    assert isinstance(SphereField(), ExportableField)
    assert field_device(field) == torch.device("cpu")
    # At half the peak density the surface is the sphere |x| = 0.4, whatever the level rules.
    config = ExportConfig(marching=MarchingConfig(32, 32, threshold=15.0))
    mesh = export_field(field, config, face_budget=300, texture_size=32)
    assert np.linalg.norm(mesh.vertices, axis=1).mean() == pytest.approx(0.4, rel=0.03)
    assert field.radius.grad is None


def test_empty_field_raises_mesh_error():
    field = SphereField(peak=0.0)
    with pytest.raises(MeshError, match="empty") as caught:
        export_field(field, _SMALL)
    assert caught.value.field == "density"
