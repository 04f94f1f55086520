"""A composed scene (Set-the-Scene): one dense grid field per prompt box, each in its box's own
frame, plus an optional background field, rendered together as one field.

Frames and units:

- The scene frame is the world frame moved and scaled so the scene (the bounding box of all
  prompt boxes) is centred at the origin with largest half-extent VIEW_HALF_EXTENT:
  x_scene = (x_world - origin) / metres_per_unit (`SceneFrame`). The default camera orbit of
  `sample_cameras` frames it like one generated object.
- Each object's field lives in its box's field frame q = R_yaw^T (x - centre) / half_size * b
  (b: the grid's bound), so the whole grid covers exactly the box; a box of any proportions
  maps onto the grid's cube, and the object's density is zero outside its box by construction.
- Object units: the box frame scaled so the box's largest half-edge is VIEW_HALF_EXTENT; an
  `ObjectView` renders one object alone in these units, where the default camera orbit frames
  the box like one generated object. A field's density is per object unit; seen in the scene
  frame it is multiplied by `unit` (object units per scene unit), so optical depths agree.

Resolution and smoothing: a generated object's grid spans [-bound, bound]^3 object units; a
box's object gets the same voxel size in object units (`object_grid`: half the voxels a side
at the default bound 1, as its box spans [-VIEW_HALF_EXTENT, VIEW_HALF_EXTENT]), so a view of
it gives each voxel the gradient a generated object's voxel gets. The total variation is a mean
over a grid's voxels; weighted by the grid's voxel count over the count of the grid the weights
were tuned for (`tuned_resolution`), each voxel feels the pull of smoothing it does there too.

Merging the objects' samples at a scene point (what makes the scene a `RenderableField`):
densities add, sigma = sum_i sigma_i; albedo is density-weighted, a = sum_i sigma_i a_i / sigma;
the normal is the normal of the densest object there.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from backend.field.grid_field import DenseGridField, GridFieldConfig
from backend.geometry.field_samples import FieldSamples
from backend.geometry.oriented_box import OrientedBox

VIEW_HALF_EXTENT = 0.5
"""Half-extent, in camera-orbit units, at which the scene and each box are framed: the built-in
model's objects have radius <= ~0.5 at `sample_cameras`' default distances."""

EMPTY_RAW_DENSITY = -4.0
"""Raw density the background grid starts from: softplus(-4) ~ 0.02 per scene unit, i.e. empty."""


@dataclass(frozen=True)
class SceneFrame:
    """The scene's normalised frame: x_scene = (x_world - origin) / metres_per_unit."""

    origin: tuple[float, float, float]
    """World position of the scene frame's origin (the centre of the boxes' bounding box)."""
    metres_per_unit: float
    """World metres per scene unit."""

    @classmethod
    def around(cls, boxes: Sequence[OrientedBox]) -> SceneFrame:
        """The frame in which `boxes` (world) have a bounding box centred at the origin with
        largest half-extent VIEW_HALF_EXTENT."""
        lows = [min(b.centre[k] - b.extents()[k] for b in boxes) for k in range(3)]
        highs = [max(b.centre[k] + b.extents()[k] for b in boxes) for k in range(3)]
        origin = tuple(0.5 * (lo + hi) for lo, hi in zip(lows, highs, strict=True))
        half_extent = max(0.5 * (hi - lo) for lo, hi in zip(lows, highs, strict=True))
        return cls(origin=origin, metres_per_unit=half_extent / VIEW_HALF_EXTENT)

    def box_in_scene(self, box: OrientedBox) -> OrientedBox:
        """A world box in the scene frame."""
        return box.in_frame(self.origin, self.metres_per_unit)


def object_grid(generated: GridFieldConfig) -> GridFieldConfig:
    """The grid of a box's object for the `generated` grid of a single-object run: the same
    voxel size in object units (module docstring), so the same number of voxels across the
    object (with the box's own 64 a side a cube grew to the box's walls;
    docs/research/composed-scene-voxel-size.md)."""
    resolution = round(generated.resolution * VIEW_HALF_EXTENT / generated.bound)
    return replace(generated, resolution=max(2, resolution))


def voxel_share(grid: GridFieldConfig, tuned_resolution: int | None) -> float:
    """The weight of `grid`'s total variation: its voxel count over tuned_resolution^3 (1 for
    None), so each of its voxels feels the pull a voxel of the tuned grid does."""
    return 1.0 if tuned_resolution is None else (grid.resolution / tuned_resolution) ** 3


