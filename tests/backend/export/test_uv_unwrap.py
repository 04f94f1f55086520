import numpy as np
import trimesh

from backend.export.uv_unwrap import unwrap_uv


def test_unwrap_keeps_faces_in_order_and_uvs_in_the_unit_square():
    sphere = trimesh.creation.icosphere(subdivisions=2)
    unwrap = unwrap_uv(sphere.vertices, sphere.faces, texture_size=256, padding=2)
    assert unwrap.faces.shape == sphere.faces.shape
    # Face i of the output is face i of the input (same corners, same order).
    corners = sphere.vertices[unwrap.vertex_map][unwrap.faces]
    assert np.array_equal(corners, sphere.vertices[sphere.faces])
    assert unwrap.uvs.shape == (len(unwrap.vertex_map), 2)
    assert unwrap.uvs.min() >= 0.0 and unwrap.uvs.max() <= 1.0
    # Charts do not overlap: total UV area below 1 and no triangle folded (zero area).
    uv_tri = unwrap.uvs[unwrap.faces]
    edge1, edge2 = uv_tri[:, 1] - uv_tri[:, 0], uv_tri[:, 2] - uv_tri[:, 0]
    area = 0.5 * np.abs(edge1[:, 0] * edge2[:, 1] - edge1[:, 1] * edge2[:, 0])
    assert 0.3 < area.sum() < 1.0


def test_unwrap_is_deterministic():
    sphere = trimesh.creation.icosphere(subdivisions=2)
    first = unwrap_uv(sphere.vertices, sphere.faces)
    second = unwrap_uv(sphere.vertices, sphere.faces)
    assert np.array_equal(first.uvs, second.uvs)
    assert np.array_equal(first.faces, second.faces)
