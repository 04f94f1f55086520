"""Pinhole cameras, their random sampling for score distillation, and per-pixel rays.

Conventions (used everywhere in BoxDream, the built-in model's data set included):

- World space is Blender's: right-handed, Z up, metres.
- Azimuth 0 puts the camera on the -Y axis looking toward +Y, which is Blender's "front" view
  (numpad 1); azimuth grows counter-clockwise seen from above, in (-180, 180] degrees.
- Elevation is the angle above the XY plane.
- Camera space is OpenGL's: the camera looks down -Z, +Y is up and +X is right in the image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch


@dataclass(frozen=True)
class CameraSamplingConfig:
    """Ranges for the random cameras of one optimisation step (threestudio `uncond` defaults)."""

    distance_range: tuple[float, float] = (1.5, 2.0)
    """Distance from the look-at point to the camera, in scene units."""
    fovy_range_deg: tuple[float, float] = (40.0, 70.0)
    """Vertical field of view, degrees."""
    elevation_range_deg: tuple[float, float] = (-10.0, 80.0)
    """Elevation above the XY plane, degrees. DreamFusion samples up to 90; 80 keeps the image's
    up direction defined, and still shows the top of an object (a cube's square top, a torus's
    hole), which side views alone never tell apart from a cylinder or a disc."""
    uniform_sphere_prob: float = 0.5
    """Share of cameras whose elevation is area-uniform on the sphere band instead of uniform
    in degrees (which over-samples the poles)."""
    centre_jitter: float = 0.05
    """Standard deviation of the look-at point around the target, scene units."""
    up_jitter: float = 0.02
    """Standard deviation of the up vector's perturbation."""
    light_distance_range: tuple[float, float] = (0.8, 1.5)
    """Distance of the point light from the look-at point."""


TRAINING_CAMERAS = CameraSamplingConfig(distance_range=(1.75, 1.75), fovy_range_deg=(55.0, 55.0))
"""The cameras of the training set, and of score distillation with `tiny-shapes` (the CPU
presets): the SDS defaults' elevations, azimuths and jitter, but one distance and one field of
view (the middle of threestudio's ranges). With the distance (1.5-2), the fov (40-70 degrees)
and the object's scale (0.85-1.1) all random, an object's size on screen varied about 3x, which
hid what the azimuth changes; the prior learned to ignore it, and SDS grew a drum for "a cube".
Framed alike, the prior reads the azimuth (tests/backend/builtin_model/test_tiny_shapes.py)."""


@dataclass
class Cameras:
    """A batch of B pinhole cameras.

    Attributes:
        c2w: [B, 4, 4] camera-to-world matrices (OpenGL camera axes).
        fovy: [B] vertical field of view in radians.
        elevation: [B] degrees, azimuth: [B] degrees in (-180, 180], distance: [B].
        light_position: [B, 3] world position of the point light.
    """

    c2w: torch.Tensor
    fovy: torch.Tensor
    elevation: torch.Tensor
    azimuth: torch.Tensor
    distance: torch.Tensor
    light_position: torch.Tensor = field(default_factory=lambda: torch.zeros(0, 3))

    def __len__(self) -> int:
        return self.c2w.shape[0]

    @property
    def position(self) -> torch.Tensor:
        """[B, 3] camera centres in world space."""
        return self.c2w[:, :3, 3]

    def to(self, device: torch.device | str) -> Cameras:
        return Cameras(
            self.c2w.to(device),
            self.fovy.to(device),
            self.elevation.to(device),
            self.azimuth.to(device),
            self.distance.to(device),
            self.light_position.to(device),
        )


def spherical_to_position(
    elevation_deg: torch.Tensor, azimuth_deg: torch.Tensor, distance: torch.Tensor
) -> torch.Tensor:
    """[B] elevation, azimuth (degrees), distance -> [B, 3] offset from the target (Z up,
    azimuth 0 on -Y)."""
    el = torch.deg2rad(elevation_deg)
    az = torch.deg2rad(azimuth_deg)
    return torch.stack(
        [
            distance * torch.cos(el) * torch.sin(az),
            -distance * torch.cos(el) * torch.cos(az),
            distance * torch.sin(el),
        ],
        dim=-1,
    )


