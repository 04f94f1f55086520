"""Shape-mode editing (Magic3D's prompt-based editing: fine-tune the finished model under the
new prompt): the mesh becomes a grid field, the field is optimised by the shared distillation
loop, and the result is exported like generate's. With stage 2 in the preset, the artist's
own mesh is then moved onto the edited surface and refined (`shape_refine`), so the result
keeps its vertex count and UV layout where the mesh allows it.

All parts of the input mesh go into one field in the unit frame (world-aligned, see
`edit_source`); the exported mesh is mapped back into the input mesh's local frame, so the
result keeps the input's world transform. With a region box, voxels outside it are restored to
their initial values after every step (`FrozenVoxels`): the field, and so the surface, outside
the region stays the input's. The export's iso-level is the initial surface's density.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import replace

import numpy as np

from backend.export.errors import MeshError
from backend.export.export_field import export_field
from backend.export.glb import write_glb
from backend.field.mesh_to_field import MeshFieldConfig, mesh_to_field, surface_density
from backend.pipelines.distill_loop import DistillRun, distill
from backend.pipelines.edit_region import FrozenVoxels
from backend.pipelines.edit_source import EditSource, bad_mesh, surface_colour, transform_points
from backend.pipelines.generate import EXPORT_ETA_S
from backend.pipelines.mesh_edit import MeshEdit
from backend.pipelines.prompt_guidance import prompt_view_sampler
from backend.pipelines.shape_refine import refine_artist_mesh, why_not_refinable
from protocol.errors import ErrorCode, ProtocolError
from protocol.fields import join
from protocol.messages import JobWarning, Preview, Progress

MESH_FIELD = MeshFieldConfig()
"""How shape mode turns a mesh into a field (the defaults)."""

MIN_DETERMINANT = 1e-12
"""A world transform with |det| below this cannot be inverted to bring the new shape back."""


def merged_unit_mesh(source: EditSource) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All parts in the unit frame as one mesh: vertices [V, 3], faces [F, 3], and the part of
    each face [F]."""
    vertices, faces, owners = [], [], []
    offset = 0
    for index, part in enumerate(source.parts):
        vertices.append(source.part_to_unit(index, part.vertices))
        faces.append(part.faces + offset)
        owners.append(np.full(len(part.faces), index))
        offset += len(part.vertices)
    return np.concatenate(vertices), np.concatenate(faces), np.concatenate(owners)


def merged_colour(source: EditSource, owners: np.ndarray) -> Callable:
    """Surface colour of the merged mesh: (merged face ids [N], barycentric [N, 3]) -> [N, 3]."""
    starts = np.cumsum([0] + [len(part.faces) for part in source.parts])

    def colour(face_ids: np.ndarray, barycentric: np.ndarray) -> np.ndarray:
        out = np.zeros((len(face_ids), 3), dtype=np.float32)
        for index, part in enumerate(source.parts):
            chosen = owners[face_ids] == index
            out[chosen] = surface_colour(
                part, face_ids[chosen] - starts[index], barycentric[chosen]
            )
        return out

    return colour


def edit_shape(
    job: MeshEdit, mesh_config: MeshFieldConfig = MESH_FIELD
) -> Generator[Progress | Preview | JobWarning, None, bytes]:
    """Reshape one input mesh; yields loop events and returns the result GLB (one mesh named
    after the input, in the input's local frame, identity node transform)."""
    source, region, prior, config = job.source, job.region, job.prior, job.config
    if abs(np.linalg.det(source.world)) < MIN_DETERMINANT:
        field_name = join(join("meshes", source.index), "transform")
        raise ProtocolError(
            ErrorCode.BAD_VALUE,
            field_name,
            f"{field_name}: a shape edit needs an invertible world transform",
        )
    vertices, faces, owners = merged_unit_mesh(source)
    field = mesh_to_field(
        vertices, faces, merged_colour(source, owners), config.grid, mesh_config, job.seed
    ).to(prior.device)

    after_step = None
    if region is not None:
        after_step = FrozenVoxels(field, source.frame, region)
        if not after_step.any_editable:
            yield JobWarning(message=f"{source.name}: the region lies outside its field; unchanged")
            return source.unchanged_glb()

    sample_views = prompt_view_sampler(prior, job.embeddings, config)

    yield from distill(
        DistillRun(
            field,
            prior,
            job.method,
            config,
            sample_views,
            job.generator,
            job.should_cancel,
            stage=f"shape {source.name}",
            after_step=after_step,
            eta_tail_s=EXPORT_ETA_S,
        )
    )
    # The initial surface's level, not export's automatic one: a density that grows inside
    # the region must not move the surface outside it.
    level = surface_density(mesh_config)
    reason = None if config.refine is None else why_not_refinable(job)
    if config.refine is not None and reason is None:
        mesh = yield from refine_artist_mesh(
            job, field, level, f"refine {source.name}", job.should_cancel
        )
        to_local = np.linalg.inv(source.world)
        local = transform_points(to_local, source.frame.to_world(mesh.vertices))
        return write_glb([replace(mesh, vertices=local)])
    if reason is not None:
        yield JobWarning(
            message=f"{source.name}: stage 2 keeps an artist's vertices and UVs, but not on "
            f"this mesh: {reason}; the shape is exported from the edited field"
        )
    marching = replace(config.export.marching, threshold=level)
    export_config = replace(config.export, marching=marching)
    stage = f"export {source.name}"
    yield Progress(stage=stage, step=0, total=1, loss=None, eta_s=EXPORT_ETA_S)
    try:
        mesh = export_field(
            field, export_config, config.face_budget, config.texture_size, name=source.name
        )
    except MeshError as error:
        raise bad_mesh(source.field, f"the edited shape has no surface left ({error})") from error
    to_local = np.linalg.inv(source.world)
    local = transform_points(to_local, source.frame.to_world(mesh.vertices))
    glb = write_glb([replace(mesh, vertices=local)])
    yield Progress(stage=stage, step=1, total=1, loss=None, eta_s=0.0)
    return glb
