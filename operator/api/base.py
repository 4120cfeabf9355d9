"""Shared pieces of the API models: camelCase field names, conditions, CRD metadata hooks."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


class ApiModel(BaseModel):
    """Base of every API model: camelCase on the wire, snake_case in Python, unknown fields
    refused (the API server prunes them anyway; refusing here catches typos in tests)."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )

    def wire(self) -> dict[str, Any]:
        """The object as the API server stores it (camelCase, no unset optionals)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class StatusModel(ApiModel):
    """Status models tolerate fields they do not know: a newer operator may have written them."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True
    )


ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(StatusModel):
    """A Kubernetes-style condition (the shape kstatus and Argo CD read)."""

    type: str = Field(description="Condition type, e.g. Ready.")
    status: ConditionStatus
    reason: str = Field(default="", description="One CamelCase word a machine can match.")
    message: str = Field(default="", description="What happened, in words a user can act on.")
    observed_generation: int | None = Field(
        default=None, description="The spec generation this condition was computed for."
    )
    last_transition_time: datetime | None = None


class PrinterColumn(BaseModel):
    """An additionalPrinterColumns entry."""

    name: str
    type: Literal["string", "integer", "number", "boolean", "date"]
    json_path: str
    description: str = ""
    priority: int = 0


class CrdInfo(BaseModel):
    """What a kind's CRD needs beyond its schema."""

    kind: str
    plural: str
    singular: str
    short_names: list[str]
    categories: list[str] = Field(default_factory=lambda: ["certmodel"])
    columns: list[PrinterColumn]
    spec_validations: list[dict[str, str]] = Field(default_factory=list)
    max_name_length: int | None = Field(
        default=63,
        description="Limit on metadata.name beyond the API server's own 253: the operator"
        " puts an object's name into label values, which hold at most 63 characters.",
    )
