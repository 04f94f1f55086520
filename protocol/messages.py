"""Every message of the protocol as a typed dataclass with `to_wire()` and `from_wire()`.

Requests go from a client to the server, events and replies from the server to a client.
`from_wire` validates strictly and raises `ProtocolError` naming the field and the limit.
The job id of a message travels in the header, not in the fields (see PROTOCOL.md).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from typing import Any, ClassVar, Self

from .errors import ErrorCode, ProtocolError
from .fields import (
    FieldReader,
    as_blob,
    as_bool,
    as_choice,
    as_float,
    as_int,
    as_text,
    as_vector,
    join,
    list_of,
    optional,
    printable,
    wrong_type,
)
from .frames import Envelope, check_job_id, decode, encode
from .glb import inspect_glb
from .limits import Limits

DEFAULT_LIMITS = Limits()
"""The limits of a server that advertises the defaults."""

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_INT = 2**31 - 1
MAX_LISTED = 256
"""Most entries in a server's model, method and preset lists."""

IDENTITY: tuple[float, ...] = (
    1.0, 0.0, 0.0, 0.0,
    0.0, 1.0, 0.0, 0.0,
    0.0, 0.0, 1.0, 0.0,
    0.0, 0.0, 0.0, 1.0,
)  # fmt: skip
"""The identity 4x4 transform, row-major."""

EDIT_MODES: tuple[str, ...] = ("texture", "shape")
"""Edit modes: repaint the surface only, or change the shape too."""

PRECISIONS: tuple[str, ...] = ("auto", "fp32", "fp16", "bf16")
"""Precisions of the frozen prior: "auto" is bf16 on a CUDA device that has it, else fp16 on
CUDA, and fp32 on a CPU; fields, losses and optimiser state are fp32 whatever is chosen."""

MAX_PARTICLES = 8
"""Most particles (results from one prompt, optimised side by side) in a generate request."""


class JobKind(StrEnum):
    """What a job does."""

    GENERATE = "generate"
    COMPOSE = "compose"
    EDIT = "edit"


class JobState(StrEnum):
    """Where a job is in its life."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"


TERMINAL_STATES = frozenset(
    {JobState.DONE, JobState.FAILED, JobState.CANCELLED, JobState.INTERRUPTED}
)
"""States a job never leaves."""


class JobRule(Enum):
    """Whether a message type carries a job id in its header."""

    NONE = "none"
    OPTIONAL = "optional"
    REQUIRED = "required"


class Message:
    """Base of all messages: header type, job rule, field encoding and strict decoding."""

    TYPE: ClassVar[str]
    JOB: ClassVar[JobRule]

    def _fields(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def _read(cls, reader: FieldReader, job: str | None, limits: Limits) -> Self:
        raise NotImplementedError

    def to_wire(self) -> list[bytes]:
        """The multipart frames of this message (no validation: see `validate`)."""
        job = getattr(self, "job", None)
        return encode(Envelope(self.TYPE, job, self._fields()))

    @classmethod
    def from_wire(cls, frames: Sequence[bytes], limits: Limits = DEFAULT_LIMITS) -> Self:
        """Decode and validate frames that must hold a message of this type."""
        envelope = decode(frames, limits)
        if envelope.type != cls.TYPE:
            raise ProtocolError(
                ErrorCode.UNKNOWN_TYPE,
                "type",
                f"type: expected {cls.TYPE!r}, got {envelope.type!r}",
            )
        return cls.from_envelope(envelope, limits)

    @classmethod
    def from_envelope(cls, envelope: Envelope, limits: Limits) -> Self:
        """Validate the fields of an already decoded envelope of this type."""
        if cls.JOB is JobRule.REQUIRED and envelope.job is None:
            raise ProtocolError(
                ErrorCode.MISSING_FIELD, "job", f"job: a {cls.TYPE} message needs a job id"
            )
        if cls.JOB is JobRule.NONE and envelope.job is not None:
            raise ProtocolError(
                ErrorCode.BAD_VALUE, "job", f"job: must be null in a {cls.TYPE} message"
            )
        reader = FieldReader(envelope.fields)
        message = cls._read(reader, envelope.job, limits)
        reader.finish()
        return message


def _label(value: object, path: str, limits: Limits) -> str:
    return as_text(value, path, limits.max_name_chars, multiline=False)


def _transform(value: object, path: str) -> tuple[float, ...]:
    matrix = as_vector(value, path, 16)
    if any(abs(a - b) > 1e-6 for a, b in zip(matrix[12:], (0.0, 0.0, 0.0, 1.0), strict=True)):
        raise ProtocolError(
            ErrorCode.BAD_VALUE,
            path,
            f"{path}: the last row of a row-major affine transform must be 0, 0, 0, 1",
        )
    return matrix


def _unique_names(names: list[str], path: str, item: str) -> None:
    seen: set[str] = set()
    for index, name in enumerate(names):
        if name in seen:
            where = join(join(path, index), item) if item else join(path, index)
            raise ProtocolError(ErrorCode.BAD_VALUE, where, f"{where}: {name!r} is used twice")
        seen.add(name)


@dataclass(frozen=True)
class _Sampling:
    """Fields shared by all job requests, read in one place."""

    negative_prompt: str
    method: str
    preset: str
    seed: int
    model: str | None
    precision: str

    @classmethod
    def read(cls, reader: FieldReader, limits: Limits) -> _Sampling:
        return cls(
            negative_prompt=as_text(
                *reader.take("negative_prompt"), limits.max_prompt_chars, min_chars=0
            ),
            method=_label(*reader.take("method"), limits),
            preset=_label(*reader.take("preset"), limits),
            seed=as_int(*reader.take("seed"), 0, limits.max_seed),
            model=optional(_label, *reader.take("model"), limits),
            precision=as_choice(*reader.get("precision", "auto"), PRECISIONS),
        )

    @staticmethod
    def fields_of(request: JobRequest) -> dict[str, Any]:
        """The shared fields of `request` as JSON fields, in their wire order."""
        return {
            "negative_prompt": request.negative_prompt,
            "method": request.method,
            "preset": request.preset,
            "seed": request.seed,
            "model": request.model,
            "precision": request.precision,
        }


# ----------------------------------------------------------------------------- requests


@dataclass(frozen=True)
class Hello(Message):
    """Client → server: first message; the reply is `ServerInfo`."""

    TYPE: ClassVar[str] = "hello"
    JOB: ClassVar[JobRule] = JobRule.NONE

    client: str = ""
    """Name and version of the client program, for the server's log (may be empty)."""

    def _fields(self) -> dict[str, Any]:
        return {"client": self.client}

    @classmethod
    def _read(cls, reader: FieldReader, job: str | None, limits: Limits) -> Self:
        return cls(
            client=as_text(
                *reader.take("client"), limits.max_name_chars, min_chars=0, multiline=False
            )
        )


