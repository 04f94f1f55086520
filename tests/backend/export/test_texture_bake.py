import numpy as np
import pytest
import torch

from backend.export.texture_bake import bake_texture, fill_gutters, texel_samples

# The unit square in the z = 0 plane, UVs equal to (x, y): face 0 below the diagonal (u > v).
SQUARE_V = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, 1.0, 0.0]])
SQUARE_F = np.array([[0, 1, 2], [0, 2, 3]])
SQUARE_UV = SQUARE_V[:, :2].copy()


def test_every_texel_of_a_full_layout_is_sampled_once_at_its_surface_point():
    samples = texel_samples(SQUARE_V, SQUARE_F, SQUARE_UV, (8, 16))
    assert len(samples.rows) == 8 * 16
    assert len(set(zip(samples.rows.tolist(), samples.cols.tolist(), strict=True))) == 8 * 16
    # Texel (i, j) shows u = (j + 0.5) / W, v = 1 - (i + 0.5) / H, here the point (u, v, 0).
    expected_x = (samples.cols + 0.5) / 16
    expected_y = 1.0 - (samples.rows + 0.5) / 8
    assert np.allclose(samples.points[:, 0], expected_x)
    assert np.allclose(samples.points[:, 1], expected_y)
    assert np.allclose(samples.barycentric.sum(axis=1), 1.0)
    below_diagonal = expected_x > expected_y
    assert np.array_equal(samples.face_ids, np.where(below_diagonal, 0, 1))


def test_bake_puts_the_colour_of_each_surface_point_in_its_texel():
    baked = bake_texture(SQUARE_V, SQUARE_F, SQUARE_UV, lambda p: p, size=32, padding=2)
    assert baked.image.shape == (32, 32, 3) and baked.image.dtype == np.float32
    assert baked.mask.all()
    rows, cols = np.mgrid[0:32, 0:32]
    assert np.allclose(baked.image[..., 0], (cols + 0.5) / 32, atol=1e-6)
    assert np.allclose(baked.image[..., 1], 1.0 - (rows + 0.5) / 32, atol=1e-6)
    assert np.allclose(baked.image[..., 2], 0.0)


def test_uncovered_texels_are_dilated_then_filled_with_the_mean():
    # Only face 0 (u > v): the upper-left half of the image is empty before filling.
    colour = torch.tensor([0.2, 0.4, 0.6])
    baked = bake_texture(
        SQUARE_V, SQUARE_F[:1], SQUARE_UV, lambda p: colour.expand(len(p), 3), size=32, padding=3
    )
    covered = baked.mask.mean()
    assert 0.45 < covered < 0.6
    assert np.allclose(baked.image, [0.2, 0.4, 0.6], atol=1e-6)  # gutters and rest filled


def test_fill_gutters_grows_by_the_padding_width():
    image = np.zeros((9, 9, 3), dtype=np.float32)
    mask = np.zeros((9, 9), dtype=bool)
    image[4, 4] = 1.0
    mask[4, 4] = True
    image[0, 0] = 0.5  # an uncovered texel's old value is ignored
    filled = fill_gutters(image, mask, padding=2)
    assert np.allclose(filled[2:7, 2:7], 1.0)  # within two texels: dilated
    assert np.allclose(filled[0, 0], 1.0)  # beyond: the mean covered colour
    assert filled is not image and image[0, 0, 0] == 0.5


def test_zero_area_uv_triangles_share_the_texel_under_their_point():
    # Both faces collapse onto uv (0.5, 0.5), pixel (7.5, 7.5): one texel, to the lower face.
    uvs = np.array([[0.5, 0.5]] * 4)
    samples = texel_samples(SQUARE_V, SQUARE_F, uvs, 16)
    assert samples.face_ids.tolist() == [0]
    assert (samples.rows.tolist(), samples.cols.tolist()) == ([8], [8])
    with pytest.raises(ValueError):
        texel_samples(SQUARE_V, SQUARE_F, SQUARE_UV, 0)


def test_a_sliver_between_texel_centres_bakes_its_own_colour():
    # A red face that fills the left half of the texture, and a blue sliver 0.4 texels tall
    # (between two rows of texel centres) in the right half, 3 texels from the red chart.
    vertices = np.array(
        [[0, 0, 0], [0.4, 0, 0], [0, 1, 0], [2, 0, 0], [3, 0, 0], [2.5, 0.05, 0]], dtype=float
    )
    faces = np.array([[0, 1, 2], [3, 4, 5]])
    v_mid = 1.0 - 8.0 / 16  # the boundary between rows 7 and 8 of a 16-texel image
    uvs = np.array(
        [[0.0, 0.0], [0.45, 0.0], [0.0, 1.0], [0.6, v_mid - 0.0125], [0.95, v_mid - 0.0125],
         [0.8, v_mid + 0.0125]]
    )  # fmt: skip
    baked = bake_texture(
        vertices,
        faces,
        uvs,
        lambda p: torch.where(p[:, :1] < 1.0, torch.tensor([1.0, 0, 0]), torch.tensor([0, 0, 1.0])),
        size=16,
        padding=4,
    )
    centroid = uvs[3:].mean(axis=0)
    row, col = round((1.0 - centroid[1]) * 16 - 0.5), round(centroid[0] * 16 - 0.5)
    assert baked.mask[row, col]
    assert np.allclose(baked.image[row, col], [0.0, 0.0, 1.0])