class BoxedObject(torch.nn.Module):
    """One object: a dense grid field filling its box (frames in the module docstring)."""

    def __init__(
        self, box: OrientedBox, grid: GridFieldConfig, smoothing_share: float = 1.0
    ) -> None:
        super().__init__()
        self.box = box
        """The box in the scene frame."""
        self.field = DenseGridField(grid)
        self.smoothing_share = smoothing_share
        """Weight of this object's total variation (`voxel_share`)."""

    def total_variation(
        self, density_eps: float | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(density term, albedo term) of the object's grid times its smoothing share."""
        density, albedo = self.field.total_variation(density_eps)
        return self.smoothing_share * density, self.smoothing_share * albedo

    @property
    def unit(self) -> float:
        """Object units per scene unit."""
        return VIEW_HALF_EXTENT / max(self.box.half_size)

    def field_points(self, points: torch.Tensor) -> torch.Tensor:
        """[N, 3] scene-frame points -> [N, 3] field-frame points q."""
        return self.box.to_unit(points) * self.field.bound

    def inside(self, field_points: torch.Tensor) -> torch.Tensor:
        """[N, 3] field-frame points -> [N] indices of those inside the box."""
        return ((field_points.abs() <= self.field.bound).all(dim=-1)).nonzero().squeeze(1)

    def normals_to_scene(self, field_normals: torch.Tensor) -> torch.Tensor:
        """[N, 3] field-frame normals -> [N, 3] scene-frame unit normals: the density gradient
        maps by R diag(b / half_size), so n ~ R (n_q / half_size)."""
        half = self.box.half_sizes(field_normals)
        return F.normalize(self.box.vectors_to_parent(field_normals / half), dim=-1)

    def view(self) -> ObjectView:
        """This object alone, in object units (for object-centred steps)."""
        return ObjectView(self)


class ObjectView:
    """One object alone in object units: a `RenderableField` whose cube holds the box."""

    bound: float = VIEW_HALF_EXTENT

    def __init__(self, obj: BoxedObject) -> None:
        self.obj = obj
        half = torch.tensor(obj.box.half_size) * obj.unit
        self._to_field = obj.field.bound / half  # [3] object units -> field frame, per axis

    @property
    def field_half_extent(self) -> tuple[float, float, float]:
        """Half extents, in object units, of the object's field cube (its box)."""
        half = self.obj.field.bound / self._to_field
        return (float(half[0]), float(half[1]), float(half[2]))

    def _field_points(self, points: torch.Tensor) -> torch.Tensor:
        return points * self._to_field.to(points)

    def density(self, points: torch.Tensor) -> torch.Tensor:
        """[N, 3] object-unit points -> [N] density per object unit."""
        return self.obj.field.density(self._field_points(points))

    def total_variation(
        self, density_eps: float | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The object's smoothing terms (`BoxedObject.total_variation`)."""
        return self.obj.total_variation(density_eps)

    def __call__(self, points: torch.Tensor) -> FieldSamples:
        """Density, albedo and object-unit normals (n ~ n_q * to_field) at [N, 3] points."""
        samples = self.obj.field(self._field_points(points))
        normal = F.normalize(samples.normal * self._to_field.to(points), dim=-1)
        return FieldSamples(density=samples.density, albedo=samples.albedo, normal=normal)


class ComposedField(torch.nn.Module):
    """Every object of a scene (and an optional background) as one field in the scene frame.

    Density outside every box is zero unless there is a background; the background's density
    is zero inside the boxes, so each box's content belongs to its object alone.
    """

    def __init__(
        self,
        boxes: Sequence[OrientedBox],
        box_grid: GridFieldConfig,
        background_grid: GridFieldConfig | None = None,
        tuned_resolution: int | None = None,
    ) -> None:
        """boxes: in the scene frame; box_grid: each box's object grid (`object_grid`);
        background_grid: the
        background's grid over [-bound, bound]^3 of the scene frame (None: no background). The
        background starts empty (EMPTY_RAW_DENSITY, no blob). tuned_resolution: voxels a side
        of the grid the smoothing weights were tuned for; each grid's total variation is then
        weighted by its voxel count over tuned_resolution^3 (None: an unweighted sum)."""
        super().__init__()
        share = voxel_share(box_grid, tuned_resolution)
        self.objects = torch.nn.ModuleList(BoxedObject(box, box_grid, share) for box in boxes)
        self.background: DenseGridField | None = None
        self.background_share = 1.0
        """Weight of the background's total variation (its voxel share)."""
        if background_grid is not None:
            self.background_share = voxel_share(background_grid, tuned_resolution)
            self.background = DenseGridField(replace(background_grid, blob_density=0.0))
            with torch.no_grad():
                self.background.density_grid.fill_(EMPTY_RAW_DENSITY)

    @property
    def bound(self) -> float:
        """Half-side of the cube around the scene origin that holds every density."""
        if self.background is not None:
            return max(self.background.bound, VIEW_HALF_EXTENT)
        return max(
            max(abs(c) + e for c, e in zip(obj.box.centre, obj.box.extents(), strict=True))
            for obj in self.objects
        )

    def _outside_boxes(self, points: torch.Tensor) -> torch.Tensor:
        """[N] float: 1 where a scene point lies in no box."""
        inside = torch.zeros(points.shape[0], dtype=torch.bool, device=points.device)
        for obj in self.objects:
            inside |= obj.box.contains(points)
        return (~inside).float()

    def background_density(self, points: torch.Tensor) -> torch.Tensor:
        """[N, 3] scene points -> [N] background density (zero inside the boxes)."""
        return self.background.density(points) * self._outside_boxes(points)

    def background_view(self) -> BackgroundView:
        """The background alone (for export)."""
        return BackgroundView(self)

    def density(self, points: torch.Tensor) -> torch.Tensor:
        """[N, 3] scene points -> [N] merged density per scene unit."""
        total = points.new_zeros(points.shape[0])
        for obj in self.objects:
            q = obj.field_points(points)
            idx = obj.inside(q)
            total = total.index_add(0, idx, obj.field.density(q[idx]) * obj.unit)
        if self.background is not None:
            total = total + self.background_density(points)
        return total

    def _parts(self, points: torch.Tensor) -> Iterator[FieldSamples]:
        """Each object's (then the background's) samples at all [N, 3] scene points, zero
        where it has no density; densities per scene unit, normals in the scene frame."""
        n = points.shape[0]
        for obj in self.objects:
            q = obj.field_points(points)
            idx = obj.inside(q)
            samples = obj.field(q[idx])
            yield FieldSamples(
                density=points.new_zeros(n).index_copy(0, idx, samples.density * obj.unit),
                albedo=points.new_zeros(n, 3).index_copy(0, idx, samples.albedo),
                normal=points.new_zeros(n, 3).index_copy(
                    0, idx, obj.normals_to_scene(samples.normal)
                ),
            )
        if self.background is not None:
            samples = self.background(points)
            samples.density = samples.density * self._outside_boxes(points)
            yield samples

    def forward(self, points: torch.Tensor) -> FieldSamples:
        """Merged density, albedo and normals at [N, 3] scene points (module docstring)."""
        density = points.new_zeros(points.shape[0])  # sigma = sum_i sigma_i
        weighted_albedo = points.new_zeros(points.shape[0], 3)  # sum_i sigma_i a_i
        strongest = points.new_zeros(points.shape[0])  # max_i sigma_i so far
        normal = points.new_zeros(points.shape[0], 3)  # n of the densest part so far
        for part in self._parts(points):
            density = density + part.density
            weighted_albedo = weighted_albedo + part.density[:, None] * part.albedo
            normal = torch.where((part.density > strongest)[:, None], part.normal, normal)
            strongest = torch.maximum(strongest, part.density)
        albedo = weighted_albedo / density.clamp(min=1e-8)[:, None]
        return FieldSamples(density=density, albedo=albedo, normal=normal)

    def total_variation(
        self, density_eps: float | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(density term, albedo term) summed over the objects and the background, each
        weighted by its voxel share (`__init__`)."""
        terms = [obj.total_variation(density_eps) for obj in self.objects]
        if self.background is not None:
            density, albedo = self.background.total_variation(density_eps)
            terms.append((self.background_share * density, self.background_share * albedo))
        return sum(d for d, _ in terms), sum(a for _, a in terms)


class BackgroundView:
    """The background of a scene alone, in the scene frame: an `ExportableField` whose density
    is zero inside the boxes."""

    def __init__(self, scene: ComposedField) -> None:
        self.scene = scene
        self.bound = scene.background.bound

    def density(self, points: torch.Tensor) -> torch.Tensor:
        """[N, 3] scene points -> [N] density per scene unit."""
        return self.scene.background_density(points)

    def albedo(self, points: torch.Tensor) -> torch.Tensor:
        """[N, 3] scene points -> [N, 3] albedo."""
        return self.scene.background.albedo(points)