@dataclass(frozen=True)
class GenerateRequest(Message):
    """Client → server: make one textured mesh from a prompt."""

    TYPE: ClassVar[str] = "generate"
    JOB: ClassVar[JobRule] = JobRule.OPTIONAL

    prompt: str
    """What to make; 1..max_prompt_chars characters."""
    negative_prompt: str = ""
    """What to avoid; 0..max_prompt_chars characters."""
    method: str = "sds"
    """Score distillation method; one of the server's `ServerInfo.methods`."""
    preset: str = "preview"
    """Quality preset; one of `ServerInfo.presets[method]`."""
    seed: int = 0
    """Random seed, 0..max_seed."""
    model: str | None = None
    """One of `ServerInfo.models`, or None for the server's default model."""
    precision: str = "auto"
    """Precision of the frozen prior, one of `PRECISIONS` (optional on the wire)."""
    particles: int = 1
    """Results from this prompt, 1..MAX_PARTICLES, optimised side by side from seeds seed,
    seed + 1, ...; under VSD they share its LoRA and so come out different (optional on the
    wire)."""
    job: str | None = None
    """Client-chosen job id making the submit idempotent; None lets the server choose."""

    def _fields(self) -> dict[str, Any]:
        return {"prompt": self.prompt, **_Sampling.fields_of(self), "particles": self.particles}

    @classmethod
    def _read(cls, reader: FieldReader, job: str | None, limits: Limits) -> Self:
        prompt = as_text(*reader.take("prompt"), limits.max_prompt_chars)
        common = _Sampling.read(reader, limits)
        particles = as_int(*reader.get("particles", 1), 1, MAX_PARTICLES)
        return cls(prompt=prompt, job=job, particles=particles, **vars(common))


