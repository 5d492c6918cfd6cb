"""The JSON the service answers with, as pydantic models for ``/openapi.json``.

The routes return the library's own records (``Verdict.to_json()``, scan's lines) unchanged;
these models describe them for clients and schema tests and are never used to re-serialise
them, so a record is byte-for-byte what the CLI prints.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional

from pydantic import BaseModel, ConfigDict, Field


class Error(BaseModel):
    detail: Any = Field(description="One line saying what was wrong (a list for a malformed request)")


class Health(BaseModel):
    status: str


class SourceScore(BaseModel):
    label: str
    probability: Optional[float] = Field(description="null for 'unknown' (under the open-set threshold)")


class Window(BaseModel):
    model_config = ConfigDict(extra="allow")
    verdict: Optional[str] = None
    fake_probability: Optional[float] = None
    source: Optional[SourceScore] = None
    start: Optional[int] = None
    end: Optional[int] = None


class TraceResult(BaseModel):
    """One record of ``mmvgm trace --json`` / ``mmvgm scan`` (README, "Result schema")."""

    model_config = ConfigDict(extra="allow")
    schema_: int = Field(alias="schema", description="Record schema version")
    path: str = Field(description="The uploaded file's name")
    verdict: Optional[str] = Field(None, description="real | fake | not-assessed")
    fake_probability: Optional[float] = None
    source: Optional[SourceScore] = None
    best_source: Optional[SourceScore] = None
    sources: Optional[Dict[str, float]] = None
    frames: Optional[int] = None
    sampling: Optional[str] = None
    padded: Optional[int] = None
    windows: Optional[List[Window]] = None
    aggregation: Optional[str] = None
    windows_requested: Optional[int] = None
    warning: Optional[str] = Field(None, description="What the checkpoint says of itself (synthetic training data)")
    explanation_png: Optional[str] = Field(None, description="With ?explain=true: the saliency PNG, base64")
    error: Optional[str] = None


class JobCreated(BaseModel):
    job: str


class JobStatus(BaseModel):
    job: str
    status: str = Field(description="queued | running | done")
    total: int
    done: int
    errors: int


class ProtectResult(BaseModel):
    report: Dict[str, Any] = Field(description="mmvgm protect's quality report")
    png: str = Field(description="The protected image, PNG, base64")


# The multipart bodies, declared by hand: the routes parse them as a stream (``serve.forms``)
# instead of through FastAPI's form parameters, which hold small uploads whole in memory.
BINARY = {"type": "string", "contentMediaType": "application/octet-stream"}


def _form(properties: Dict[str, Any], required: List[str]) -> Dict[str, Any]:
    schema = {"type": "object", "properties": properties, "required": required}
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}}


TRACE_FORM = _form({"file": {**BINARY, "description": "A video"}}, ["file"])
JOB_FORM = _form({"file": {"type": "array", "items": BINARY, "description": "Videos to scan"},
                  "path": {"type": "array", "items": {"type": "string"},
                           "description": "Server-side files or folders (under --allow-root)"}}, [])


def protect_form(max_steps: int) -> Dict[str, Any]:
    return _form({"image": {**BINARY, "description": "The image to protect"},
                  "target": {**BINARY, "description": "Directed mode: pull toward this image"},
                  "eps": {"type": "string", "description": "L-inf budget, e.g. 4/255 [default: the config's]"},
                  "steps": {"type": "integer", "minimum": 1, "maximum": max_steps,
                            "description": "Attack steps [default: the config's]"},
                  "seed": {"type": "integer", "minimum": 0, "maximum": 2**32 - 1, "description": "Random seed"}},
                 ["image"])