def look_at(eye: torch.Tensor, target: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """[B, 3] eye, target, up -> [B, 4, 4] camera-to-world, camera looking down its -Z."""
    forward = torch.nn.functional.normalize(target - eye, dim=-1)
    right = torch.nn.functional.normalize(torch.cross(forward, up, dim=-1), dim=-1)
    true_up = torch.cross(right, forward, dim=-1)
    c2w = torch.zeros(eye.shape[0], 4, 4, dtype=eye.dtype, device=eye.device)
    c2w[:, :3, 0] = right
    c2w[:, :3, 1] = true_up
    c2w[:, :3, 2] = -forward
    c2w[:, :3, 3] = eye
    c2w[:, 3, 3] = 1.0
    return c2w


def orbit_cameras(
    elevation_deg: torch.Tensor,
    azimuth_deg: torch.Tensor,
    distance: torch.Tensor,
    fovy_deg: torch.Tensor,
    target: torch.Tensor | None = None,
) -> Cameras:
    """Cameras on a sphere around `target` ([3] or [B, 3], default origin), light at the camera."""
    b = elevation_deg.shape[0]
    if target is None:
        target = torch.zeros(b, 3)
    target = target.expand(b, 3)
    eye = target + spherical_to_position(elevation_deg, azimuth_deg, distance)
    up = torch.tensor([0.0, 0.0, 1.0]).expand(b, 3)
    return Cameras(
        c2w=look_at(eye, target, up),
        fovy=torch.deg2rad(fovy_deg),
        elevation=elevation_deg,
        azimuth=azimuth_deg,
        distance=distance,
        light_position=eye.clone(),
    )


def _uniform(lo: float, hi: float, n: int, generator: torch.Generator) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=generator)


def sample_cameras(
    batch: int,
    config: CameraSamplingConfig,
    generator: torch.Generator,
    target: torch.Tensor | None = None,
    scale: float = 1.0,
) -> Cameras:
    """Random cameras for one step: azimuth stratified over the batch, elevation, distance and
    fov uniform (see `CameraSamplingConfig`), small jitter of centre and up vector, and a point
    light at normalize(camera + N(0, 1)) * U(light distance range), as in DreamFusion.

    `target` ([3]) and `scale` re-centre and re-scale the orbit, e.g. around one prompt box.
    """
    el_lo, el_hi = config.elevation_range_deg
    uniform_deg = _uniform(el_lo, el_hi, batch, generator)
    sin_lo, sin_hi = math.sin(math.radians(el_lo)), math.sin(math.radians(el_hi))
    area_uniform = torch.rad2deg(torch.asin(_uniform(sin_lo, sin_hi, batch, generator)))
    use_area = torch.rand(batch, generator=generator) < config.uniform_sphere_prob
    elevation = torch.where(use_area, area_uniform, uniform_deg)

    # Stratified azimuth: one random offset, then evenly spaced over the batch.
    offset = torch.rand(1, generator=generator)
    azimuth = (torch.arange(batch) + offset) / batch * 360.0 - 180.0
    azimuth = (azimuth + 180.0) % 360.0 - 180.0
    azimuth = torch.where(azimuth <= -180.0, azimuth + 360.0, azimuth)

    distance = _uniform(*config.distance_range, batch, generator) * scale
    fovy_deg = _uniform(*config.fovy_range_deg, batch, generator)

    centre = torch.zeros(batch, 3) if target is None else target.expand(batch, 3).clone()
    centre = centre + torch.randn(batch, 3, generator=generator) * config.centre_jitter * scale
    eye = centre + spherical_to_position(elevation, azimuth, distance)
    up = torch.tensor([0.0, 0.0, 1.0]) + torch.randn(batch, 3, generator=generator) * (
        config.up_jitter
    )
    light_dir = torch.nn.functional.normalize(
        (eye - centre) / scale + torch.randn(batch, 3, generator=generator), dim=-1
    )
    light_position = (
        centre
        + light_dir * _uniform(*config.light_distance_range, batch, generator)[:, None] * scale
    )
    return Cameras(
        c2w=look_at(eye, centre, up),
        fovy=torch.deg2rad(fovy_deg),
        elevation=elevation,
        azimuth=azimuth,
        distance=distance,
        light_position=light_position,
    )


@dataclass
class Rays:
    """Rays of a batch of images. origins, directions: [B, H, W, 3]; directions unit length."""

    origins: torch.Tensor
    directions: torch.Tensor


def camera_rays(cameras: Cameras, height: int, width: int) -> Rays:
    """One ray through the centre of every pixel of every camera ([B, H, W, 3])."""
    device = cameras.c2w.device
    focal = 0.5 * height / torch.tan(0.5 * cameras.fovy)  # [B], pixels
    j, i = torch.meshgrid(
        torch.arange(height, device=device, dtype=torch.float32) + 0.5,
        torch.arange(width, device=device, dtype=torch.float32) + 0.5,
        indexing="ij",
    )
    # Camera-space directions (OpenGL): x right, y up, looking down -z.
    x = (i[None] - 0.5 * width) / focal[:, None, None]
    y = -(j[None] - 0.5 * height) / focal[:, None, None]
    dirs_cam = torch.stack([x, y, -torch.ones_like(x)], dim=-1)  # [B, H, W, 3]
    rot = cameras.c2w[:, :3, :3]  # [B, 3, 3]
    dirs = torch.einsum("bij,bhwj->bhwi", rot, dirs_cam)
    dirs = torch.nn.functional.normalize(dirs, dim=-1)
    origins = cameras.position[:, None, None, :].expand_as(dirs)
    return Rays(origins=origins, directions=dirs)