@dataclass(frozen=True)
class PromptBox:
    """One box of a compose request: world space, Z up, metres."""

    centre: tuple[float, float, float]
    """Centre of the box."""
    size: tuple[float, float, float]
    """Edge lengths along the box's own X, Y, Z, each in [min_box_size, max_box_size]."""
    yaw_deg: float
    """Rotation about world Z, degrees."""
    prompt: str
    """What goes in this box; 1..max_prompt_chars characters."""

    def to_fields(self) -> dict[str, Any]:
        """The box as JSON fields."""
        return {
            "centre": list(self.centre),
            "size": list(self.size),
            "yaw_deg": self.yaw_deg,
            "prompt": self.prompt,
        }

    @classmethod
    def from_fields(
        cls,
        value: object,
        path: str,
        limits: Limits,
        yaw_field: str = "yaw_deg",
        yaw_default: float | None = None,
    ) -> PromptBox:
        """Read and check one box, including that it lies inside the scene bound. The wire
        names the yaw `yaw_deg` and requires it; a scene file (`boxdream compose`) names it
        `yaw`, default 0 (`yaw_field`, `yaw_default`)."""
        reader = FieldReader(value, path)
        centre = as_vector(*reader.take("centre"), 3)
        size_value, size_path = reader.take("size")
        size = as_vector(size_value, size_path, 3)
        for axis, edge in enumerate(size):
            as_float(edge, join(size_path, axis), limits.min_box_size, limits.max_box_size)
        if yaw_default is None:
            yaw_deg = as_float(*reader.take(yaw_field))
        else:
            yaw_deg = as_float(*reader.get(yaw_field, yaw_default))
        prompt = as_text(*reader.take("prompt"), limits.max_prompt_chars)
        reader.finish()
        box = cls(centre=centre, size=size, yaw_deg=yaw_deg, prompt=prompt)  # type: ignore[arg-type]
        box.check_bound(path, limits.scene_bound)
        return box

    def extents(self) -> tuple[float, float, float]:
        """Half-extents of the box's world-axis-aligned bounding box after its yaw."""
        cos = abs(math.cos(math.radians(self.yaw_deg)))
        sin = abs(math.sin(math.radians(self.yaw_deg)))
        half_x, half_y, half_z = (edge / 2.0 for edge in self.size)
        return (cos * half_x + sin * half_y, sin * half_x + cos * half_y, half_z)

    def check_bound(self, path: str, bound: float) -> None:
        """Raise `out_of_range` if the rotated box leaves [-bound, bound]^3."""
        for axis, (centre, extent) in enumerate(zip(self.centre, self.extents(), strict=True)):
            reach = max(abs(centre - extent), abs(centre + extent))
            if reach > bound + 1e-9:
                raise ProtocolError(
                    ErrorCode.OUT_OF_RANGE,
                    path,
                    f"{path}: reaches {'xyz'[axis]} = {reach:.3g} m, "
                    f"the scene bound is ±{bound:g} m",
                )


@dataclass(frozen=True)
class ComposeRequest(Message):
    """Client → server: a scene of one mesh per prompt box."""

    TYPE: ClassVar[str] = "compose"
    JOB: ClassVar[JobRule] = JobRule.OPTIONAL

    boxes: list[PromptBox]
    """1..max_boxes boxes."""
    scene_prompt: str | None = None
    """Prompt for the whole scene (style, setting), or None."""
    negative_prompt: str = ""
    """What to avoid; 0..max_prompt_chars characters."""
    method: str = "sds"
    """Score distillation method; one of the server's `ServerInfo.methods`."""
    preset: str = "preview"
    """Quality preset; one of `ServerInfo.presets[method]`."""
    seed: int = 0
    """Random seed, 0..max_seed."""
    model: str | None = None
    """One of `ServerInfo.models`, or None for the server's default model."""
    precision: str = "auto"
    """Precision of the frozen prior, one of `PRECISIONS` (optional on the wire)."""
    include_background: bool = False
    """Also return a background mesh for the scene prompt."""
    job: str | None = None
    """Client-chosen job id making the submit idempotent; None lets the server choose."""

    def _fields(self) -> dict[str, Any]:
        return {
            "boxes": [box.to_fields() for box in self.boxes],
            "scene_prompt": self.scene_prompt,
            **_Sampling.fields_of(self),
            "include_background": self.include_background,
        }

    @classmethod
    def _read(cls, reader: FieldReader, job: str | None, limits: Limits) -> Self:
        boxes = list_of(PromptBox.from_fields, *reader.take("boxes"), 1, limits.max_boxes, limits)
        scene_prompt = optional(as_text, *reader.take("scene_prompt"), limits.max_prompt_chars)
        common = _Sampling.read(reader, limits)
        include_background = as_bool(*reader.take("include_background"))
        return cls(
            boxes=boxes,
            scene_prompt=scene_prompt,
            include_background=include_background,
            job=job,
            **vars(common),
        )


@dataclass(frozen=True)
class _Mesh:
    """A named GLB mesh with its world transform: one mesh of an edit request or of a result."""

    CHECK_FACES: ClassVar[bool]
    """Whether reading checks the GLB's triangle count against max_faces."""

    name: str
    """Mesh name, unique within its list (an edited mesh keeps its input's name)."""
    glb: bytes
    """GLB file, Z up, metres, at most max_mesh_bytes."""
    transform: tuple[float, ...]
    """World matrix, 16 floats, row-major 4x4, last row 0, 0, 0, 1."""

    def to_fields(self) -> dict[str, Any]:
        """The mesh as JSON fields (the GLB becomes a binary frame)."""
        return {"name": self.name, "glb": self.glb, "transform": list(self.transform)}

    @classmethod
    def from_fields(cls, value: object, path: str, limits: Limits) -> Self:
        """Read and check one mesh: always its GLB container, its triangle count if
        `CHECK_FACES`."""
        reader = FieldReader(value, path)
        name = _label(*reader.take("name"), limits)
        glb_value, glb_path = reader.take("glb")
        glb = as_blob(glb_value, glb_path, limits.max_mesh_bytes)
        faces = inspect_glb(glb, glb_path).faces
        if cls.CHECK_FACES and faces > limits.max_faces:
            raise ProtocolError(
                ErrorCode.TOO_LARGE,
                glb_path,
                f"{glb_path}: {faces} triangles, limit is {limits.max_faces}",
            )
        transform = _transform(*reader.take("transform"))
        reader.finish()
        return cls(name=name, glb=glb, transform=transform)

    @classmethod
    def read_list(cls, reader: FieldReader, max_meshes: int, limits: Limits) -> list[Self]:
        """The field "meshes": 1..max_meshes meshes with unique names."""
        meshes_value, meshes_path = reader.take("meshes")
        meshes = list_of(cls.from_fields, meshes_value, meshes_path, 1, max_meshes, limits)
        _unique_names([mesh.name for mesh in meshes], meshes_path, "name")
        return meshes


