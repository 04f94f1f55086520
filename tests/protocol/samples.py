"""Real sample payloads for tests: a tiny PNG, a tiny GLB, one valid message of every type."""

from __future__ import annotations

import json
import struct
import zlib

from protocol.limits import Limits
from protocol.messages import (
    IDENTITY,
    Accepted,
    Cancel,
    Cancelled,
    ComposeRequest,
    EditRequest,
    Error,
    FetchResult,
    GenerateRequest,
    Hello,
    JobList,
    JobStatus,
    JobSummary,
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
    Status,
)

JOB = "0123456789abcdef0123456789abcdef"


def make_png(width: int = 4, height: int = 4, rgb: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    """A valid RGB PNG of one colour."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    row = b"\x00" + bytes(rgb) * width
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(row * height))
        + chunk(b"IEND", b"")
    )


def make_glb(triangles: int = 1) -> bytes:
    """A valid GLB 2.0 file with `triangles` unindexed triangles."""
    positions = b"".join(struct.pack("<9f", 0, 0, i, 1, 0, i, 0, 1, i) for i in range(triangles))
    document = {
        "asset": {"version": "2.0"},
        "buffers": [{"byteLength": len(positions)}],
        "bufferViews": [{"buffer": 0, "byteOffset": 0, "byteLength": len(positions)}],
        "accessors": [
            {
                "bufferView": 0,
                "componentType": 5126,
                "count": 3 * triangles,
                "type": "VEC3",
                "min": [0, 0, 0],
                "max": [1, 1, max(triangles - 1, 0)],
            }
        ],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0}}]}],
        "nodes": [{"mesh": 0}],
        "scenes": [{"nodes": [0]}],
        "scene": 0,
    }
    text = json.dumps(document).encode()
    text += b" " * (-len(text) % 4)
    binary = positions + b"\x00" * (-len(positions) % 4)
    body = (
        struct.pack("<II", len(text), 0x4E4F534A)
        + text
        + struct.pack("<II", len(binary), 0x004E4942)
        + binary
    )
    return struct.pack("<4sII", b"glTF", 2, 12 + len(body)) + body


INFO_FIELDS = {
    "models": ["tiny-shapes"],
    "default_model": "tiny-shapes",
    "methods": ["sds", "vsd", "sjc"],
    "presets": {method: ["preview", "standard", "high"] for method in ("sds", "vsd", "sjc")},
    "vocabulary": None,
}
"""What the scripted pipeline's server advertises: it takes any prompt (no vocabulary)."""

SMALL_VOCABULARY = {"shapes": ["cube", "sphere"], "colours": ["red", "blue"]}
"""A small model's vocabulary, for the submit-time check of out-of-world prompts."""


def sample_messages() -> list[Message]:
    """One or more valid instances of every message type."""
    glb = make_glb()
    return [
        Hello(client="tests 1.0"),
        Hello(),
        GenerateRequest(prompt="a red cube"),
        GenerateRequest(
            prompt="a blue sphere",
            negative_prompt="blurry",
            method="vsd",
            preset="high",
            seed=2**32 - 1,
            model="tiny-shapes",
            precision="bf16",
            particles=8,
            job=JOB,
        ),
        ComposeRequest(
            boxes=[
                PromptBox(
                    centre=(0.0, 0.0, 0.5), size=(1.0, 1.0, 1.0), yaw_deg=0.0, prompt="a table"
                ),
                PromptBox(
                    centre=(2.0, -1.0, 0.4), size=(0.5, 0.5, 0.8), yaw_deg=30.0, prompt="a chair"
                ),
            ],
            scene_prompt="a cosy kitchen",
            include_background=True,
            seed=7,
        ),
        EditRequest(
            meshes=[
                MeshInput(name="Cube", glb=glb, transform=IDENTITY),
                MeshInput(name="Cube.001", glb=make_glb(2), transform=IDENTITY),
            ],
            prompt="make it wooden",
            mode="shape",
            region=(-1.0, -1.0, -1.0, 1.0, 1.0, 1.0),
        ),
        Cancel(job=JOB),
        Status(job=JOB),
        FetchResult(job=JOB),
        ListJobs(limit=10),
        ServerInfo(
            server_version="0.1.0",
            protocol_version=1,
            device="cuda:0,cuda:1",
            models=["tiny-shapes"],
            default_model="tiny-shapes",
            methods=["sds", "vsd"],
            presets={"sds": ["preview"], "vsd": ["preview", "high"]},
            limits=Limits(),
            vocabulary={"shapes": ["cube"]},
        ),
        Accepted(job=JOB, queue_position=3),
        Progress(stage="coarse", step=5, total=100, loss=0.25, eta_s=12.5, job=JOB),
        Progress(stage="export", step=0, total=1, loss=None, eta_s=None),
        Preview(step=5, png=make_png(), job=JOB),
        JobWarning(message="'dragon' is not in the built-in model's vocabulary", job=JOB),
        Result(
            meshes=[
                ResultMesh(name="box0", glb=glb, transform=IDENTITY),
                ResultMesh(name="box1", glb=make_glb(3), transform=IDENTITY),
            ],
            job=JOB,
        ),
        Error(code="too_large", field="prompt", message="prompt: 412 characters, limit is 300"),
        Error(code="internal", field="", message="boom", job=JOB),
        Cancelled(job=JOB),
        JobStatus(
            job=JOB,
            kind="generate",
            state="running",
            queue_position=None,
            stage="coarse",
            step=3,
            total=10,
            created_at=1700000000.0,
            updated_at=1700000001.5,
        ),
        JobList(
            jobs=[
                JobSummary(
                    job=JOB,
                    kind="compose",
                    state="done",
                    title="a kitchen",
                    created_at=1.0,
                    updated_at=2.0,
                )
            ]
        ),
        JobList(),
    ]
