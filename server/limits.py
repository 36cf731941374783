"""What one request may ask of an engine (:class:`Limits`; the engines
validate against them), and the strict base of every settings section.
The rest of the settings, which say how the engines are served, live with
the deployments (``deployments/settings.py``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class StrictModel(BaseModel):
    """A settings section that rejects unknown keys (a typo in a YAML fails loudly)."""

    model_config = ConfigDict(extra="forbid")


class Limits(StrictModel):
    """Bounds on what one request may ask for; violations are INVALID_ARGUMENT."""

    max_request_bytes: int = Field(
        4 * 1024 * 1024,
        ge=64 * 1024,
        description="largest request (and response) message Ray's gRPC proxy accepts; larger ones get "
        "RESOURCE_EXHAUSTED from gRPC before they are read",
    )
    max_input_chars: int = Field(20_000, ge=1, description="characters of request text")
    max_generation_input_tokens: int = Field(512, ge=1, description="prompt tokens for Generate")
    max_detection_input_tokens: int = Field(4096, ge=1, description="tokens for DetectReplacements, over all windows")
    max_new_tokens: int = Field(512, ge=1)
    max_num_beams: int = Field(8, ge=1)
    max_num_return_sequences: int = Field(8, ge=1)
    max_stop_sequences: int = Field(8, ge=0)
    max_stop_sequence_chars: int = Field(64, ge=1)
    max_top_logprobs: int = Field(10, ge=0, le=10, description="alternatives per generated token")
    max_suggestions: int = Field(10, ge=0, le=10, description="suggestions per replaced word")