@dataclass(frozen=True)
class MeshInput(_Mesh):
    """One mesh of an edit request, at most max_faces triangles; the result mesh keeps its
    name."""

    CHECK_FACES: ClassVar[bool] = True


@dataclass(frozen=True)
class EditRequest(Message):
    """Client → server: repaint or reshape existing meshes from a prompt."""

    TYPE: ClassVar[str] = "edit"
    JOB: ClassVar[JobRule] = JobRule.OPTIONAL

    meshes: list[MeshInput]
    """1..max_meshes meshes with unique names."""
    prompt: str
    """The edit, 1..max_prompt_chars characters."""
    mode: str = "texture"
    """"texture" (surface colour only) or "shape" (geometry too)."""
    region: tuple[float, ...] | None = None
    """World box x0, y0, z0, x1, y1, z1 (each min below its max) to confine the edit, or None."""
    negative_prompt: str = ""
    """What to avoid; 0..max_prompt_chars characters."""
    method: str = "sds"
    """Score distillation method; one of the server's `ServerInfo.methods`."""
    preset: str = "preview"
    """Quality preset; one of `ServerInfo.presets[method]`."""
    seed: int = 0
    """Random seed, 0..max_seed."""
    model: str | None = None
    """One of `ServerInfo.models`, or None for the server's default model."""
    precision: str = "auto"
    """Precision of the frozen prior, one of `PRECISIONS` (optional on the wire)."""
    job: str | None = None
    """Client-chosen job id making the submit idempotent; None lets the server choose."""

    def _fields(self) -> dict[str, Any]:
        return {
            "meshes": [mesh.to_fields() for mesh in self.meshes],
            "prompt": self.prompt,
            "mode": self.mode,
            "region": None if self.region is None else list(self.region),
            **_Sampling.fields_of(self),
        }

    @classmethod
    def _read(cls, reader: FieldReader, job: str | None, limits: Limits) -> Self:
        meshes = MeshInput.read_list(reader, limits.max_meshes, limits)
        prompt = as_text(*reader.take("prompt"), limits.max_prompt_chars)
        mode = as_choice(*reader.take("mode"), EDIT_MODES)
        region_value, region_path = reader.take("region")
        region = optional(as_vector, region_value, region_path, 6)
        if region is not None:
            for axis in range(3):
                if not region[axis] < region[axis + 3]:
                    name = "xyz"[axis]
                    raise ProtocolError(
                        ErrorCode.OUT_OF_RANGE,
                        region_path,
                        f"{region_path}: {name}0 = {region[axis]:g} must be below "
                        f"{name}1 = {region[axis + 3]:g}",
                    )
        common = _Sampling.read(reader, limits)
        return cls(meshes=meshes, prompt=prompt, mode=mode, region=region, job=job, **vars(common))


@dataclass(frozen=True)
class _JobOnly(Message):
    """A message whose only content is the job id in its header."""

    JOB: ClassVar[JobRule] = JobRule.REQUIRED

    job: str
    """The job this message is about."""

    def _fields(self) -> dict[str, Any]:
        return {}

    @classmethod
    def _read(cls, reader: FieldReader, job: str | None, limits: Limits) -> Self:
        return cls(job=check_job_id(job, "job"))


@dataclass(frozen=True)
class Cancel(_JobOnly):
    """Client → server: stop a job (queued: at once; running: within one step).

    Reply: `JobStatus`; a `Cancelled` event follows when the job stops.
    """

    TYPE: ClassVar[str] = "cancel"


@dataclass(frozen=True)
class Status(_JobOnly):
    """Client → server: where is this job? Reply: `JobStatus` (or `Error` unknown_job)."""

    TYPE: ClassVar[str] = "status"


@dataclass(frozen=True)
class FetchResult(_JobOnly):
    """Client → server: the outcome of a job, for a client that (re)connects later.

    Reply: `Result`, `Error` or `Cancelled` for a finished job; for a queued or running one a
    `JobStatus`, and from then on the job's events stream to this client.
    """

    TYPE: ClassVar[str] = "fetch_result"


