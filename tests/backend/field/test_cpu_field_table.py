"""The CPU field table against the PyTorch terms it replaces (`DenseGridField`'s
concatenation of the density, albedo logits and central differences, channels last)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from backend import cpu_build
from backend.field.cpu_field_table import CHANNELS, field_table, library, supports


def torch_table(density: torch.Tensor, albedo: torch.Tensor, spacing: float) -> torch.Tensor:
    """[1, 1, D, H, W], [1, 3, D, H, W] -> [D, H, W, 7] in PyTorch operations."""
    g = F.pad(density, (1, 1, 1, 1, 1, 1), mode="replicate")
    ddx = (g[..., 1:-1, 1:-1, 2:] - g[..., 1:-1, 1:-1, :-2]) / (2 * spacing)
    ddy = (g[..., 1:-1, 2:, 1:-1] - g[..., 1:-1, :-2, 1:-1]) / (2 * spacing)
    ddz = (g[..., 2:, 1:-1, 1:-1] - g[..., :-2, 1:-1, 1:-1]) / (2 * spacing)
    return torch.cat([density, albedo, ddx, ddy, ddz], dim=1)[0].permute(1, 2, 3, 0)


def grids(shape: tuple[int, int, int], dtype: torch.dtype, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    density = torch.randn(1, 1, *shape, dtype=dtype, generator=generator, requires_grad=True)
    albedo = torch.randn(1, 3, *shape, dtype=dtype, generator=generator, requires_grad=True)
    return density, albedo


@pytest.mark.parametrize("shape", [(16, 16, 16), (5, 9, 6), (2, 2, 2), (2, 7, 3)])
def test_table_and_its_gradients_equal_the_pytorch_terms(shape, two_threads):
    assert library() is not None  # the kernel is what is compared
    density, albedo = grids(shape, torch.float64)
    spacing = 2.0 / (shape[0] - 1)
    upstream = torch.randn(*shape, CHANNELS, dtype=torch.float64)
    fast = field_table(density, albedo, spacing)
    reference = torch_table(density, albedo, spacing)
    assert fast.shape == (*shape, CHANNELS)
    torch.testing.assert_close(fast, reference, atol=1e-12, rtol=1e-12)
    fast_grads = torch.autograd.grad((fast * upstream).sum(), [density, albedo])
    reference_grads = torch.autograd.grad((reference * upstream).sum(), [density, albedo])
    for a, b in zip(fast_grads, reference_grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-12)


def test_gradcheck():
    density, albedo = grids((3, 4, 5), torch.float64)
    assert torch.autograd.gradcheck(lambda s, a: field_table(s, a, 0.4), (density, albedo))


def test_fp32_and_thread_counts_agree():
    density, albedo = grids((64, 64, 64), torch.float32, seed=1)
    reference = torch_table(density, albedo, 2.0 / 63)
    upstream = torch.randn(reference.shape)
    (expected,) = torch.autograd.grad((reference * upstream).sum(), density)
    threads = torch.get_num_threads()
    try:
        for count in (1, 2, 3):
            torch.set_num_threads(count)
            fast = field_table(density, albedo, 2.0 / 63)
            torch.testing.assert_close(fast, reference, atol=1e-5, rtol=1e-6)
            (grad,) = torch.autograd.grad((fast * upstream).sum(), density)
            torch.testing.assert_close(grad, expected, atol=1e-4, rtol=1e-5)
    finally:
        torch.set_num_threads(threads)


def test_grids_it_cannot_take_are_refused_with_the_shapes():
    density, albedo = grids((4, 4, 4), torch.float32)
    assert supports(density, albedo)
    refused = [
        (density.half(), albedo.half()),  # dtype
        (density.double(), albedo),  # mixed dtypes
        (density[..., :1], albedo[..., :1]),  # a side of one voxel
        (density, albedo[:, :2]),  # not 3 albedo channels
        (density[0], albedo[0]),  # no batch axis
    ]
    for s, a in refused:
        assert not supports(s, a)
    with pytest.raises(ValueError, match=r"\(1, 2, 4, 4, 4\)"):
        field_table(density, albedo[:, :2], 0.5)
    with cpu_build.reference_path():
        assert not supports(density, albedo)
