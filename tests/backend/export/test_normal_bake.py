"""The normal map baked from a refined surface onto its decimated export: present only when the
export decimated, a valid glTF (the Khronos validator, where node and npm are), and it holds the
detail the decimation removed."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import replace

import numpy as np
import pytest
import torch
import trimesh

from backend.export.glb import write_glb
from backend.export.normal_bake import FLAT, vertex_tangents, welded_normals
from backend.field.surface_mesh import SurfaceMesh
from backend.guidance.prior import ModelFamily
from backend.pipelines.presets import preset_config
from backend.pipelines.refine import export_surface

VALIDATOR = "/work/shared/tools/validate-glb"


def _bumpy_sphere() -> SurfaceMesh:
    sphere = trimesh.creation.icosphere(subdivisions=4, radius=0.5)
    rng = np.random.default_rng(0)
    vertices = sphere.vertices * (1.0 + 0.02 * rng.standard_normal((len(sphere.vertices), 1)))
    albedo = torch.zeros(1, 3, 4, 4, 4)
    return SurfaceMesh(
        torch.from_numpy(vertices).float(), torch.from_numpy(sphere.faces), albedo, 1.0
    )


def _config(face_budget: int):
    config = preset_config("standard", "sds", ModelFamily.BUILTIN)
    return replace(config, face_budget=face_budget, texture_size=128)


def test_normal_map_only_when_the_export_decimates():
    surface = _bumpy_sphere()  # 5,120 faces
    kept = export_surface(surface, _config(6000))
    assert kept.normal_texture is None and len(kept.faces) == 5120
    decimated = export_surface(surface, _config(1000))
    assert decimated.normal_texture is not None and decimated.normals is not None
    texture = decimated.normal_texture.reshape(-1, 3) / 255.0
    # Mostly facing out (blue), but not flat: the bumps the decimation removed are in it.
    assert texture[:, 2].mean() > 0.9
    assert np.abs(texture - FLAT).max(axis=1).mean() > 0.02


def test_tangents_are_unit_orthogonal_and_handed():
    mesh = trimesh.creation.icosphere(subdivisions=2)
    uv = np.stack([np.arctan2(mesh.vertices[:, 1], mesh.vertices[:, 0]), mesh.vertices[:, 2]], -1)
    normals = welded_normals(mesh.vertices, mesh.faces)
    tangents = vertex_tangents(mesh.vertices, mesh.faces, uv, normals)
    np.testing.assert_allclose(np.linalg.norm(tangents[:, :3], axis=-1), 1.0, atol=1e-6)
    assert np.abs((tangents[:, :3] * normals).sum(-1)).max() < 1e-6
    assert set(np.unique(tangents[:, 3])) <= {-1.0, 1.0}


@pytest.mark.skipif(shutil.which(VALIDATOR) is None, reason="the glTF validator is not here")
def test_glb_with_a_normal_map_passes_the_khronos_validator(tmp_path):
    mesh = export_surface(_bumpy_sphere(), _config(1000))
    path = tmp_path / "refined.glb"
    path.write_bytes(write_glb([mesh]))
    done = subprocess.run([VALIDATOR, str(path)], capture_output=True, text=True, check=False)
    if done.returncode == 3:
        pytest.skip("the glTF validator could not be installed (npm)")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    # One warning stays: viewers generate the tangent space (MikkTSpace), as the bake assumes.
    assert done.returncode == 0 and report["errors"] == 0, report
    assert '"normalTexture"' in path.read_bytes()[:20000].decode("latin-1")