@dataclass(frozen=True)
class ListJobs(Message):
    """Client → server: the newest jobs on the server. Reply: `JobList`."""

    TYPE: ClassVar[str] = "list_jobs"
    JOB: ClassVar[JobRule] = JobRule.NONE

    limit: int = 50
    """How many jobs at most, 1..max_list_jobs, newest first."""

    def _fields(self) -> dict[str, Any]:
        return {"limit": self.limit}

    @classmethod
    def _read(cls, reader: FieldReader, job: str | None, limits: Limits) -> Self:
        return cls(limit=as_int(*reader.take("limit"), 1, limits.max_list_jobs))


# ------------------------------------------------------------------- events and replies


@dataclass(frozen=True)
class ServerInfo(Message):
    """Server → client: the reply to `Hello`."""

    TYPE: ClassVar[str] = "server_info"
    JOB: ClassVar[JobRule] = JobRule.NONE

    server_version: str
    """Version of the BoxDream server."""
    protocol_version: int
    """The server's protocol version (equal to the header's)."""
    device: str
    """The workers' devices, comma separated, e.g. "cpu" or "cuda:0,cuda:1"."""
    models: list[str]
    """Model names a request may ask for."""
    default_model: str | None
    """Model used when a request names none."""
    methods: list[str]
    """Score distillation methods offered, e.g. ["sds", "vsd", "sjc"]."""
    presets: dict[str, list[str]]
    """Presets offered per method."""
    limits: Limits
    """The limits this server enforces."""
    vocabulary: dict[str, Any] | None = None
    """What the default model knows (free-form JSON object, e.g. shapes and colours)."""
    model_settings: dict[str, Any] | None = None
    """The default model's family, the prior's precision and the preset values in force
    (free-form JSON object; optional on the wire)."""

    def _fields(self) -> dict[str, Any]:
        return {
            "server_version": self.server_version,
            "protocol_version": self.protocol_version,
            "device": self.device,
            "models": list(self.models),
            "default_model": self.default_model,
            "methods": list(self.methods),
            "presets": {method: list(names) for method, names in self.presets.items()},
            "limits": self.limits.to_wire(),
            "vocabulary": self.vocabulary,
            "model_settings": self.model_settings,
        }

    @classmethod
    def _read(cls, reader: FieldReader, job: str | None, limits: Limits) -> Self:
        def names(value: object, path: str, min_items: int) -> list[str]:
            result = list_of(_label, value, path, min_items, MAX_LISTED, limits)
            _unique_names(result, path, "")
            return result

        server_version = _label(*reader.take("server_version"), limits)
        protocol_version = as_int(*reader.take("protocol_version"), 0, MAX_INT)
        device = _label(*reader.take("device"), limits)
        models = names(*reader.take("models"), 0)
        default_model = optional(_label, *reader.take("default_model"), limits)
        methods = names(*reader.take("methods"), 1)
        presets_value, presets_path = reader.take("presets")
        presets_reader = FieldReader(presets_value, presets_path)
        presets = {method: names(*presets_reader.take(method), 1) for method in methods}
        presets_reader.finish()
        server_limits = Limits.from_wire(*reader.take("limits"))
        vocabulary_value, vocabulary_path = reader.take("vocabulary")
        if vocabulary_value is not None and not isinstance(vocabulary_value, dict):
            raise wrong_type(vocabulary_path, "an object or null", vocabulary_value)
        settings_value, settings_path = reader.get("model_settings", None)
        if settings_value is not None and not isinstance(settings_value, dict):
            raise wrong_type(settings_path, "an object or null", settings_value)
        return cls(
            server_version=server_version,
            protocol_version=protocol_version,
            device=device,
            models=models,
            default_model=default_model,
            methods=methods,
            presets=presets,
            limits=server_limits,
            vocabulary=vocabulary_value,
            model_settings=settings_value,
        )


@dataclass(frozen=True)
class Accepted(Message):
    """Server → client: the reply to a job request that passed validation."""

    TYPE: ClassVar[str] = "accepted"
    JOB: ClassVar[JobRule] = JobRule.REQUIRED

    job: str
    """Id of the new (or, for a repeated submit, the existing) job."""
    queue_position: int
    """Jobs ahead of this one in the queue; 0 means it starts next (or has started)."""

    def _fields(self) -> dict[str, Any]:
        return {"queue_position": self.queue_position}

    @classmethod
    def _read(cls, reader: FieldReader, job: str | None, limits: Limits) -> Self:
        return cls(
            job=check_job_id(job, "job"),
            queue_position=as_int(*reader.take("queue_position"), 0, MAX_INT),
        )


