"""Presets: every number of an optimisation run, per quality level, method and model family.

Written in Python (no YAML): `preset_config("preview", "sds", ModelFamily.BUILTIN)` returns the
`DistillConfig` a run uses. The model's family picks the table, on any device: the built-in
model's presets (32x32 renders, the cameras it was trained with) were tuned on it; latent
models (Stable Diffusion) get DreamFusion-style settings (64x64 renders upsampled to 512 for the
VAE, guidance 100); pixel models (DeepFloyd-IF-style) the same at IF's guidance of 20.

| preset   | built-in (views x res) | latent SD / pixel IF (views x res) |
|----------|------------------------|------------------------------------|
| preview  | 300 (4 x 32)           | 1,500 (1 x 64)                     |
| standard | 400 (4 x 32)           | 5,000 (1 x 64)                     |
| high     | 1,000 (4 x 48)         | 10,000 (1 x 128)                   |

Built-in SDS, VSD and SJC render 8 views per step instead of 4 (`CPU_SDS_VIEWS`). Standard and
high add stage 2, the mesh refinement (`RefineConfig`): built-in 100 / 200 steps of 4 views at
64 px, Stable Diffusion and IF 2,000 / 5,000 steps of 1 view at 512 px.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, replace

from backend.export.export_field import ExportConfig
from backend.field.grid_field import GridFieldConfig
from backend.field.surface_mesh import SurfaceMeshConfig
from backend.guidance.dream_fields import TransmittanceTarget
from backend.guidance.guidance_interval import GuidanceInterval
from backend.guidance.prior import ModelFamily
from backend.pipelines.catalogue import METHODS, PRESETS
from backend.render.cameras import TRAINING_CAMERAS, CameraSamplingConfig
from backend.render.renderer import RenderConfig
from backend.render.shading import ShadingConfig
from protocol.errors import FieldError


@dataclass(frozen=True)
class RegulariserConfig:
    """Weights of the geometry regularisers (threestudio names)."""

    sparsity: float = 0.3
    """lambda_sparsity per pixel on the opacity: pushes empty space to stay empty and thins
    the fuzzy shell an undecided field grows."""
    orientation_start: float = 0.1
    """lambda_orient at the start of the run; ramps linearly to `orientation_end`."""
    orientation_end: float = 1.0
    """lambda_orient per pixel at the end of the run (threestudio ramps 10 -> 1000 against
    Stable Diffusion's latent-sum loss)."""
    total_variation: float = 0.5
    """lambda_tv on the squared differences of neighbouring voxels: the albedo logits, and the
    raw density unless `edge_total_variation` is set (grid fields only)."""
    edge_total_variation: float = 0.0
    """lambda of the raw density's Charbonnier variation, in place of its squared one (0: off;
    `backend.field.total_variation`). It smooths ripples as the squared term does but pulls on a
    surface's step with a bounded force, so it keeps a cube's edges where the squared term's
    heat flow rounds them."""
    edge_total_variation_eps: float = 0.1
    """eps of `edge_total_variation`, in raw density units (differences well below it are
    smoothed as by the squared term)."""
    transmittance: float = 0.0
    """lambda_T per pixel on Dream Fields' transmittance loss -min(tau, mean T)
    (`backend.guidance.dream_fields`; 0: off)."""
    transmittance_target: TransmittanceTarget = dataclasses.field(
        default_factory=TransmittanceTarget
    )
    """tau of the transmittance loss and its anneal."""

    def __post_init__(self) -> None:
        if not self.edge_total_variation_eps > 0.0:
            raise ValueError(
                f"edge_total_variation_eps must be > 0, got {self.edge_total_variation_eps}"
            )


@dataclass(frozen=True)
class RefineConfig:
    """Stage 2, Magic3D's coarse-to-fine step: the coarse field's surface becomes a mesh
    (`backend.field.surface_mesh`) that keeps distilling under the same method through the
    differentiable rasteriser, at a higher resolution (`backend.pipelines.refine`)."""

    steps: int = 150
    """Optimisation steps of the mesh."""
    views: int = 4
    """Views rendered per step."""
    resolution: int = 64
    """Render side in pixels (resized to the prior's input size: 64 -> 32 averages 2 x 2
    pixels for tiny-shapes; 512 is the VAE's input for Stable Diffusion, as Magic3D)."""
    lr: float = 0.05
    """Adam learning rate of the offsets and the albedo logits at the first step."""
    lr_end: float | None = None
    """Learning rate at the last step (exponential decay from `lr`; None: constant)."""
    faces: int = 4000
    """Faces of the starting mesh: the coarse field's marching-cubes surface, cleaned and
    decimated to this many (before `subdivisions`)."""
    subdivisions: int = 0
    """Midpoint subdivisions of the decimated mesh (each makes 4 faces of one): decimation
    leaves few, even triangles for the regularisers to work on, subdivision the density that
    small angles between neighbours need (an analytic torus decimated to 10k faces measures a
    3.8 deg median, at 20k 2.8)."""
    mesh: SurfaceMeshConfig = dataclasses.field(default_factory=SurfaceMeshConfig)
    """How vertices move (the offset scale)."""
    laplacian: float = 1.0
    """lambda of the uniform Laplacian energy (in mean-edge-length units)."""
    normal_consistency: float = 1.0
    """lambda of the normal consistency, the mean over shared edges of rho(1 - n_f . n_g)
    (threestudio's magic3d-refine: 10,000 on the plain form against Stable Diffusion's latent
    loss at 512 px)."""
    normal_consistency_eps: float | None = 0.06
    """eps of the edge-preserving rho(x) = x / (x + eps) (about a 20 deg bend; None: the plain
    rho(x) = x, which rounds a cube's edges; `backend.field.surface_mesh`)."""
    preview_every: int = 25
    """Send a preview image every this many steps (0: never)."""

    def __post_init__(self) -> None:
        if not self.lr > 0.0:
            raise ValueError(f"refine lr must be > 0, got {self.lr}")
        if self.faces < 4:
            raise ValueError(f"refine faces must be at least 4, got {self.faces}")
        if self.subdivisions < 0:
            raise ValueError(f"refine subdivisions must be >= 0, got {self.subdivisions}")


@dataclass(frozen=True)
class DistillConfig:
    """One optimisation run."""

    steps: int = 150
    """Optimisation steps."""
    views: int = 4
    """Views rendered per step (the batch the prior judges)."""
    resolution: int = 32
    """Render side in pixels (resized to the prior's input size before encoding)."""
    lr: float = 0.1
    """Adam learning rate of the grid values at the first step."""
    lr_end: float | None = None
    """Learning rate at the last step, reached by exponential decay from `lr` (None: constant).
    A high rate carves the shape quickly; a low one at the end averages the step-to-step noise
    of score distillation out of the surface instead of freezing it in as spikes."""
    fused_adam: bool = True
    """Adam's update in one fused kernel (`torch.optim.Adam(fused=True)`: the same update up to
    float rounding; a 64^3 grid's step 0.3 ms against 3.9 ms on 2 CPU cores, 2026-12-07).
    False: the per-parameter loop, the reference path that `boxdream bench` times."""
    grid: GridFieldConfig = dataclasses.field(default_factory=GridFieldConfig)
    """Representation."""
    render: RenderConfig = dataclasses.field(default_factory=lambda: RenderConfig(32, 32))
    """Samples per ray."""
    cameras: CameraSamplingConfig = dataclasses.field(default_factory=CameraSamplingConfig)
    """Random camera ranges."""
    shading: ShadingConfig = dataclasses.field(default_factory=ShadingConfig)
    """Light model and shading-mode odds."""
    regularisers: RegulariserConfig = dataclasses.field(default_factory=RegulariserConfig)
    """Geometry regularisers."""
    guidance_scale: float = 30.0
    """Classifier-free guidance scale s (formula in backend.guidance.prior)."""
    guidance_interval: GuidanceInterval | None = None
    """Where s applies, and the milder guidance and larger weight below it
    (`backend.guidance.guidance_interval`; SDS and VSD weight the band below it, SJC follows
    its scales only); None: s at every t."""
    preview_every: int = 25
    """Send a preview image every this many steps (0: never)."""
    export: ExportConfig = dataclasses.field(default_factory=ExportConfig)
    """Mesh extraction and texture baking."""
    face_budget: int = 10_000
    """Faces of the exported mesh at most (decimated before UV unwrapping)."""
    texture_size: int = 512
    """Side of the baked baseColor texture, pixels."""
    particles: int = 1
    """Fields optimised side by side for one prompt, each with its own seed and its own output
    mesh (`<name>_p1`, `<name>_p2` ...); VSD's particles share its LoRA (ProlificDreamer uses
    4). They take turns, so the run costs `particles` x `steps` steps."""
    pattern_backgrounds: bool = False
    """Composite every view over a random pattern background (checkerboard, noise, blurred
    noise; `backend.render.pattern_backgrounds`) instead of a solid grey, as Dream Fields
    does."""
    max_non_finite_steps: int = 5
    """Steps whose field gradient holds a NaN or an inf that a run skips before it fails
    (`backend.guidance.precision.NonFiniteGuard`): a few can be a rare fp16 overflow in the
    prior, more mean the precision is broken for this model."""
    refine: RefineConfig | None = None
    """Stage 2, the mesh refinement after this run (None: off; the result is the field's
    marching-cubes surface)."""

    def __post_init__(self) -> None:
        if not self.lr > 0.0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.lr_end is not None and not self.lr_end > 0.0:
            raise ValueError(f"lr_end must be > 0 or None, got {self.lr_end}")


CPU_LR = 0.5
"""Adam learning rate of the grid at the first step with tiny-shapes: high enough to carve a
torus's hole out of the start blob (0.1 leaves a disc; docs/research/
cpu-learning-rate-and-start-blob.md)."""
CPU_LR_END = 0.1
"""Learning rate on CPU at the last step (exponential decay from `CPU_LR`)."""
CPU_START = GridFieldConfig(blob_density=3.5, blob_radius=0.6, density_scale=2.0)
"""Start blob with tiny-shapes: lower and wider than threestudio's 10 / 0.5, so a hole or a
corner is a few steps of carving; density scale 2 keeps a cube's corners
(docs/research/cpu-learning-rate-and-start-blob.md, cube-edge-preserving-smoothing.md)."""
CPU_REGULARISERS = RegulariserConfig(total_variation=100.0)
"""Regularisers with tiny-shapes: a total variation of 100 (a mean over 64^3 voxels, so
threestudio's 0.5 does nothing against 32x32 renders; 500 melts a cube;
docs/research/cpu-learning-rate-and-start-blob.md)."""

CPU_GUIDANCE_INTERVAL = GuidanceInterval(
    t_start=0.65, low_scale=2.0, low_weight=40.0, start_progress=0.3
)
"""Guidance with tiny-shapes: s = 30 at every t for the first 30% of the run, then only for
t >= 0.65, with s = 2 and 40x the weight below; it removes a cube's protruding corners
(docs/research/guidance-interval.md). Generate (every method) and composed scenes follow it;
edits guide at every t (`edit_config`)."""
CPU_INTERVAL_REGULARISERS = replace(
    CPU_REGULARISERS, total_variation=400.0, edge_total_variation=600.0
)
"""Regularisers with the guidance interval: its 40x weight needs more smoothing (400 on the
albedo), and the density gets the edge-preserving (Charbonnier) variation at 600, which keeps
a cube's edges where the squared one rounds them (docs/research/
cube-edge-preserving-smoothing.md)."""
CPU_SDS_VIEWS = 8
"""Views per step with tiny-shapes: the average over 8 views is less noisy, and the noise is
what the end of a run freezes into the surface (a cube fills 0.88 instead of 0.86-0.87 with 4;
a step costs about 1.6x; docs/research/cube-edge-preserving-smoothing.md)."""
EDIT_LR = 0.1
"""Highest learning rate of an edit: it starts from the artist's surface, which the generation
rate (0.5) wears away in a few steps."""
EDIT_TOTAL_VARIATION = 0.5
"""Highest total-variation weight of an edit: the field starts as the artist's mesh, whose
sharp edges a generation's smoothing (`CPU_REGULARISERS`) would round off."""

_BUILTIN_RUN = DistillConfig(
    lr=CPU_LR,
    lr_end=CPU_LR_END,
    grid=CPU_START,
    regularisers=CPU_REGULARISERS,
    cameras=TRAINING_CAMERAS,
)
"""What every CPU preset shares; they differ in steps, resolution and output size. The cameras
are the ones `tiny-shapes` was trained with (one distance, one field of view), so that the
prior judges views whose framing it knows. SDS adds its guidance interval
(`_BUILTIN_METHOD_OVERRIDES`)."""

CPU_REFINE = RefineConfig(
    steps=100, faces=5000, subdivisions=1, laplacian=10.0, normal_consistency=1000.0
)
"""Stage 2 with tiny-shapes: 100 steps of 4 views at 64 px (averaged 2 x 2 into the prior's
32 px) on the coarse surface decimated to 5,000 faces and subdivided once (20,000); the
edge-preserving normal consistency at 1,000 takes "a green torus" to a 2.2 deg median
neighbour angle (3.8 at the 10,000 faces of stage 1's export) and keeps a cube's fill
(docs/research/mesh-refinement.md)."""
CPU_REFINE_FACE_BUDGET = 20_000
"""Faces of the export after stage 2: the refined mesh as it is (decimating it to 10,000 puts
an analytic torus's median angle at 3.8 deg; xatlas takes about 3x as long as at 10,000)."""

_BUILTIN = {
    "preview": replace(_BUILTIN_RUN, steps=300),
    "standard": replace(
        _BUILTIN_RUN, steps=400, refine=CPU_REFINE, face_budget=CPU_REFINE_FACE_BUDGET
    ),
    "high": replace(
        _BUILTIN_RUN,
        steps=1000,
        resolution=48,
        render=RenderConfig(32, 32),
        grid=replace(CPU_START, resolution=96),
        texture_size=1024,
        refine=replace(CPU_REFINE, steps=2 * CPU_REFINE.steps),
        face_budget=CPU_REFINE_FACE_BUDGET,
    ),
}

LATENT_REFINE = RefineConfig(
    steps=2000, views=1, resolution=512, lr=0.01, faces=25_000, normal_consistency=10_000.0
)
"""Stage 2 with Stable Diffusion: 512 px renders through the VAE and threestudio's
magic3d-refine numbers (lr 0.01, normal consistency 10,000; it runs 5,000 steps); not yet
measured on a GPU."""

_LATENT = {
    "preview": DistillConfig(steps=1500, views=1, resolution=64, guidance_scale=100.0, lr=0.05),
    "standard": DistillConfig(
        steps=5000,
        views=1,
        resolution=64,
        guidance_scale=100.0,
        lr=0.05,
        grid=GridFieldConfig(resolution=128),
        render=RenderConfig(64, 64),
        face_budget=30_000,
        texture_size=1024,
        refine=LATENT_REFINE,
    ),
    "high": DistillConfig(
        steps=10000,
        views=1,
        resolution=128,
        guidance_scale=100.0,
        lr=0.05,
        grid=GridFieldConfig(resolution=192),
        render=RenderConfig(64, 64),
        face_budget=50_000,
        texture_size=2048,
        refine=replace(LATENT_REFINE, steps=5000, faces=40_000),
    ),
}

IF_GUIDANCE_SCALE = 20.0
"""Guidance of SDS and SJC with a pixel-space IF-style prior (threestudio's dreamfusion-if
config; DreamFusion's 100 was for Imagen)."""

_PIXEL = {
    name: replace(config, guidance_scale=IF_GUIDANCE_SCALE) for name, config in _LATENT.items()
}

CLIP_RECIPE = {
    "guidance_scale": 1.0,
    "pattern_backgrounds": True,
    "regularisers": RegulariserConfig(sparsity=0.0, transmittance=2.0),
    "shading": ShadingConfig(textureless_prob=0.0),
    "refine": None,
}
"""Dream Fields (`--method clip`): L_CLIP weighted 1 per rendered pixel (like the
regularisers), pattern backgrounds, the transmittance loss (lambda_T 2 per pixel, tau 0.5 ->
0.88 over the paper's 500 steps) in place of the sparsity penalty, no textureless views (CLIP
judges the colour in every view). No stage 2: the mesh refinement distils from a diffusion
prior (Magic3D), and Dream Fields' result is its field's surface. Untested with a GPU-sized
CLIP."""

_METHOD_OVERRIDES = {
    # VSD works at ordinary guidance (ProlificDreamer: 7.5).
    "vsd": {"guidance_scale": 7.5},
    "sds": {},
    # SJC (PAAS, w(t) = 1) at SDS's numbers: right colour and shape for "a red cone" (preview).
    "sjc": {},
    "clip": CLIP_RECIPE,
}

_CPU_SDS_RECIPE = {
    "guidance_scale": _BUILTIN_RUN.guidance_scale,
    "guidance_interval": CPU_GUIDANCE_INTERVAL,
    "regularisers": CPU_INTERVAL_REGULARISERS,
    "views": CPU_SDS_VIEWS,
}
"""CPU SDS's guidance (30, with its interval), smoothing and views. VSD and SJC on the built-in
model take all of it but the sparsity (`PARTICLE_SPARSITY`)."""

PARTICLE_SPARSITY = 0.45
"""lambda_sparsity of VSD and SJC on CPU, 1.5x SDS's 0.3. With SDS's, both came out larger than
SDS at the same prompt and seed (seeds 0-2, the five shapes): SJC's red cube 0.82-0.83 against
0.79 and its purple cylinder 0.90 against 0.85, VSD 0.98-1.06 of SDS's extent (green cone,
seed 1: 0.98 against 0.93), over issue 28's band. SJC's particle gradient is about twice SDS's
over the first fifth of a run (norm 70-113 against 33-47), when the blob grows. SJC at 0.45:
red cube 0.80, fill 0.868; purple cylinder 0.86. docs/research/vsd-on-the-built-in-model.md."""

_CPU_PARTICLE_RECIPE = {
    **_CPU_SDS_RECIPE,
    "regularisers": replace(CPU_INTERVAL_REGULARISERS, sparsity=PARTICLE_SPARSITY),
}

CPU_VSD = _CPU_PARTICLE_RECIPE
"""VSD on CPU: SDS's recipe, with `PARTICLE_SPARSITY`. At ProlificDreamer's guidance 7.5 with 4
views and the plain total variation, VSD's particle gradient per view was 6-9 (norm) against CPU
SDS's 37-64, too weak against the sparsity and smoothing, so objects shrank and greyed (extent
0.23-0.30 for "a yellow sphere", seed 0; SDS 0.85). With SDS's recipe: yellow, a sphere, extent
0.87. Measurements in docs/research/vsd-on-the-built-in-model.md."""

CPU_SJC = _CPU_PARTICLE_RECIPE
"""SJC on CPU: SDS's recipe, with `PARTICLE_SPARSITY`. SJC weights every t alike (w = 1), so it
follows the interval's guidance scales but takes no extra weight below t_start. "a red cube"
(seed 0, preview): white with guidance 30 at every t over 4 views and the plain total variation;
red, fill 0.83 (judged a cylinder) with the interval and its smoothing over 4 views; red, a cube
(fill 0.858), extent 0.83 over 8 views; with the sparsity of 0.45, fill 0.868, extent 0.80.
Measurements in docs/research/vsd-on-the-built-in-model.md."""

CPU_CLIP = {
    **CLIP_RECIPE,
    "resolution": 32,  # tiny-clip's input size (a run renders at its CLIP's, `run_config`)
    "regularisers": replace(
        CPU_INTERVAL_REGULARISERS,
        sparsity=0.0,
        transmittance=2.0,
        transmittance_target=TransmittanceTarget(anneal_steps=100),
    ),
}
"""Dream Fields with tiny-clip: CPU SDS's smoothing (400 on the albedo, the edge-preserving 600
on the density), and tau reaching 0.88 after 100 of the preview's 300 steps (the paper anneals
over the first 500 of a longer run). With an intermediate tiny-clip, "a yellow cone" (seed 0,
preview) came out yellow at an extent of 0.89; with the plain smoothing of 100 its yellow
washed out to white, and with lambda_T 0.5 it swelled to an extent of 1.2-1.7. With the shipped
tiny-clip every README prompt comes out in its colour (docs/research/dream-fields.md)."""

_BUILTIN_METHOD_OVERRIDES = {
    **_METHOD_OVERRIDES,
    # The guidance interval, the smoothing it needs and 8 views for every method; edits guide
    # at every t over 4 views, as they were tuned (`edit_config`).
    "sds": _CPU_SDS_RECIPE,
    "vsd": CPU_VSD,
    "sjc": CPU_SJC,
    "clip": CPU_CLIP,
}


_TABLES = {
    ModelFamily.BUILTIN: (_BUILTIN, _BUILTIN_METHOD_OVERRIDES),
    ModelFamily.LATENT: (_LATENT, _METHOD_OVERRIDES),
    ModelFamily.PIXEL: (_PIXEL, _METHOD_OVERRIDES),
}
"""Each model family's presets and per-method overrides."""


def check_names(preset: str, method: str) -> None:
    """Raise `FieldError` naming the field when `preset` or `method` is not offered."""
    if preset not in PRESETS:
        raise FieldError("preset", f"preset: {preset!r} is not one of {', '.join(PRESETS)}")
    if method not in METHODS:
        raise FieldError("method", f"method: {method!r} is not one of {', '.join(METHODS)}")


def preset_config(preset: str, method: str, family: ModelFamily) -> DistillConfig:
    """The run configuration of a preset for a model family; raises ValueError naming the
    field for unknown names."""
    check_names(preset, method)
    base, overrides = _TABLES[family]
    return replace(base[preset], **overrides[method])


def edit_config(config: DistillConfig) -> DistillConfig:
    """An edit's run configuration from a preset's: at most `EDIT_LR`, constant, and at most
    `EDIT_TOTAL_VARIATION` of the squared smoothing on both grids (no edge-preserving term), so
    the edit keeps the artist's surface; guided at every t (no guidance interval) over at most
    the 4 views of the shared CPU run (`_BUILTIN_RUN`; generation renders `CPU_SDS_VIEWS`), as
    edits were tuned. Empty space is skipped (`RenderConfig.skip_empty`): the artist's mesh
    leaves most of the cube empty."""
    regularisers = replace(
        config.regularisers,
        total_variation=min(config.regularisers.total_variation, EDIT_TOTAL_VARIATION),
        edge_total_variation=0.0,
    )
    return replace(
        config,
        lr=min(config.lr, EDIT_LR),
        lr_end=None,
        regularisers=regularisers,
        guidance_interval=None,
        views=min(config.views, _BUILTIN_RUN.views),
        render=replace(config.render, skip_empty=True),
    )
