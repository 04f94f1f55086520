"""Every message of the protocol as a typed dataclass with `to_wire()` and `from_wire()`.

Requests go from a client to the server, events and replies from the server to a client.
Each field is declared once, with its reader, JSON type and rule (`protocol.schema.wire`):
that declaration reads it, writes it, and makes its row in PROTOCOL.md. `from_wire` validates
strictly and raises `ProtocolError` naming the field and the limit. The job id of a message
travels in the header, not in the fields (see PROTOCOL.md).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from enum import Enum, StrEnum
from typing import Any, ClassVar, Self

from .errors import ErrorCode, ProtocolError
from .fields import FieldReader, join, printable
from .frames import Envelope, check_job_id, decode, encode
from .glb import inspect_glb
from .limits import Limits
from .schema import (
    Record,
    as_list,
    as_objects,
    blob,
    boolean,
    choice,
    integer,
    json_object,
    label,
    names,
    nullable,
    number,
    read_fields,
    records,
    text,
    unique,
    vector,
    wire,
    write_fields,
)

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
    """Base of all messages: header type, job rule, field encoding and strict decoding (from
    the subclass's `wire` fields), and `check` for rules between fields."""

    TYPE: ClassVar[str]
    JOB: ClassVar[JobRule]

    def to_wire(self) -> list[bytes]:
        """The multipart frames of this message (no validation: see `validate`)."""
        job = getattr(self, "job", None)
        return encode(Envelope(self.TYPE, job, write_fields(self)))

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
        values = read_fields(cls, reader, limits)
        if any(f.name == "job" for f in fields(cls)):  # type: ignore[arg-type]
            job = envelope.job
            values["job"] = check_job_id(job, "job") if cls.JOB is JobRule.REQUIRED else job
        message = cls(**values)
        reader.finish()
        message.check(limits)
        return message

    def check(self, limits: Limits) -> None:
        """Rules between fields (none by default); raise `ProtocolError`."""


NAME = "1..max_name_chars, one line"
"""The rule of every name field (mesh, model, method, preset, stage, client)."""


def _transform(value: object, path: str, limits: Limits) -> tuple[float, ...]:
    matrix = vector(16)(value, path, limits)
    if any(abs(a - b) > 1e-6 for a, b in zip(matrix[12:], (0.0, 0.0, 0.0, 1.0), strict=True)):
        raise ProtocolError(
            ErrorCode.BAD_VALUE,
            path,
            f"{path}: the last row of a row-major affine transform must be 0, 0, 0, 1",
        )
    return matrix


def _png(value: object, path: str, limits: Limits) -> bytes:
    png = blob("max_preview_bytes")(value, path, limits)
    if not png.startswith(PNG_SIGNATURE):
        raise ProtocolError(ErrorCode.BAD_VALUE, path, f"{path}: not a PNG image")
    return png


def _preset_lists(value: object, path: str, limits: Limits) -> dict[str, list[str]]:
    reader = FieldReader(value, path)
    result = {key: names(1, MAX_LISTED)(*reader.take(key), limits) for key in list(value)}  # type: ignore[arg-type]
    reader.finish()
    return result


# ----------------------------------------------------------------------------- records


@dataclass(frozen=True, kw_only=True)
class PromptBox(Record):
    """One box of a compose request: world space, Z up, metres."""

    centre: tuple[float, float, float] = wire(
        vector(3), "3 numbers", "centre, finite", write=as_list
    )
    size: tuple[float, float, float] = wire(
        vector(3),
        "3 numbers",
        "edge lengths along the box's own X, Y, Z, each in [min_box_size, max_box_size]",
        write=as_list,
    )
    yaw_deg: float = wire(
        number(),
        "number",
        "rotation about world Z, degrees (may be absent: 0)",
        may_be_absent=True,
        default=0.0,
    )
    prompt: str = wire(
        text("max_prompt_chars"), "string", "what goes in the box, 1..max_prompt_chars"
    )

    def check(self, path: str, limits: Limits) -> None:
        """Each edge within the box-size limits; the box inside the scene bound after its yaw."""
        size_path = join(path, "size")
        for axis, edge in enumerate(self.size):
            number(limits.min_box_size, limits.max_box_size)(edge, join(size_path, axis), limits)
        self.check_bound(path, limits.scene_bound)

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
            if reach > bound:
                raise ProtocolError(
                    ErrorCode.OUT_OF_RANGE,
                    path,
                    f"{path}: reaches {'xyz'[axis]} = {reach:.3g} m, "
                    f"the scene bound is ±{bound:g} m",
                )


@dataclass(frozen=True)
class _Mesh(Record):
    """A named GLB mesh with its world transform: one mesh of an edit request or of a result."""

    CHECK_FACES: ClassVar[bool]
    """Whether reading checks the GLB's triangle count against max_faces."""

    name: str = wire(label, "string", f"{NAME}; unique within its list")
    glb: bytes = wire(blob("max_mesh_bytes"), "frame", "a GLB file, Z up, metres, ≤ max_mesh_bytes")
    transform: tuple[float, ...] = wire(
        _transform, "16 numbers", "row-major world matrix, last row 0, 0, 0, 1", write=as_list
    )

    def check(self, path: str, limits: Limits) -> None:
        """The GLB container is sound; its triangle count is within max_faces if
        `CHECK_FACES`."""
        glb_path = join(path, "glb")
        faces = inspect_glb(self.glb, glb_path).faces
        if self.CHECK_FACES and faces > limits.max_faces:
            raise ProtocolError(
                ErrorCode.TOO_LARGE,
                glb_path,
                f"{glb_path}: {faces} triangles, limit is {limits.max_faces}",
            )


def meshes(cls: type[_Mesh], max_items: str) -> object:
    """The reader of a `meshes` field: 1..limits.<max_items> meshes with unique names."""

    def read(value: object, path: str, limits: Limits) -> list:
        result = records(cls, 1, max_items)(value, path, limits)
        unique([mesh.name for mesh in result], path, "name")
        return result

    return read


@dataclass(frozen=True)
class MeshInput(_Mesh):
    """One mesh of an edit request, at most max_faces triangles; the result mesh keeps its
    name."""

    CHECK_FACES: ClassVar[bool] = True


@dataclass(frozen=True)
class ResultMesh(_Mesh):
    """One mesh of a result, with a baseColor texture; its GLB container is checked, not its
    triangle count."""

    CHECK_FACES: ClassVar[bool] = False


@dataclass(frozen=True)
class JobSummary(Record):
    """One line of a job list."""

    job: str = wire(lambda value, path, limits: check_job_id(value, path), "string", "the job id")
    kind: str = wire(choice(tuple(JobKind)), "string", "a `JobKind` value")
    state: str = wire(choice(tuple(JobState)), "string", "a `JobState` value")
    title: str = wire(
        text("max_prompt_chars", min_chars=0),
        "string",
        "the job's prompt (compose: the scene prompt or the first box prompt), for display",
    )
    created_at: float = wire(number(0.0), "number", "Unix time the job was accepted")
    updated_at: float = wire(number(0.0), "number", "Unix time of its last state change")


# ----------------------------------------------------------------------------- requests


@dataclass(frozen=True, kw_only=True)
class _JobRequest(Message):
    """The fields every job request shares, declared once."""

    JOB: ClassVar[JobRule] = JobRule.OPTIONAL

    negative_prompt: str = wire(
        text("max_prompt_chars", min_chars=0),
        "string",
        "what to avoid, 0..max_prompt_chars",
        default="",
    )
    method: str = wire(
        label, "string", "one of `ServerInfo.methods` [unknown_method]", default="sds"
    )
    preset: str = wire(
        label, "string", "one of `ServerInfo.presets[method]` [unknown_preset]", default="preview"
    )
    seed: int = wire(integer(0, "max_seed"), "integer", "0..max_seed", default=0)
    model: str | None = wire(
        nullable(label),
        "string or null",
        "one of `ServerInfo.models` [unknown_model]; null: the server's default (method "
        "`clip`: the CLIP, null: the built-in `tiny-clip`)",
        default=None,
    )
    precision: str = wire(
        choice(PRECISIONS),
        "string",
        "precision of the frozen prior: auto, fp32, fp16 or bf16 (may be absent: auto)",
        may_be_absent=True,
        default="auto",
    )
    job: str | None = None
    """Client-chosen job id making the submit idempotent; None lets the server choose."""


@dataclass(frozen=True)
class Hello(Message):
    """Client → server: first message; the reply is `ServerInfo`."""

    TYPE: ClassVar[str] = "hello"
    JOB: ClassVar[JobRule] = JobRule.NONE

    client: str = wire(
        text("max_name_chars", min_chars=0, multiline=False),
        "string",
        "name and version of the client program, 0..max_name_chars, for the log",
        default="",
    )


@dataclass(frozen=True)
class GenerateRequest(_JobRequest):
    """Client → server: make one textured mesh from a prompt."""

    TYPE: ClassVar[str] = "generate"

    prompt: str = wire(text("max_prompt_chars"), "string", "what to make, 1..max_prompt_chars")
    particles: int = wire(
        integer(1, MAX_PARTICLES),
        "integer",
        f"results from this prompt, 1..{MAX_PARTICLES}, from seeds seed, seed + 1, ...; under "
        "VSD they share its LoRA (may be absent: 1)",
        may_be_absent=True,
        default=1,
    )


@dataclass(frozen=True)
class ComposeRequest(_JobRequest):
    """Client → server: a scene of one mesh per prompt box."""

    TYPE: ClassVar[str] = "compose"

    boxes: list[PromptBox] = wire(
        records(PromptBox, 1, "max_boxes"),
        "list of box",
        "1..max_boxes; each inside the scene bound after its yaw [out_of_range, field `boxes[i]`]",
        write=as_objects,
        item=PromptBox,
    )
    scene_prompt: str | None = wire(
        nullable(text("max_prompt_chars")),
        "string or null",
        "prompt for the whole scene (style, setting), 1..max_prompt_chars",
        default=None,
    )
    include_background: bool = wire(
        boolean, "boolean", "also return a background mesh for the scene prompt", default=False
    )


@dataclass(frozen=True)
class EditRequest(_JobRequest):
    """Client → server: repaint or reshape existing meshes from a prompt."""

    TYPE: ClassVar[str] = "edit"

    meshes: list[MeshInput] = wire(
        meshes(MeshInput, "max_meshes"),
        "list of mesh",
        "1..max_meshes, names unique [bad_value]; each ≤ max_faces triangles",
        write=as_objects,
        item=MeshInput,
    )
    prompt: str = wire(text("max_prompt_chars"), "string", "the edit, 1..max_prompt_chars")
    mode: str = wire(
        choice(EDIT_MODES),
        "string",
        "`texture` (surface colour only) or `shape` (geometry too)",
        default="texture",
    )
    region: tuple[float, ...] | None = wire(
        nullable(vector(6)),
        "6 numbers or null",
        "world box x0, y0, z0, x1, y1, z1, each min below its max, to confine the edit",
        write=as_list,
        default=None,
    )

    def check(self, limits: Limits) -> None:
        """Each of the region's minima below its maximum."""
        region = self.region
        if region is None:
            return
        for axis in range(3):
            if not region[axis] < region[axis + 3]:
                name = "xyz"[axis]
                raise ProtocolError(
                    ErrorCode.OUT_OF_RANGE,
                    "region",
                    f"region: {name}0 = {region[axis]:g} must be below "
                    f"{name}1 = {region[axis + 3]:g}",
                )


@dataclass(frozen=True)
class _JobOnly(Message):
    """A message whose only content is the job id in its header."""

    JOB: ClassVar[JobRule] = JobRule.REQUIRED

    job: str
    """The job this message is about."""


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

    limit: int = wire(
        integer(1, "max_list_jobs"), "integer", "1..max_list_jobs, newest jobs first", default=50
    )


# ------------------------------------------------------------------- events and replies


@dataclass(frozen=True)
class ServerInfo(Message):
    """Server → client: the reply to `Hello`."""

    TYPE: ClassVar[str] = "server_info"
    JOB: ClassVar[JobRule] = JobRule.NONE

    server_version: str = wire(label, "string", "BoxDream version of the server")
    protocol_version: int = wire(integer(0, MAX_INT), "integer", "the header's version, 1")
    device: str = wire(
        label,
        "string",
        "the workers' devices, e.g. `cpu` or `cuda:0,cuda:1`; `ray` for a Ray pool",
    )
    models: list[str] = wire(
        names(0, MAX_LISTED), "list of strings", "models a request may name (unique)"
    )
    default_model: str | None = wire(
        nullable(label), "string or null", "model used when a request names none"
    )
    methods: list[str] = wire(
        names(1, MAX_LISTED),
        "list of strings",
        "e.g. `sds`, `vsd`, `sjc`, `clip` (at least one, unique)",
    )
    presets: dict[str, list[str]] = wire(
        _preset_lists, "object", "method → list of preset names; exactly one key per method"
    )
    limits: Limits = wire(
        lambda value, path, limits: Limits.from_wire(value, path),
        "object",
        "the limits this server enforces (the table above), every key present",
        write=lambda limits: limits.to_wire(),
    )
    vocabulary: dict[str, Any] | None = wire(
        json_object,
        "object or null",
        "what the default model knows (free form, e.g. `shapes`, `colours`)",
        default=None,
    )
    model_settings: dict[str, Any] | None = wire(
        json_object,
        "object or null",
        "the default model's `family`, `precision` and preset values in force (free form; may "
        "be absent)",
        may_be_absent=True,
        default=None,
    )

    def check(self, limits: Limits) -> None:
        """Exactly one preset list per method."""
        for method in self.methods:
            if method not in self.presets:
                path = join("presets", method)
                raise ProtocolError(ErrorCode.MISSING_FIELD, path, f"{path}: missing")
        for key in self.presets:
            if key not in self.methods:
                path = join("presets", str(key)[:60])
                raise ProtocolError(ErrorCode.EXTRA_FIELD, path, f"{path}: unknown field")


@dataclass(frozen=True)
class Accepted(Message):
    """Server → client: the reply to a job request that passed validation."""

    TYPE: ClassVar[str] = "accepted"
    JOB: ClassVar[JobRule] = JobRule.REQUIRED

    job: str
    """The job's id (the client's, or one the server chose)."""
    queue_position: int = wire(
        integer(0, MAX_INT),
        "integer",
        "jobs ahead of this one in the queue; 0: it starts next (or has started)",
    )


@dataclass(frozen=True)
class Progress(Message):
    """Server → client (and pipeline → worker): one optimisation step done."""

    TYPE: ClassVar[str] = "progress"
    JOB: ClassVar[JobRule] = JobRule.OPTIONAL

    stage: str = wire(label, "string", 'name of the current stage, e.g. "optimise", "export"')
    step: int = wire(integer(0, MAX_INT), "integer", "steps done in this stage, 0..total")
    total: int = wire(integer(1, MAX_INT), "integer", "steps in this stage, at least 1")
    loss: float | None = wire(nullable(number()), "number or null", "current loss, finite")
    eta_s: float | None = wire(
        nullable(number(0.0)), "number or null", "estimated seconds until the job ends, ≥ 0"
    )
    job: str | None = None
    """The job (set by the worker; pipelines leave it None)."""

    def check(self, limits: Limits) -> None:
        """The step within its stage's total."""
        if self.step > self.total:
            raise ProtocolError(
                ErrorCode.OUT_OF_RANGE, "step", f"step: {self.step} is outside 0..{self.total}"
            )


@dataclass(frozen=True)
class Preview(Message):
    """Server → client: a PNG of the current render."""

    TYPE: ClassVar[str] = "preview"
    JOB: ClassVar[JobRule] = JobRule.OPTIONAL

    step: int = wire(integer(0, MAX_INT), "integer", "the step the render is from")
    png: bytes = wire(_png, "frame", "a PNG image, ≤ max_preview_bytes")
    stage: str = wire(
        label,
        "string",
        'the stage the render shows, as in progress ("optimise", "refine"); absent: "optimise"',
        may_be_absent=True,
        default="optimise",
    )
    job: str | None = None
    """The job (set by the worker; pipelines leave it None)."""


@dataclass(frozen=True)
class JobWarning(Message):
    """Server → client: something the user should know, the job goes on."""

    TYPE: ClassVar[str] = "warning"
    JOB: ClassVar[JobRule] = JobRule.OPTIONAL

    message: str = wire(
        text("max_text_chars"),
        "string",
        "1..max_text_chars, e.g. a prompt word outside the built-in model's vocabulary",
    )
    job: str | None = None
    """The job (set by the worker; pipelines leave it None)."""


@dataclass(frozen=True)
class Result(Message):
    """Server → client: the job finished; its meshes."""

    TYPE: ClassVar[str] = "result"
    JOB: ClassVar[JobRule] = JobRule.OPTIONAL

    meshes: list[ResultMesh] = wire(
        meshes(ResultMesh, "max_result_meshes"),
        "list of mesh",
        "1..max_result_meshes with unique names, each GLB with a baseColor texture",
        write=as_objects,
        item=ResultMesh,
    )
    job: str | None = None
    """The job (set by the worker; pipelines leave it None)."""


@dataclass(frozen=True)
class Error(Message):
    """Server → client: a request was rejected, or a job failed."""

    TYPE: ClassVar[str] = "error"
    JOB: ClassVar[JobRule] = JobRule.OPTIONAL

    code: str = wire(choice(tuple(ErrorCode)), "string", "an error code (table below)")
    field: str = wire(
        text("max_name_chars", min_chars=0, multiline=False),
        "string",
        'path of the offending field, e.g. `boxes[2].size[0]`; "" when the message as a whole '
        "is at fault",
    )
    message: str = wire(
        text("max_text_chars"),
        "string",
        "one human sentence starting with the field, naming the limit",
    )
    job: str | None = None
    """The job, or None when the rejected request had no valid job id."""

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


@dataclass(frozen=True)
class JobStatus(Message):
    """Server → client: the reply to `Status`, `Cancel`, or `FetchResult` of an unfinished job."""

    TYPE: ClassVar[str] = "job_status"
    JOB: ClassVar[JobRule] = JobRule.REQUIRED

    job: str
    """The job."""
    kind: str = wire(choice(tuple(JobKind)), "string", "`generate`, `compose` or `edit`")
    state: str = wire(
        choice(tuple(JobState)),
        "string",
        "`queued`, `running`, `done`, `failed`, `cancelled` or `interrupted`",
    )
    queue_position: int | None = wire(
        nullable(integer(0, MAX_INT)), "integer or null", "jobs ahead of it while queued"
    )
    stage: str | None = wire(nullable(label), "string or null", "stage of the last progress event")
    step: int = wire(
        integer(0, MAX_INT), "integer", "step of the last progress event (0 before any)"
    )
    total: int = wire(
        integer(0, MAX_INT), "integer", "total of the last progress event (0 before any)"
    )
    created_at: float = wire(number(0.0), "number", "Unix time the job was accepted")
    updated_at: float = wire(number(0.0), "number", "Unix time of its last state change")

    @property
    def finished(self) -> bool:
        """Whether the job is in a terminal state."""
        return self.state in TERMINAL_STATES


@dataclass(frozen=True)
class JobList(Message):
    """Server → client: the reply to `ListJobs`."""

    TYPE: ClassVar[str] = "job_list"
    JOB: ClassVar[JobRule] = JobRule.NONE

    jobs: list[JobSummary] = wire(
        records(JobSummary, 0, "max_list_jobs"),
        "list of job summaries",
        "newest first",
        write=as_objects,
        item=JobSummary,
        default_factory=list,
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