@dataclass(frozen=True)
class Progress(Message):
    """Server → client (and pipeline → worker): one optimisation step done."""

    TYPE: ClassVar[str] = "progress"
    JOB: ClassVar[JobRule] = JobRule.OPTIONAL

    stage: str
    """Name of the current stage, e.g. "coarse", "fine", "export"."""
    step: int
    """Steps done in this stage, 0..total."""
    total: int
    """Steps in this stage, at least 1."""
    loss: float | None
    """Current loss, finite, or None."""
    eta_s: float | None
    """Estimated seconds until the job ends, finite and >= 0, or None."""
    job: str | None = None
    """The job (set by the worker; pipelines leave it None)."""

    def _fields(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "step": self.step,
            "total": self.total,
            "loss": self.loss,
            "eta_s": self.eta_s,
        }

    @classmethod
    def _read(cls, reader: FieldReader, job: str | None, limits: Limits) -> Self:
        stage = _label(*reader.take("stage"), limits)
        step_value, step_path = reader.take("step")
        total = as_int(*reader.take("total"), 1, MAX_INT)
        step = as_int(step_value, step_path, 0, total)
        loss = optional(as_float, *reader.take("loss"))
        eta_s = optional(as_float, *reader.take("eta_s"), 0.0)
        return cls(stage=stage, step=step, total=total, loss=loss, eta_s=eta_s, job=job)


@dataclass(frozen=True)
class Preview(Message):
    """Server → client: a PNG of the current render."""

    TYPE: ClassVar[str] = "preview"
    JOB: ClassVar[JobRule] = JobRule.OPTIONAL

    step: int
    """The step the render is from."""
    png: bytes
    """PNG image, at most max_preview_bytes."""
    job: str | None = None
    """The job (set by the worker; pipelines leave it None)."""

    def _fields(self) -> dict[str, Any]:
        return {"step": self.step, "png": self.png}

    @classmethod
    def _read(cls, reader: FieldReader, job: str | None, limits: Limits) -> Self:
        step = as_int(*reader.take("step"), 0, MAX_INT)
        png_value, png_path = reader.take("png")
        png = as_blob(png_value, png_path, limits.max_preview_bytes)
        if not png.startswith(PNG_SIGNATURE):
            raise ProtocolError(ErrorCode.BAD_VALUE, png_path, f"{png_path}: not a PNG image")
        return cls(step=step, png=png, job=job)


@dataclass(frozen=True)
class JobWarning(Message):
    """Server → client: something the user should know, the job goes on."""

    TYPE: ClassVar[str] = "warning"
    JOB: ClassVar[JobRule] = JobRule.OPTIONAL

    message: str
    """One human sentence, e.g. that a prompt word is outside the built-in model's vocabulary."""
    job: str | None = None
    """The job (set by the worker; pipelines leave it None)."""

    def _fields(self) -> dict[str, Any]:
        return {"message": self.message}

    @classmethod
    def _read(cls, reader: FieldReader, job: str | None, limits: Limits) -> Self:
        return cls(message=as_text(*reader.take("message"), limits.max_text_chars), job=job)


@dataclass(frozen=True)
class ResultMesh(_Mesh):
    """One mesh of a result, with a baseColor texture; its GLB container is checked, not its
    triangle count."""

    CHECK_FACES: ClassVar[bool] = False


@dataclass(frozen=True)
class Result(Message):
    """Server → client: the job finished; its meshes."""

    TYPE: ClassVar[str] = "result"
    JOB: ClassVar[JobRule] = JobRule.OPTIONAL

    meshes: list[ResultMesh]
    """1..max_result_meshes meshes with unique names."""
    job: str | None = None
    """The job (set by the worker; pipelines leave it None)."""

    def _fields(self) -> dict[str, Any]:
        return {"meshes": [mesh.to_fields() for mesh in self.meshes]}

    @classmethod
    def _read(cls, reader: FieldReader, job: str | None, limits: Limits) -> Self:
        meshes = ResultMesh.read_list(reader, limits.max_result_meshes, limits)
        return cls(meshes=meshes, job=job)


@dataclass(frozen=True)
class Error(Message):
    """Server → client: a request was rejected, or a job failed."""

    TYPE: ClassVar[str] = "error"
    JOB: ClassVar[JobRule] = JobRule.OPTIONAL

    code: str
    """An `ErrorCode` value."""
    field: str
    """Path of the offending field, "" when the message as a whole is at fault."""
    message: str
    """One human sentence starting with the field, naming the limit."""
    job: str | None = None
    """The job, or None when the rejected request had no valid job id."""

    def _fields(self) -> dict[str, Any]:
        return {"code": self.code, "field": self.field, "message": self.message}

    @classmethod
    def _read(cls, reader: FieldReader, job: str | None, limits: Limits) -> Self:
        code = as_choice(*reader.take("code"), tuple(ErrorCode))
        error_field = as_text(
            *reader.take("field"), limits.max_name_chars, min_chars=0, multiline=False
        )
        message = as_text(*reader.take("message"), limits.max_text_chars)
        return cls(code=code, field=error_field, message=message, job=job)

    @classmethod
    def of(
        cls, error: ProtocolError, job: str | None = None, limits: Limits = DEFAULT_LIMITS
    ) -> Error:
        """The event for a raised `ProtocolError`, valid for any receiver using `limits`: a
        field path may echo received input, so characters a receiver rejects are escaped and
        texts clipped to their limits."""
        return cls(
            code=error.code if error.code in tuple(ErrorCode) else ErrorCode.INTERNAL,
            field=printable(error.field, multiline=False)[: limits.max_name_chars],
            message=printable(error.message)[: limits.max_text_chars],
            job=job,
        )

    def exception(self) -> ProtocolError:
        """The `ProtocolError` this event describes."""
        return ProtocolError(self.code, self.field, self.message)


