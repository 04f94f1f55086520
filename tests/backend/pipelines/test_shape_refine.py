"""A shape edit's stage 2 on the artist's mesh: it keeps the vertex count, faces and UVs; it
says why when a mesh cannot take it; vertices snap onto the edited surface."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import torch
import trimesh

from backend.export.glb import read_glb, write_glb
from backend.field.grid_field import DenseGridField, GridFieldConfig
from backend.geometry.mesh_topology import vertex_normals
from backend.pipelines.edit import edit
from backend.pipelines.presets import RefineConfig
from backend.pipelines.shape_refine import snap_to_surface, weld
from protocol.messages import JobWarning, Progress, Result
from tests.backend.pipelines.edit_meshes import edit_request, uv_cube
from tests.backend.pipelines.test_edit import FAST

REFINED = replace(
    FAST, refine=RefineConfig(steps=3, views=2, resolution=24, faces=300, preview_every=0)
)


def test_shape_edit_through_the_mesh_stage_keeps_vertices_faces_and_uvs(pixel_prior):
    cube = uv_cube()
    request = edit_request([write_glb([cube])], "a green cube", mode="shape")
    events = list(edit(request, pixel_prior, REFINED, lambda: False))
    assert isinstance(events[-1], Result)
    refine = [e for e in events if isinstance(e, Progress) and e.stage == "refine mesh0"]
    assert [p.step for p in refine] == [1, 2, 3]
    (after,) = read_glb(events[-1].meshes[0].glb)
    assert len(after.vertices) == len(cube.vertices)
    np.testing.assert_array_equal(after.faces, cube.faces)
    np.testing.assert_allclose(after.uvs, cube.uvs, atol=1e-6)
    # Vertices split by UV seams still meet: the welded surface moved as one.
    welded = weld(after.vertices, after.faces)
    assert len(welded.vertices) == 8


def test_an_open_mesh_is_edited_through_the_field_with_a_warning(pixel_prior):
    cube = uv_cube()
    open_box = replace(cube, faces=cube.faces[:-1])
    request = edit_request([write_glb([open_box])], "a green cube", mode="shape")
    events = list(edit(request, pixel_prior, REFINED, lambda: False))
    warnings = [e.message for e in events if isinstance(e, JobWarning)]
    assert any("not closed" in message for message in warnings), warnings
    assert isinstance(events[-1], Result)


def test_vertices_snap_onto_the_edited_surface():
    resolution = 48
    field = DenseGridField(GridFieldConfig(resolution=resolution, blob_density=0.0))
    axis = torch.linspace(-1.0, 1.0, resolution)
    z, y, x = torch.meshgrid(axis, axis, axis, indexing="ij")
    sdf = torch.stack([x, y, z], -1).norm(dim=-1) - 0.5
    with torch.no_grad():
        field.density_grid.copy_(-4.0 * sdf[None, None] * (resolution - 1) / 2.0)
    sphere = trimesh.creation.icosphere(subdivisions=2, radius=0.4)
    vertices = torch.from_numpy(sphere.vertices).float()
    normals = vertex_normals(vertices, torch.from_numpy(sphere.faces))
    snapped = snap_to_surface(vertices, normals, field, math.log(2.0))
    assert float((snapped.norm(dim=-1) - 0.5).abs().max()) < 0.01
