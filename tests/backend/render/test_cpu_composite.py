"""The CPU shading and compositing kernel against the renderer's PyTorch terms."""

from __future__ import annotations

import pytest
import torch

from backend import cpu_build
from backend.render.compositing import compositing_weights
from backend.render.cpu_composite import composite, library, supports
from backend.render.shading import ShadingConfig, ShadingMode, shade

SHADING = ShadingConfig(ambient=0.25, diffuse=0.6)


def torch_composite(density, albedo, normal, depths, deltas, points, dirs, light, modes):
    """The renderer's PyTorch terms (`renderer._trace` without the kernel)."""
    weights = compositing_weights(density, deltas)
    colour = shade(albedo, normal, points, light, modes, SHADING)
    facing = (normal * dirs[:, None]).sum(-1).clamp(min=0.0)
    return (
        (weights[..., None] * colour).sum(dim=1),
        weights.sum(dim=-1),
        (weights * depths).sum(dim=-1),
        (weights[..., None] * normal).sum(dim=1),
        (weights.detach() * facing.pow(2)).sum(dim=-1),
    )


def ray_samples(rays: int, samples: int, dtype: torch.dtype, seed: int = 0):
    """Differentiable (density, albedo, normal) and the rays' fixed inputs, every shading mode
    among the rays, dense and empty stretches along them."""
    generator = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return torch.rand(*shape, dtype=dtype, generator=generator)

    depths = (rand(rays, samples) * 0.1 + torch.arange(samples, dtype=dtype) * 0.1).cumsum(-1)
    deltas = torch.cat([depths[:, 1:] - depths[:, :-1], rand(rays, 1) * 0.1], dim=-1)
    density = (rand(rays, samples) * 20.0 * (rand(rays, samples) > 0.5)).requires_grad_(True)
    albedo = rand(rays, samples, 3).requires_grad_(True)
    normal = torch.nn.functional.normalize(rand(rays, samples, 3) - 0.5, dim=-1)
    normal.requires_grad_(True)
    points = rand(rays, samples, 3) * 2.0 - 1.0
    dirs = torch.nn.functional.normalize(rand(rays, 3) - 0.5, dim=-1)
    light = rand(rays, 3) * 4.0 - 2.0
    modes = torch.arange(rays) % 3  # lit, albedo, textureless
    return (density, albedo, normal), (depths, deltas, points, dirs, light, modes)


@pytest.mark.parametrize(
    ("dtype", "count"), [(torch.float64, 40), (torch.float32, 40), (torch.float64, 3000)]
)
def test_outputs_and_gradients_equal_the_pytorch_terms(dtype, count):
    # 3000 samples a ray: the backward's per-ray scratch is allocated for any count.
    assert library() is not None  # the kernel is what is compared
    samples, rays = ray_samples(48 if count < 1000 else 4, count, dtype)
    fast = composite(*samples, *rays, SHADING)
    reference = torch_composite(*samples, *rays)
    tolerance = (
        {"atol": 1e-12, "rtol": 1e-10} if dtype == torch.float64 else {"atol": 2e-6, "rtol": 1e-5}
    )
    upstream = [torch.randn_like(x) for x in reference]

    def gradients(outputs):
        loss = sum((x * u).sum() for x, u in zip(outputs, upstream, strict=True))
        return torch.autograd.grad(loss, samples)

    fast_grads, reference_grads = gradients(fast), gradients(reference)
    for a, b in zip((*fast, *fast_grads), (*reference, *reference_grads), strict=True):
        torch.testing.assert_close(a, b, **tolerance)


def test_every_mode_and_output_is_exercised():
    samples, rays = ray_samples(6, 5, torch.float64)
    assert set(rays[-1].tolist()) == {int(m) for m in ShadingMode}
    for index in range(5):  # each output's gradient reaches the samples on its own
        output = composite(*samples, *rays, SHADING)[index]
        grads = torch.autograd.grad(output.sum(), samples)
        assert any(g is not None and g.abs().sum() > 0 for g in grads)


def test_gradcheck():
    (density, albedo, normal), rays = ray_samples(6, 5, torch.float64, seed=1)
    assert torch.autograd.gradcheck(
        lambda *x: composite(*x, *rays, SHADING)[:4], (density, albedo, normal)
    )
    # The orientation holds its weights constant (sg), so only its normals' gradient is a
    # derivative of its value.
    assert torch.autograd.gradcheck(
        lambda n: composite(density.detach(), albedo, n, *rays, SHADING)[4], (normal,)
    )


def test_a_zero_normal_passes_the_lighting_gradient_as_torch_clamp_does():
    # Where the density is flat the field's normal is the zero vector and n . l = 0; clamp's
    # gradient passes there, and so does the kernel's, so both paths stay equal.
    samples, rays = ray_samples(6, 5, torch.float64, seed=2)
    normal = samples[2].detach().clone()
    normal[:, 2] = 0.0
    samples = (samples[0], samples[1], normal.requires_grad_(True))
    fast = composite(*samples, *rays, SHADING)[0].sum()
    reference = torch_composite(*samples, *rays)[0].sum()
    fast_grad, reference_grad = (torch.autograd.grad(x, samples[2])[0] for x in (fast, reference))
    assert reference_grad[:, 2].abs().sum() > 0
    torch.testing.assert_close(fast_grad, reference_grad, atol=1e-12, rtol=1e-10)


def test_samples_it_cannot_take_are_refused_with_the_shape():
    assert supports(torch.zeros(4, 8))
    assert not supports(torch.zeros(4, 8, dtype=torch.float16))
    assert not supports(torch.zeros(4 * 8))
    with cpu_build.reference_path():
        assert not supports(torch.zeros(4, 8))
    samples, rays = ray_samples(2, 3, torch.float32)
    with pytest.raises(ValueError, match=r"\(2, 3\) torch.float16"):
        composite(samples[0].half(), *samples[1:], *rays, SHADING)


def test_every_thread_count_gives_the_same_outputs_and_gradients():
    samples, rays = ray_samples(101, 16, torch.float32)  # rays not a multiple of threads
    threads = torch.get_num_threads()
    try:
        results = []
        for count in (1, 2, 3, 8):
            torch.set_num_threads(count)
            outputs = composite(*samples, *rays, SHADING)
            gradients = torch.autograd.grad(sum(x.sum() for x in outputs), samples)
            results.append((*outputs, *gradients))
    finally:
        torch.set_num_threads(threads)
    for other in results[1:]:
        assert all(torch.equal(a, b) for a, b in zip(results[0], other, strict=True))


def test_mismatched_shapes_and_dtypes_are_refused_with_them():
    (density, albedo, normal), rays = ray_samples(4, 5, torch.float32)
    with pytest.raises(ValueError, match=r"points must be \(4, 5, 3\).*\(4, 4, 3\)"):
        composite(density, albedo, normal, *rays[:2], rays[2][:, :4], *rays[3:], SHADING)
    with pytest.raises(ValueError, match=r"albedo and normal must be torch\.float32"):
        composite(density, albedo.double(), normal, *rays, SHADING)