@dataclass(frozen=True)
class Cancelled(Message):
    """Server → client: the job stopped because it was cancelled."""

    TYPE: ClassVar[str] = "cancelled"
    JOB: ClassVar[JobRule] = JobRule.OPTIONAL

    job: str | None = None
    """The job."""

    def _fields(self) -> dict[str, Any]:
        return {}

    @classmethod
    def _read(cls, reader: FieldReader, job: str | None, limits: Limits) -> Self:
        return cls(job=job)


@dataclass(frozen=True)
class JobStatus(Message):
    """Server → client: the reply to `Status`, `Cancel`, or `FetchResult` of an unfinished job."""

    TYPE: ClassVar[str] = "job_status"
    JOB: ClassVar[JobRule] = JobRule.REQUIRED

    job: str
    """The job."""
    kind: str
    """A `JobKind` value."""
    state: str
    """A `JobState` value."""
    queue_position: int | None
    """Jobs ahead of it while queued, else None."""
    stage: str | None
    """Stage of the last progress event, or None."""
    step: int
    """Step of the last progress event (0 before any)."""
    total: int
    """Total of the last progress event (0 before any)."""
    created_at: float
    """Unix time the job was accepted."""
    updated_at: float
    """Unix time of its last state change."""

    def _fields(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "state": self.state,
            "queue_position": self.queue_position,
            "stage": self.stage,
            "step": self.step,
            "total": self.total,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }

    @classmethod
    def _read(cls, reader: FieldReader, job: str | None, limits: Limits) -> Self:
        return cls(
            job=check_job_id(job, "job"),
            kind=as_choice(*reader.take("kind"), tuple(JobKind)),
            state=as_choice(*reader.take("state"), tuple(JobState)),
            queue_position=optional(as_int, *reader.take("queue_position"), 0, MAX_INT),
            stage=optional(_label, *reader.take("stage"), limits),
            step=as_int(*reader.take("step"), 0, MAX_INT),
            total=as_int(*reader.take("total"), 0, MAX_INT),
            created_at=as_float(*reader.take("created_at"), 0.0),
            updated_at=as_float(*reader.take("updated_at"), 0.0),
        )

    @property
    def finished(self) -> bool:
        """Whether the job is in a terminal state."""
        return self.state in TERMINAL_STATES


@dataclass(frozen=True)
class JobSummary:
    """One line of a job list."""

    job: str
    """The job id."""
    kind: str
    """A `JobKind` value."""
    state: str
    """A `JobState` value."""
    title: str
    """The job's prompt (compose: the scene prompt or the first box prompt), for display."""
    created_at: float
    """Unix time the job was accepted."""
    updated_at: float
    """Unix time of its last state change."""

    def to_fields(self) -> dict[str, Any]:
        """The summary as JSON fields."""
        return {
            "job": self.job,
            "kind": self.kind,
            "state": self.state,
            "title": self.title,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }

    @classmethod
    def from_fields(cls, value: object, path: str, limits: Limits) -> JobSummary:
        """Read one summary."""
        reader = FieldReader(value, path)
        summary = cls(
            job=check_job_id(*reader.take("job")),
            kind=as_choice(*reader.take("kind"), tuple(JobKind)),
            state=as_choice(*reader.take("state"), tuple(JobState)),
            title=as_text(*reader.take("title"), limits.max_prompt_chars, min_chars=0),
            created_at=as_float(*reader.take("created_at"), 0.0),
            updated_at=as_float(*reader.take("updated_at"), 0.0),
        )
        reader.finish()
        return summary


@dataclass(frozen=True)
class JobList(Message):
    """Server → client: the reply to `ListJobs`."""

    TYPE: ClassVar[str] = "job_list"
    JOB: ClassVar[JobRule] = JobRule.NONE

    jobs: list[JobSummary] = field(default_factory=list)
    """Newest first."""

    def _fields(self) -> dict[str, Any]:
        return {"jobs": [summary.to_fields() for summary in self.jobs]}

    @classmethod
    def _read(cls, reader: FieldReader, job: str | None, limits: Limits) -> Self:
        return cls(
            jobs=list_of(
                JobSummary.from_fields, *reader.take("jobs"), 0, limits.max_list_jobs, limits
            )
        )


