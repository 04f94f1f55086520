"""Every message round-trips; every validation rule has a rejecting case."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from protocol.errors import ProtocolError
from protocol.limits import Limits
from protocol.messages import (
    IDENTITY,
    MESSAGE_TYPES,
    Accepted,
    Cancel,
    ComposeRequest,
    EditRequest,
    Error,
    GenerateRequest,
    Hello,
    JobList,
    JobStatus,
    JobWarning,
    ListJobs,
    MeshInput,
    Message,
    Preview,
    Progress,
    PromptBox,
    Result,
    ResultMesh,
    ServerInfo,
    check_supported,
    decode_message,
    validate,
)
from tests.protocol.samples import JOB, SMALL_VOCABULARY, make_glb, make_png, sample_messages

ALL_TYPES = tuple(MESSAGE_TYPES.values())


@pytest.mark.parametrize("message", sample_messages(), ids=lambda m: type(m).__name__)
def test_round_trip(message: Message) -> None:
    frames = message.to_wire()
    assert type(message).from_wire(frames) == message
    assert decode_message(frames, Limits(), ALL_TYPES) == message


def test_samples_cover_every_message_type() -> None:
    assert {type(m).TYPE for m in sample_messages()} == set(MESSAGE_TYPES)


def test_binary_fields_travel_as_frames_not_base64() -> None:
    glb = make_glb()
    frames = Result(meshes=[ResultMesh("a", glb, IDENTITY)], job=JOB).to_wire()
    assert frames[1] == glb
    assert json.loads(frames[0])["fields"]["meshes"][0]["glb"] == {"$frame": 1}


GEN = GenerateRequest(prompt="a red cube")
BOX = PromptBox(centre=(0.0, 0.0, 0.0), size=(1.0, 1.0, 1.0), yaw_deg=0.0, prompt="a box")
COMPOSE = ComposeRequest(boxes=[BOX])
MESH = MeshInput(name="Cube", glb=make_glb(), transform=IDENTITY)
EDIT = EditRequest(meshes=[MESH], prompt="paint it blue")
PROGRESS = Progress(stage="coarse", step=1, total=10, loss=0.5, eta_s=3.0, job=JOB)
RESULT = Result(meshes=[ResultMesh(name="object", glb=make_glb(), transform=IDENTITY)], job=JOB)
INFO = next(m for m in sample_messages() if isinstance(m, ServerInfo))
STATUS = next(m for m in sample_messages() if isinstance(m, JobStatus))
JOBLIST = next(m for m in sample_messages() if isinstance(m, JobList) and m.jobs)


def with_fields(message: Message, change: Callable[[dict[str, Any]], object]) -> list[bytes]:
    """The message's frames with its JSON fields edited by `change`."""
    frames = message.to_wire()
    header = json.loads(frames[0])
    change(header["fields"])
    return [json.dumps(header).encode(), *frames[1:]]


def with_header(message: Message, change: Callable[[dict[str, Any]], object]) -> list[bytes]:
    """The message's frames with its whole JSON header edited by `change`."""
    frames = message.to_wire()
    header = json.loads(frames[0])
    change(header)
    return [json.dumps(header).encode(), *frames[1:]]


