"""Edit selected meshes by prompt: texture mode repaints (geometry untouched), shape mode
re-optimises a field made from the mesh and re-exports it. An optional world-space region box
confines the change.

Each input mesh is edited on its own (its own optimisation under the same prompt, seed + its
index), all parts of one input GLB together; the result has one mesh per input, with the same
name and the input's world transform.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch

from backend.export.errors import MeshError
from backend.guidance.prior import DiffusionPrior
from backend.pipelines.edit_region import RegionBox
from backend.pipelines.edit_source import bad_mesh, read_sources
from backend.pipelines.mesh_edit import MeshEdit
from backend.pipelines.methods import distillation_method
from backend.pipelines.presets import DistillConfig, edit_config
from backend.pipelines.prompt_guidance import PromptEmbeddings
from backend.pipelines.shape_edit import edit_shape
from backend.pipelines.texture_edit import edit_texture
from protocol.errors import ErrorCode, ProtocolError
from protocol.messages import (
    EDIT_MODES,
    EditRequest,
    JobWarning,
    Preview,
    Progress,
    Result,
    ResultMesh,
)


def edit(
    request: EditRequest,
    prior: DiffusionPrior,
    config: DistillConfig,
    should_cancel: Callable[[], bool],
) -> Iterator[Progress | Preview | JobWarning | Result]:
    """The edit pipeline: per mesh, loop events (stage "texture <name>" or "shape <name>",
    then "export <name>"), then one Result.

    Raises ProtocolError: BAD_MESH ("meshes[i].glb") for unusable meshes, BAD_VALUE for an
    unknown mode or (shape mode) a singular world transform.
    """
    if request.mode not in EDIT_MODES:
        raise ProtocolError(
            ErrorCode.BAD_VALUE,
            "mode",
            f"mode: {request.mode!r} is not one of {', '.join(EDIT_MODES)}",
        )
    sources = read_sources(request)
    region = RegionBox.from_request(request.region)
    config = edit_config(config)
    torch.manual_seed(request.seed)
    embeddings = PromptEmbeddings.encode(prior, request.prompt, request.negative_prompt)
    meshes = []
    for source in sources:
        generator = torch.Generator().manual_seed(request.seed + source.index)
        # One method per mesh, closed before the next (a VSD LoRA must leave the shared prior).
        with distillation_method(request.method, prior, config, request.prompt) as method:
            job = MeshEdit(
                source,
                region,
                prior,
                method,
                embeddings,
                config,
                generator,
                should_cancel,
                seed=request.seed,
            )
            try:
                if request.mode == "texture":
                    glb = yield from edit_texture(job)
                else:
                    glb = yield from edit_shape(job)
            except MeshError as error:
                raise bad_mesh(source.field, str(error)) from error
        transform = request.meshes[source.index].transform
        meshes.append(ResultMesh(name=source.name, glb=glb, transform=transform))
    yield Result(meshes=meshes)
