"""The camera condition of a view-aware prior (MVDream, Shi et al. 2023; Zero-1-to-3).

A text prompt does not say from where an object is seen. A prior that is not told the camera
predicts, at high noise, the average over every pose the caption allows (a cube at every yaw
is a rounded block; a torus at every elevation hides its hole), and score distillation then
pulls every view toward that average. A camera-conditioned prior is trained on objects in a
canonical pose together with the camera that saw them, so its prediction for a view is the
object as that camera sees it.

The condition c describes the camera's elevation and azimuth in the frame of the object
(world axes for a single object, the box's axes for a composed scene's object) as Fourier
features (NeRF's positional encoding, applied to the two angles):

    c = [sin el, cos el, cos(k az), sin(k az) for k = 1..K]     (K = AZIMUTH_HARMONICS)

with el = asin(b_z) from the camera's back axis b (it looks down its -Z, so b points from the
object toward the camera) and az = atan2(r_y, r_x) from its right axis r, which for an orbit
camera is (cos az, sin az, 0) at every elevation.

Why harmonics: a cube looks the same every quarter turn, so what its silhouette and its top's
turn in the image depend on is cos(4 az), sin(4 az). A U-Net told only a direction (3 numbers,
or the camera's 9 axes) must build that fourth harmonic itself through its small class
embedding; measured, it did not (its denoising loss on held-out renders was the same with the
true camera and with the camera of another image at the same elevation), predicted every
azimuth's average, and score distillation grew a drum instead of a cube. With the harmonics
given, the azimuth enters linearly. Harmonics alone were not enough: the azimuth is learnt
only once the training images frame every object alike (`backend.render.cameras.
TRAINING_CAMERAS`; docs/research/camera-conditioned-prior.md has the numbers).

c = 0 means "camera unknown" (every real camera has sin^2 + cos^2 = 1 in each pair): the prior
is trained with a share of zeroed conditions, so callers without a camera (a sample grid, a
prompt-only check) still get sensible predictions. A U-Net takes c as a diffusers class label
(`class_embed_type="projection"`), whose embedding is added to the timestep embedding.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

AZIMUTH_HARMONICS = 4
"""K: azimuth frequencies 1..K (4: a cube's quarter-turn symmetry is the finest the built-in
shapes have)."""

CAMERA_CONDITION_DIM = 2 + 2 * AZIMUTH_HARMONICS
"""Length of c (the `projection_class_embeddings_input_dim` of a camera-conditioned U-Net)."""


def camera_condition(c2w: torch.Tensor, frame: torch.Tensor | None = None) -> torch.Tensor:
    """[B, 4, 4] camera-to-world (OpenGL axes) -> [B, CAMERA_CONDITION_DIM] c, the camera's
    elevation and azimuth as Fourier features. `frame` [3, 3] (frame axes -> world axes, e.g. a
    prompt box's R_yaw): the angles are measured in that frame (axes a -> R^T a). An all-zero
    matrix gives c = 0 (unknown camera)."""
    rotation = c2w[:, :3, :3].double()  # columns: right r, up u, back b (world components)
    if frame is not None:
        rotation = frame.to(rotation).T @ rotation
    right, back = rotation[:, :, 0], rotation[:, :, 2]
    known = (back.norm(dim=-1, keepdim=True) > 0).to(rotation)
    elevation = torch.asin(back[:, 2].clamp(-1, 1))
    azimuth = torch.atan2(right[:, 1], right[:, 0])
    k = torch.arange(1, AZIMUTH_HARMONICS + 1, dtype=rotation.dtype)
    features = [
        torch.stack([elevation.sin(), elevation.cos()], -1),
        torch.cos(azimuth[:, None] * k),
        torch.sin(azimuth[:, None] * k),
    ]
    return (torch.cat(features, -1) * known).float()


def config_accepts_camera(config: Mapping[str, Any]) -> bool:
    """True when a U-Net config (its config.json as a mapping) takes the camera condition as
    its class label."""
    return (
        config.get("class_embed_type") == "projection"
        and config.get("projection_class_embeddings_input_dim") == CAMERA_CONDITION_DIM
    )


def accepts_camera(unet: torch.nn.Module) -> bool:
    """True when the U-Net takes the camera condition as its class label."""
    config = getattr(unet, "config", None)
    return isinstance(config, Mapping) and config_accepts_camera(config)
