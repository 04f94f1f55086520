import numpy as np
import trimesh
from export_shapes import box_mesh

from backend.export.cleanup import CleanupConfig, clean_mesh


def _sphere(radius: float, centre=(0.0, 0.0, 0.0)):
    mesh = trimesh.creation.icosphere(subdivisions=3, radius=radius)
    return mesh.vertices + np.array(centre), mesh.faces


def test_small_floater_is_removed_and_the_object_kept():
    body_v, body_f = _sphere(0.5)
    floater_v, floater_f = box_mesh((0.9, 0.9, 0.9), 0.05)
    vertices = np.concatenate([body_v, floater_v])
    faces = np.concatenate([body_f, floater_f + len(body_v)])
    clean_v, clean_f = clean_mesh(vertices, faces)
    assert len(clean_f) == len(body_f)
    assert np.linalg.norm(clean_v, axis=1).max() < 0.51


def test_components_above_the_fraction_are_kept():
    a_v, a_f = _sphere(0.5)
    b_v, b_f = _sphere(0.3, centre=(2.0, 0.0, 0.0))  # area ratio 0.36
    vertices = np.concatenate([a_v, b_v])
    faces = np.concatenate([a_f, b_f + len(a_v)])
    _, kept = clean_mesh(vertices, faces, CleanupConfig(min_component_fraction=0.3))
    assert len(kept) == len(a_f) + len(b_f)
    _, kept = clean_mesh(vertices, faces, CleanupConfig(min_component_fraction=0.5))
    assert len(kept) == len(a_f)


def test_duplicate_vertices_are_merged_and_inverted_winding_fixed():
    vertices, faces = box_mesh((0.0, 0.0, 0.0), 1.0)
    # Every face gets its own three vertices (a triangle soup) and is wound inward.
    soup_v = vertices[faces].reshape(-1, 3)
    soup_f = np.arange(len(soup_v)).reshape(-1, 3)[:, ::-1]
    clean_v, clean_f = clean_mesh(soup_v, soup_f)
    assert len(clean_v) == 8
    mesh = trimesh.Trimesh(clean_v, clean_f, process=False)
    assert mesh.is_watertight
    assert mesh.volume > 0


def test_degenerate_and_duplicate_faces_are_dropped():
    vertices, faces = box_mesh((0.0, 0.0, 0.0), 1.0)
    faces = np.concatenate([faces, faces[:1], [[0, 0, 1]]])
    _, clean_f = clean_mesh(vertices, faces)
    assert len(clean_f) == 12