JobRequest = GenerateRequest | ComposeRequest | EditRequest
"""A request that creates a job."""

Event = Accepted | Progress | Preview | JobWarning | Result | Error | Cancelled
"""Something that happened to a job, streamed to the client that asked."""

PipelineEvent = Progress | Preview | JobWarning | Result
"""What a pipeline yields."""

JOB_REQUEST_TYPES: tuple[type[Message], ...] = (GenerateRequest, ComposeRequest, EditRequest)
REQUEST_TYPES: tuple[type[Message], ...] = (
    Hello,
    *JOB_REQUEST_TYPES,
    Cancel,
    Status,
    FetchResult,
    ListJobs,
)
EVENT_TYPES: tuple[type[Message], ...] = (
    Accepted,
    Progress,
    Preview,
    JobWarning,
    Result,
    Error,
    Cancelled,
)
REPLY_TYPES: tuple[type[Message], ...] = (ServerInfo, JobStatus, JobList, *EVENT_TYPES)
MESSAGE_TYPES: dict[str, type[Message]] = {cls.TYPE: cls for cls in (*REQUEST_TYPES, *REPLY_TYPES)}
"""Every message class by its header type."""


def decode_message(
    frames: Sequence[bytes], limits: Limits, accepted: Sequence[type[Message]]
) -> Message:
    """Decode frames into whichever of the `accepted` message types their header names."""
    envelope = decode(frames, limits)
    for cls in accepted:
        if envelope.type == cls.TYPE:
            return cls.from_envelope(envelope, limits)
    raise ProtocolError(
        ErrorCode.UNKNOWN_TYPE,
        "type",
        f"type: {envelope.type[:40]!r} is not one of {', '.join(cls.TYPE for cls in accepted)}",
    )


def validate(message: Message, limits: Limits) -> None:
    """Raise `ProtocolError` if `message` would be rejected by a receiver using `limits`."""
    type(message).from_wire(message.to_wire(), limits)


def check_in_vocabulary(request: JobRequest, vocabulary: Mapping[str, Any], model: str) -> None:
    """Raise `ProtocolError` for a prompt that names no shape and no colour a small model knows
    (`vocabulary`: its "shapes", "colours" and "synonyms"); a compose request's scene prompt,
    a style, is not checked. A prompt with some unknown words passes (the server warns)."""
    known = {
        word
        for key in ("shapes", "colours", "synonyms")
        for word in vocabulary.get(key) or ()
        if isinstance(word, str)
    }
    if isinstance(request, ComposeRequest):
        prompts = [
            (box.prompt, join(join("boxes", i), "prompt")) for i, box in enumerate(request.boxes)
        ]
    else:
        prompts = [(request.prompt, "prompt")]
    for prompt, path in prompts:
        if known.isdisjoint(re.findall(r"[a-z]+", prompt.lower())):
            raise ProtocolError(
                ErrorCode.BAD_VALUE,
                path,
                f"{path}: {prompt[:60]!r} names no shape and no colour that {model} knows "
                f"(shapes: {', '.join(vocabulary.get('shapes') or ())}; colours: "
                f"{', '.join(vocabulary.get('colours') or ())}); for open prompts use "
                "--model with a Stable Diffusion checkpoint",
            )


def check_supported(request: JobRequest, info: ServerInfo) -> None:
    """Raise `ProtocolError` unless the server described by `info` offers what `request` asks
    (a prompt for a default model with a small vocabulary must name something it knows)."""
    if request.method not in info.methods:
        raise ProtocolError(
            ErrorCode.UNKNOWN_METHOD,
            "method",
            f"method: {request.method!r} is not offered (this server has "
            f"{', '.join(info.methods)})",
        )
    presets = info.presets.get(request.method, [])
    if request.preset not in presets:
        raise ProtocolError(
            ErrorCode.UNKNOWN_PRESET,
            "preset",
            f"preset: {request.preset!r} is not a preset of {request.method} "
            f"(this server has {', '.join(presets)})",
        )
    if request.model is not None and request.model not in info.models:
        raise ProtocolError(
            ErrorCode.UNKNOWN_MODEL,
            "model",
            f"model: {request.model!r} is not available (this server has "
            f"{', '.join(info.models) or 'no named models'})",
        )
    uses_default = request.model is None or request.model == info.default_model
    if uses_default and info.vocabulary and info.default_model is not None:
        check_in_vocabulary(request, info.vocabulary, info.default_model)


def job_title(request: JobRequest) -> str:
    """A one-line description of a job request, for job lists."""
    if isinstance(request, ComposeRequest):
        return request.scene_prompt or request.boxes[0].prompt
    return request.prompt