def setter(path: str, value: object) -> Callable[[dict[str, Any]], None]:
    """Set a dotted/indexed path like "boxes.0.size.1" in the fields."""

    def change(fields: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = fields
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return change


def deleter(name: str) -> Callable[[dict[str, Any]], None]:
    return lambda fields: fields.pop(name)


def raw(text: str, *blobs: bytes) -> list[bytes]:
    return [text.encode(), *blobs]


def header(type_: str, fields: str, job: str = "null", v: str = "1") -> str:
    return f'{{"v":{v},"type":"{type_}","job":{job},"fields":{fields}}}'


SMALL = Limits(max_mesh_bytes=200, max_faces=1, max_message_bytes=10_000, max_header_bytes=500)
TINY_PREVIEW = Limits(max_preview_bytes=40)

CASES: list[tuple[str, list[bytes], str, str, str, Limits]] = [
    # name, frames, code, field, fragment of the message, limits
    # --- framing and header
    ("no frames", [], "bad_frame", "message", "no frames", Limits()),
    ("not utf-8", [b"\xff\xfe"], "bad_frame", "header", "UTF-8", Limits()),
    ("not json", raw("{nope"), "bad_frame", "header", "JSON", Limits()),
    ("not an object", raw("[1,2]"), "bad_frame", "header", "object", Limits()),
    ("duplicate key", raw('{"v":1,"v":1}'), "bad_frame", "header", "duplicate", Limits()),
    (
        "too deep",
        raw("[" * 5000 + "]" * 5000),
        "bad_frame",
        "header",
        "nested too deeply",
        Limits(),
    ),
    (
        "too many values",
        raw("[" * 100_000 + "]" * 100_000),
        "too_large",
        "header",
        "100001 values, limit is 10000",
        Limits(),
    ),
    (
        "deep nesting",
        raw(header("hello", '{"client":' + "[" * 40 + "]" * 40 + "}")),
        "bad_frame",
        "fields",
        "nested",
        Limits(),
    ),
    (
        "missing version",
        raw('{"type":"hello","job":null,"fields":{}}'),
        "missing_field",
        "v",
        "missing",
        Limits(),
    ),
    (
        "wrong version",
        raw(header("hello", '{"client":""}', v="2")),
        "bad_version",
        "v",
        "version 2",
        Limits(),
    ),
    (
        "version not int",
        raw(header("hello", '{"client":""}', v='"1"')),
        "wrong_type",
        "v",
        "integer",
        Limits(),
    ),
    (
        "extra header key",
        with_header(Hello(), setter("extra", 1)),
        "extra_field",
        "extra",
        "unknown field",
        Limits(),
    ),
    (
        "missing type",
        with_header(Hello(), lambda h: h.pop("type")),
        "missing_field",
        "type",
        "missing",
        Limits(),
    ),
    ("unknown type", raw(header("make_coffee", "{}")), "unknown_type", "type", "coffee", Limits()),
    ("fields not object", raw(header("hello", "[]")), "wrong_type", "fields", "object", Limits()),
    ("message too large", [b"{}", b"x" * 20_000], "too_large", "message", "limit is 10000", SMALL),
    (
        "header too large",
        raw(header("hello", '{"client":"' + "x" * 600 + '"}')),
        "too_large",
        "header",
        "limit is 500",
        SMALL,
    ),
    (
        "unreferenced frame",
        [Hello().to_wire()[0], b"stray"],
        "bad_frame",
        "message",
        "not referenced",
        Limits(),
    ),
    (
        "frame used twice",
        raw(header("preview", '{"step":1,"png":{"$frame":1},"x":{"$frame":1}}'), make_png()),
        "bad_frame",
        "fields.x",
        "twice",
        Limits(),
    ),
    (
        "frame out of range",
        raw(header("preview", '{"step":1,"png":{"$frame":2}}'), make_png()),
        "bad_frame",
        "fields.png",
        "does not exist",
        Limits(),
    ),
    (
        "frame ref extra key",
        raw(header("preview", '{"step":1,"png":{"$frame":1,"a":2}}'), make_png()),
        "bad_frame",
        "fields.png",
        "only",
        Limits(),
    ),
    (
        "frame ref not int",
        raw(header("preview", '{"step":1,"png":{"$frame":"1"}}'), make_png()),
        "bad_frame",
        "fields.png",
        "integer",
        Limits(),
    ),
    (
        "bad job id",
        with_header(Cancel(job=JOB), setter("job", "../../etc/passwd")),
        "bad_value",
        "job",
        "not a job id",
        Limits(),
    ),
    (
        "job id wrong type",
        with_header(Cancel(job=JOB), setter("job", 7)),
        "wrong_type",
        "job",
        "job id",
        Limits(),
    ),
    (
        "job required",
        with_header(Cancel(job=JOB), setter("job", None)),
        "missing_field",
        "job",
        "needs a job id",
        Limits(),
    ),
    (
        "job forbidden",
        with_header(Hello(), setter("job", JOB)),
        "bad_value",
        "job",
        "must be null",
        Limits(),
    ),
    # --- generate
    (
        "prompt too long",
        GenerateRequest(prompt="x" * 412).to_wire(),
        "too_large",
        "prompt",
        "prompt: 412 characters, limit is 300",
        Limits(),
    ),
    (
        "prompt empty",
        GenerateRequest(prompt="").to_wire(),
        "out_of_range",
        "prompt",
        "empty",
        Limits(),
    ),
    (
        "prompt blank",
        GenerateRequest(prompt="   ").to_wire(),
        "out_of_range",
        "prompt",
        "empty",
        Limits(),
    ),
    (
        "prompt control",
        GenerateRequest(prompt="a\x00b").to_wire(),
        "bad_value",
        "prompt",
        "U+0000",
        Limits(),
    ),
    (
        "prompt wrong type",
        with_fields(GEN, setter("prompt", 5)),
        "wrong_type",
        "prompt",
        "string",
        Limits(),
    ),
    (
        "negative too long",
        replace(GEN, negative_prompt="n" * 301).to_wire(),
        "too_large",
        "negative_prompt",
        "limit is 300",
        Limits(),
    ),
    (
        "seed negative",
        replace(GEN, seed=-1).to_wire(),
        "out_of_range",
        "seed",
        "0..4294967295",
        Limits(),
    ),
    (
        "seed too big",
        replace(GEN, seed=2**32).to_wire(),
        "out_of_range",
        "seed",
        "outside",
        Limits(),
    ),
    (
        "seed bool",
        with_fields(GEN, setter("seed", True)),
        "wrong_type",
        "seed",
        "integer",
        Limits(),
    ),
    (
        "seed float",
        with_fields(GEN, setter("seed", 1.5)),
        "wrong_type",
        "seed",
        "integer",
        Limits(),
    ),
    (
        "seed string",
        with_fields(GEN, setter("seed", "1")),
        "wrong_type",
        "seed",
        "integer",
        Limits(),
    ),
    (
        "seed huge",
        with_fields(GEN, setter("seed", 10**40)),
        "out_of_range",
        "seed",
        "a 41-digit integer is outside 0..4294967295",
        Limits(),
    ),
    (
        "method wrong type",
        with_fields(GEN, setter("method", 1)),
        "wrong_type",
        "method",
        "string",
        Limits(),
    ),
    (
        "method empty",
        replace(GEN, method="").to_wire(),
        "out_of_range",
        "method",
        "empty",
        Limits(),
    ),
    (
        "method too long",
        replace(GEN, method="m" * 300).to_wire(),
        "too_large",
        "method",
        "limit is 256",
        Limits(),
    ),
    (
        "preset newline",
        replace(GEN, preset="pre\nview").to_wire(),
        "bad_value",
        "preset",
        "control",
        Limits(),
    ),
    (
        "model wrong type",
        with_fields(GEN, setter("model", 3)),
        "wrong_type",
        "model",
        "string",
        Limits(),
    ),
    (
        "missing field",
        with_fields(GEN, deleter("seed")),
        "missing_field",
        "seed",
        "missing",
        Limits(),
    ),
    (
        "extra field",
        with_fields(GEN, setter("colour", "red")),
        "extra_field",
        "colour",
        "unknown field",
        Limits(),
    ),
    # --- compose
    (
        "no boxes",
        ComposeRequest(boxes=[]).to_wire(),
        "out_of_range",
        "boxes",
        "at least 1",
        Limits(),
    ),
    (
        "too many boxes",
        ComposeRequest(boxes=[BOX] * 9).to_wire(),
        "too_large",
        "boxes",
        "9 items, limit is 8",
        Limits(),
    ),
    (
        "boxes not list",
        with_fields(COMPOSE, setter("boxes", {})),
        "wrong_type",
        "boxes",
        "list",
        Limits(),
    ),
    (
        "box not object",
        with_fields(COMPOSE, setter("boxes.0", 3)),
        "wrong_type",
        "boxes[0]",
        "object",
        Limits(),
    ),
    (
        "box outside bound",
        ComposeRequest(boxes=[replace(BOX, centre=(9.8, 0.0, 0.0), yaw_deg=45.0)]).to_wire(),
        "out_of_range",
        "boxes[0]",
        "scene bound is ±10 m",
        Limits(),
    ),
    (
        "box below bound",
        ComposeRequest(boxes=[replace(BOX, centre=(0.0, 0.0, -9.9))]).to_wire(),
        "out_of_range",
        "boxes[0]",
        "z",
        Limits(),
    ),
    (
        "centre NaN",
        ComposeRequest(boxes=[replace(BOX, centre=(float("nan"), 0.0, 0.0))]).to_wire(),
        "not_finite",
        "boxes[0].centre[0]",
        "NaN",
        Limits(),
    ),
    (
        "centre inf",
        ComposeRequest(boxes=[replace(BOX, centre=(0.0, float("-inf"), 0.0))]).to_wire(),
        "not_finite",
        "boxes[0].centre[1]",
        "Infinity",
        Limits(),
    ),
    (
        "centre overflow",
        [with_fields(COMPOSE, setter("boxes.0.centre.2", "X"))[0].replace(b'"X"', b"1e999")],
        "not_finite",
        "boxes[0].centre[2]",
        "inf",
        Limits(),
    ),
    (
        "centre length",
        with_fields(COMPOSE, setter("boxes.0.centre", [0, 0])),
        "wrong_type",
        "boxes[0].centre",
        "3 numbers",
        Limits(),
    ),
    (
        "centre string",
        with_fields(COMPOSE, setter("boxes.0.centre.0", "0")),
        "wrong_type",
        "boxes[0].centre[0]",
        "number",
        Limits(),
    ),
    (
        "size too small",
        ComposeRequest(boxes=[replace(BOX, size=(1.0, 0.01, 1.0))]).to_wire(),
        "out_of_range",
        "boxes[0].size[1]",
        "[0.05, 20]",
        Limits(),
    ),
    (
        "size too big",
        ComposeRequest(boxes=[replace(BOX, size=(25.0, 1.0, 1.0))]).to_wire(),
        "out_of_range",
        "boxes[0].size[0]",
        "outside",
        Limits(),
    ),
    (
        "yaw NaN",
        ComposeRequest(boxes=[replace(BOX, yaw_deg=float("nan"))]).to_wire(),
        "not_finite",
        "boxes[0].yaw_deg",
        "NaN",
        Limits(),
    ),
    (
        "box prompt too long",
        ComposeRequest(boxes=[replace(BOX, prompt="p" * 301)]).to_wire(),
        "too_large",
        "boxes[0].prompt",
        "301 characters",
        Limits(),
    ),
    (
        "box missing prompt",
        with_fields(COMPOSE, lambda f: f["boxes"][0].pop("prompt")),
        "missing_field",
        "boxes[0].prompt",
        "missing",
        Limits(),
    ),
    (
        "box extra field",
        with_fields(COMPOSE, setter("boxes.0.colour", "red")),
        "extra_field",
        "boxes[0].colour",
        "unknown",
        Limits(),
    ),
    (
        "scene prompt type",
        with_fields(COMPOSE, setter("scene_prompt", 1)),
        "wrong_type",
        "scene_prompt",
        "string",
        Limits(),
    ),
    (
        "scene prompt long",
        replace(COMPOSE, scene_prompt="s" * 301).to_wire(),
        "too_large",
        "scene_prompt",
        "limit is 300",
        Limits(),
    ),
    (
        "background not bool",
        with_fields(COMPOSE, setter("include_background", 1)),
        "wrong_type",
        "include_background",
        "true or false",
        Limits(),
    ),
    # --- edit
    (
        "no meshes",
        replace(EDIT, meshes=[]).to_wire(),
        "out_of_range",
        "meshes",
        "at least 1",
        Limits(),
    ),
    (
        "too many meshes",
        replace(EDIT, meshes=[replace(MESH, name=f"m{i}") for i in range(9)]).to_wire(),
        "too_large",
        "meshes",
        "limit is 8",
        Limits(),
    ),
    (
        "glb too large",
        replace(EDIT, meshes=[replace(MESH, glb=make_glb(10))]).to_wire(),
        "too_large",
        "meshes[0].glb",
        "bytes, limit is 200",
        SMALL,
    ),
    (
        "too many faces",
        replace(EDIT, meshes=[replace(MESH, glb=make_glb(2))]).to_wire(),
        "too_large",
        "meshes[0].glb",
        "2 triangles, limit is 1",
        Limits(max_faces=1),
    ),
    (
        "glb garbage",
        replace(EDIT, meshes=[replace(MESH, glb=b"not a mesh at all!!!")]).to_wire(),
        "bad_mesh",
        "meshes[0].glb",
        "magic",
        Limits(),
    ),
    (
        "glb not a frame",
        with_fields(EDIT, setter("meshes.0.glb", "Z2xURg=="))[:1],
        "wrong_type",
        "meshes[0].glb",
        "binary frame",
        Limits(),
    ),
    (
        "duplicate names",
        replace(EDIT, meshes=[MESH, MESH]).to_wire(),
        "bad_value",
        "meshes[1].name",
        "used twice",
        Limits(),
    ),
    (
        "name empty",
        replace(EDIT, meshes=[replace(MESH, name="")]).to_wire(),
        "out_of_range",
        "meshes[0].name",
        "empty",
        Limits(),
    ),
    (
        "name newline",
        replace(EDIT, meshes=[replace(MESH, name="a\nb")]).to_wire(),
        "bad_value",
        "meshes[0].name",
        "U+000A",
        Limits(),
    ),
    (
        "transform length",
        replace(EDIT, meshes=[replace(MESH, transform=IDENTITY[:15])]).to_wire(),
        "wrong_type",
        "meshes[0].transform",
        "16 numbers",
        Limits(),
    ),
    (
        "transform not affine",
        replace(
            EDIT, meshes=[replace(MESH, transform=(*IDENTITY[:12], 0.0, 0.0, 1.0, 1.0))]
        ).to_wire(),
        "bad_value",
        "meshes[0].transform",
        "0, 0, 0, 1",
        Limits(),
    ),
    (
        "transform NaN",
        replace(EDIT, meshes=[replace(MESH, transform=(float("nan"), *IDENTITY[1:]))]).to_wire(),
        "not_finite",
        "meshes[0].transform[0]",
        "NaN",
        Limits(),
    ),
    (
        "region order",
        replace(EDIT, region=(0.0, 0.0, 1.0, 1.0, 1.0, 0.5)).to_wire(),
        "out_of_range",
        "region",
        "z0 = 1 must be below z1 = 0.5",
        Limits(),
    ),
    (
        "region length",
        with_fields(EDIT, setter("region", [0, 0, 0, 1, 1])),
        "wrong_type",
        "region",
        "6 numbers",
        Limits(),
    ),
    (
        "mode unknown",
        replace(EDIT, mode="paint").to_wire(),
        "bad_value",
        "mode",
        "texture, shape",
        Limits(),
    ),
    # --- small requests
    (
        "hello client type",
        with_fields(Hello(), setter("client", [])),
        "wrong_type",
        "client",
        "string",
        Limits(),
    ),
    ("list limit zero", ListJobs(limit=0).to_wire(), "out_of_range", "limit", "1..1000", Limits()),
    (
        "list limit big",
        ListJobs(limit=5000).to_wire(),
        "out_of_range",
        "limit",
        "outside",
        Limits(),
    ),
    (
        "cancel extra field",
        with_fields(Cancel(job=JOB), setter("now", True)),
        "extra_field",
        "now",
        "unknown",
        Limits(),
    ),
    # --- events
    (
        "accepted negative",
        Accepted(job=JOB, queue_position=-1).to_wire(),
        "out_of_range",
        "queue_position",
        "outside",
        Limits(),
    ),
    (
        "step above total",
        replace(PROGRESS, step=11).to_wire(),
        "out_of_range",
        "step",
        "0..10",
        Limits(),
    ),
    (
        "total zero",
        replace(PROGRESS, step=0, total=0).to_wire(),
        "out_of_range",
        "total",
        "1..",
        Limits(),
    ),
    (
        "loss NaN",
        replace(PROGRESS, loss=float("nan")).to_wire(),
        "not_finite",
        "loss",
        "NaN",
        Limits(),
    ),
    (
        "eta negative",
        replace(PROGRESS, eta_s=-1.0).to_wire(),
        "out_of_range",
        "eta_s",
        "-1",
        Limits(),
    ),
    (
        "stage empty",
        replace(PROGRESS, stage="").to_wire(),
        "out_of_range",
        "stage",
        "empty",
        Limits(),
    ),
    (
        "preview not png",
        Preview(step=1, png=b"GIF89a....").to_wire(),
        "bad_value",
        "png",
        "not a PNG",
        Limits(),
    ),
    (
        "preview too large",
        Preview(step=1, png=make_png(16, 16)).to_wire(),
        "too_large",
        "png",
        "limit is 40",
        TINY_PREVIEW,
    ),
    (
        "warning empty",
        JobWarning(message="").to_wire(),
        "out_of_range",
        "message",
        "empty",
        Limits(),
    ),
    (
        "warning long",
        JobWarning(message="w" * 2001).to_wire(),
        "too_large",
        "message",
        "limit is 2000",
        Limits(),
    ),
    ("result empty", Result(meshes=[]).to_wire(), "out_of_range", "meshes", "at least 1", Limits()),
    (
        "result too many",
        Result(meshes=[replace(RESULT.meshes[0], name=f"m{i}") for i in range(17)]).to_wire(),
        "too_large",
        "meshes",
        "limit is 16",
        Limits(),
    ),
    (
        "result bad glb",
        Result(meshes=[replace(RESULT.meshes[0], glb=make_glb()[:-4])]).to_wire(),
        "bad_mesh",
        "meshes[0].glb",
        "header says",
        Limits(),
    ),
    (
        "result duplicate",
        Result(meshes=[RESULT.meshes[0]] * 2).to_wire(),
        "bad_value",
        "meshes[1].name",
        "twice",
        Limits(),
    ),
    (
        "error unknown code",
        Error(code="oops", field="", message="m").to_wire(),
        "bad_value",
        "code",
        "not one of",
        Limits(),
    ),
    (
        "error empty message",
        Error(code="internal", field="", message="").to_wire(),
        "out_of_range",
        "message",
        "empty",
        Limits(),
    ),
    (
        "status bad state",
        replace(STATUS, state="sleeping").to_wire(),
        "bad_value",
        "state",
        "queued",
        Limits(),
    ),
    (
        "status bad kind",
        replace(STATUS, kind="bake").to_wire(),
        "bad_value",
        "kind",
        "generate",
        Limits(),
    ),
    (
        "status negative time",
        replace(STATUS, created_at=-5.0).to_wire(),
        "out_of_range",
        "created_at",
        "-5",
        Limits(),
    ),
    (
        "job list bad id",
        with_fields(JOBLIST, setter("jobs.0.job", "xyz")),
        "bad_value",
        "jobs[0].job",
        "not a job id",
        Limits(),
    ),
    (
        "info missing preset",
        with_fields(INFO, lambda f: f["presets"].pop("vsd")),
        "missing_field",
        "presets.vsd",
        "missing",
        Limits(),
    ),
    (
        "info extra preset",
        with_fields(INFO, setter("presets.sjc", ["preview"])),
        "extra_field",
        "presets.sjc",
        "unknown",
        Limits(),
    ),
    (
        "info no methods",
        with_fields(INFO, setter("methods", [])),
        "out_of_range",
        "methods",
        "at least 1",
        Limits(),
    ),
    (
        "info duplicate model",
        with_fields(INFO, setter("models", ["a", "a"])),
        "bad_value",
        "models[1]",
        "twice",
        Limits(),
    ),
    (
        "info limits missing",
        with_fields(INFO, lambda f: f["limits"].pop("max_boxes")),
        "missing_field",
        "limits.max_boxes",
        "missing",
        Limits(),
    ),
    (
        "info limits zero",
        with_fields(INFO, setter("limits.max_boxes", 0)),
        "out_of_range",
        "limits.max_boxes",
        "outside",
        Limits(),
    ),
    (
        "info limits box sizes",
        with_fields(INFO, setter("limits.min_box_size", 50.0)),
        "out_of_range",
        "limits.min_box_size",
        "above",
        Limits(),
    ),
    (
        "info vocabulary list",
        with_fields(INFO, setter("vocabulary", [])),
        "wrong_type",
        "vocabulary",
        "object or null",
        Limits(),
    ),
]


@pytest.mark.parametrize(
    ("frames", "code", "field", "fragment", "limits"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_rejects(frames: list[bytes], code: str, field: str, fragment: str, limits: Limits) -> None:
    with pytest.raises(ProtocolError) as caught:
        decode_message(frames, limits, ALL_TYPES)
    error = caught.value
    assert (error.code, error.field) == (code, field), error.message
    assert fragment in error.message
    assert error.message.startswith(field), "the message names the field first"


def test_request_only_decoder_rejects_events() -> None:
    with pytest.raises(ProtocolError) as caught:
        decode_message(PROGRESS.to_wire(), Limits(), (GenerateRequest, Hello))
    assert caught.value.code == "unknown_type"


def test_from_wire_of_another_type() -> None:
    with pytest.raises(ProtocolError) as caught:
        GenerateRequest.from_wire(Hello().to_wire())
    assert caught.value.code == "unknown_type"


def test_validate_uses_the_given_limits() -> None:
    validate(GEN, Limits())
    with pytest.raises(ProtocolError, match="limit is 5"):
        validate(GEN, Limits(max_prompt_chars=5))


def test_encoding_rejects_values_json_cannot_hold() -> None:
    with pytest.raises(ProtocolError) as caught:
        Progress(stage="s", step=1, total=2, loss=object(), eta_s=None).to_wire()  # type: ignore[arg-type]
    assert (caught.value.code, caught.value.field) == ("wrong_type", "fields.loss")


def test_box_rotation_counts_toward_the_bound() -> None:
    long_box = PromptBox(centre=(9.0, 0.0, 0.0), size=(1.0, 0.1, 1.0), yaw_deg=0.0, prompt="a")
    validate(ComposeRequest(boxes=[long_box]), Limits())
    with pytest.raises(ProtocolError, match="reaches y"):
        validate(
            ComposeRequest(boxes=[replace(long_box, centre=(0.0, 9.7, 0.0), yaw_deg=90.0)]),
            Limits(),
        )


@pytest.mark.parametrize(
    ("request_", "code", "field"),
    [
        (replace(GEN, method="dreamfusion"), "unknown_method", "method"),
        (replace(GEN, method="sds", preset="ultra"), "unknown_preset", "preset"),
        (replace(GEN, model="sd-2.1"), "unknown_model", "model"),
    ],
    ids=["method", "preset", "model"],
)
def test_check_supported(request_: GenerateRequest, code: str, field: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        check_supported(request_, INFO)
    assert (caught.value.code, caught.value.field) == (code, field)
    assert caught.value.message.startswith(field)


def test_error_event_and_exception_convert() -> None:
    error = ProtocolError("too_large", "prompt", "prompt: 412 characters, limit is 300")
    event = Error.of(error, JOB)
    assert event.job == JOB
    again = event.exception()
    assert (again.code, again.field, str(again)) == (error.code, error.field, error.message)


def test_precision_and_particles_are_optional_on_the_wire_and_checked() -> None:
    request = GenerateRequest(prompt="a red cube", precision="fp16", particles=3)
    assert GenerateRequest.from_wire(request.to_wire()) == request

    def drop(fields: dict[str, Any]) -> None:
        del fields["precision"], fields["particles"]

    old = GenerateRequest.from_wire(with_fields(request, drop))
    assert (old.precision, old.particles) == ("auto", 1)
    for change, field, fragment in [
        (setter("precision", "fp8"), "precision", "not one of auto, fp32, fp16, bf16"),
        (setter("particles", 9), "particles", "outside 1..8"),
        (setter("particles", 0), "particles", "outside 1..8"),
    ]:
        with pytest.raises(ProtocolError, match=fragment) as caught:
            GenerateRequest.from_wire(with_fields(request, change))
        assert caught.value.field == field


def test_a_prompt_outside_a_small_models_world_is_refused_at_submit() -> None:
    info = replace(INFO, default_model="tiny-shapes", vocabulary=SMALL_VOCABULARY)
    with pytest.raises(ProtocolError) as caught:
        check_supported(GenerateRequest(prompt="a weathered bronze statue of a fox"), info)
    error = caught.value
    assert (error.code, error.field) == ("bad_value", "prompt")
    assert "tiny-shapes knows (shapes: cube, sphere; colours: red, blue)" in error.message
    assert "--model with a Stable Diffusion checkpoint" in error.message
    check_supported(GenerateRequest(prompt="a shiny red teapot"), info)  # a colour it knows
    check_supported(GenerateRequest(prompt="a fox", model="sd"), replace(info, models=["sd"]))
    check_supported(GenerateRequest(prompt="a fox"), replace(info, vocabulary=None))
    box = PromptBox(centre=(0.0, 0.0, 0.5), size=(1.0, 1.0, 1.0), yaw_deg=0.0, prompt="a fox")
    scene = ComposeRequest(boxes=[replace(box, prompt="a cube"), box], scene_prompt="a forest")
    with pytest.raises(ProtocolError) as caught:
        check_supported(scene, info)
    assert caught.value.field == "boxes[1].prompt"


def test_error_of_echoed_input_passes_validation() -> None:
    """A field path echoing a received key (control characters, a lone surrogate) and an
    overlong message still make an `Error` every receiver accepts."""
    limits = Limits(max_name_chars=20, max_text_chars=50)
    error = ProtocolError("extra_field", "\u008e\ud800.key", "\u008e\ud800: unknown field " * 9)
    event = Error.of(error, JOB, limits)
    validate(event, limits)
    assert event.field == "\\u008e\\ud800.key"
    assert len(event.message) == 50 and event.message.startswith("\\u008e\\ud800: unknown")
    assert Error.of(ProtocolError("no_such_code", "", "m")).code == "internal"


def test_protocol_page_field_tables_are_the_declarations() -> None:
    """PROTOCOL.md's field tables are generated from the `wire` declarations (one source)."""
    from protocol import document

    assert document.main([]) == 0, "run python -m protocol.document --write"
    page = document.PAGE.read_text(encoding="utf-8")
    for message_type in ("generate", "compose", "edit", "server_info", "progress", "job_list"):
        assert document.field_table(message_type) in page
    assert "| `boxes[i].size` | 3 numbers |" in document.field_table("compose")
