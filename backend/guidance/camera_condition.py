"""The camera condition of a view-aware prior (MVDream, Shi et al. 2023; Zero-1-to-3).

A text prompt does not say from where an object is seen. A prior that is not told the camera
predicts, at high noise, the average over every pose the caption allows (a cube at every yaw
is a rounded block; a torus at every elevation hides its hole), and score distillation then
pulls every view toward that average. A camera-conditioned prior is trained on objects in a
canonical pose together with the camera that saw them, so its prediction for a view is the
object as that camera sees it.

The condition c is the unit vector from the look-at point toward the camera, in the frame of
the object (world axes for a single object, the box's axes for a composed scene's object):

    c = R_c2w e_z    (the camera's +Z axis: it looks down -Z)

c = 0 means "camera unknown": the prior is trained with a share of zeroed conditions, so
callers without a camera (a sample grid, a prompt-only check) still get sensible predictions.
A U-Net takes c as a diffusers class label (`class_embed_type="projection"`), whose embedding
is added to the timestep embedding.
"""

from __future__ import annotations

import torch

CAMERA_CONDITION_DIM = 3
"""Length of c (the `projection_class_embeddings_input_dim` of a camera-conditioned U-Net)."""


def camera_condition(c2w: torch.Tensor) -> torch.Tensor:
    """[B, 4, 4] camera-to-world (OpenGL axes) -> [B, 3] c, the unit direction from the
    look-at point toward the camera. An all-zero matrix gives c = 0 (unknown camera)."""
    return c2w[:, :3, 2].float()


def accepts_camera(unet: torch.nn.Module) -> bool:
    """True when the U-Net takes the camera condition as its class label."""
    config = getattr(unet, "config", None)
    return (
        getattr(config, "class_embed_type", None) == "projection"
        and getattr(config, "projection_class_embeddings_input_dim", None) == CAMERA_CONDITION_DIM
    )


def condition_in_frame(c: torch.Tensor, rotation: torch.Tensor) -> torch.Tensor:
    """[B, 3] conditions in world axes -> the same directions in a frame turned by `rotation`
    [3, 3] (frame axes -> world axes, e.g. a prompt box's R_yaw): c_frame = R^T c."""
    return c @ rotation.to(c)
