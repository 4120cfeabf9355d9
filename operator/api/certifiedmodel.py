"""CertifiedModel: one model line with its CURRENT pointer (a registered model + alias)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from certmodel.operator.api.base import ApiModel, Condition, CrdInfo, PrinterColumn, StatusModel
from certmodel.operator.api.modeltraining import DNS_LABEL, LABEL_KEYS, LabelValue

DNA_PATTERN = r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?-[a-z0-9]+(-merged)?-[0-9a-f]{12}$"


class Gates(ApiModel):
    """Conditions a version must meet before the Latest policy promotes it."""

    max_eval_loss: float | None = Field(
        default=None, gt=0, description="Promote only versions whose eval loss is at most this."
    )
    require_signature: bool = Field(
        default=False, description="Promote only versions with a valid signature."
    )


class Promotion(ApiModel):
    """How CURRENT is chosen."""

    policy: Literal["Manual", "Latest"] = Field(
        default="Manual",
        description="Manual: CURRENT is spec.promotion.current. Latest: the newest verified"
        " version that passes the gates (ModelTrainings with promote: true).",
    )
    current: str | None = Field(
        default=None,
        max_length=52,
        pattern=DNA_PATTERN,
        description="The DNA to serve (Manual policy). Change it to promote or roll back.",
    )
    gates: Gates = Field(default_factory=Gates, json_schema_extra={"default": {}})


class Canary(ApiModel):
    """Send a share of traffic to another version. Not implemented yet: the field is accepted
    and the line's CanaryApplied condition says it is ignored (every request goes to CURRENT)."""

    dna: str = Field(max_length=52, pattern=DNA_PATTERN)
    percent: int = Field(ge=0, le=100)


class CertifiedModelSpec(ApiModel):
    """The desired state of a model line."""

    base_model: str = Field(
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        description="Base model every version of this line must be built on.",
    )
    pointer_config_map: str | None = Field(
        default=None,
        max_length=253,
        pattern=DNS_LABEL,
        description="Name of the pointer ConfigMap (default: <name>-pointer).",
    )
    promotion: Promotion = Field(default_factory=Promotion, json_schema_extra={"default": {}})
    canary: Canary | None = None
    serving_selector: dict[str, LabelValue] | None = Field(
        default=None,
        max_length=64,
        json_schema_extra=LABEL_KEYS,
        description="Labels of the inference pods that follow this line's pointer (for the"
        " serving-convergence report; default: certmodel.io/model=<name>).",
    )


class VersionStatus(StatusModel):
    dna: str
    created: datetime | None = None
    kind: str | None = None
    eval_loss: float | None = None
    train_loss: float | None = None
    content_digest: str | None = None
    verified: bool = False
    signed: bool | None = None
    training: str | None = Field(default=None, description="The ModelTraining that made it.")
    promote_requested: bool | None = None


class HistoryEntry(StatusModel):
    revision: int
    from_dna: str | None = None
    to_dna: str | None = None
    reason: str = ""
    at: datetime | None = None


class ServingStatus(StatusModel):
    pods: int = 0
    on_current: int = 0
    converged: bool = False
    refused: list[str] = Field(default_factory=list, description="pod: reason, for refusals.")


class CertifiedModelStatus(StatusModel):
    current: str | None = None
    previous: str | None = None
    revision: int | None = None
    pointer_config_map: str | None = None
    versions: list[VersionStatus] = Field(default_factory=list)
    version_count: int = 0
    history: list[HistoryEntry] = Field(default_factory=list)
    serving: ServingStatus | None = None
    message: str = ""
    observed_generation: int | None = None
    conditions: list[Condition] = Field(default_factory=list)


CRD = CrdInfo(
    kind="CertifiedModel",
    plural="certifiedmodels",
    singular="certifiedmodel",
    short_names=["cmod"],
    columns=[
        PrinterColumn(name="Base", type="string", json_path=".spec.baseModel"),
        PrinterColumn(name="Policy", type="string", json_path=".spec.promotion.policy"),
        PrinterColumn(name="Current", type="string", json_path=".status.current"),
        PrinterColumn(name="Versions", type="integer", json_path=".status.versionCount"),
        PrinterColumn(
            name="Ready", type="string", json_path='.status.conditions[?(@.type=="Ready")].status'
        ),
        PrinterColumn(name="Message", type="string", json_path=".status.message", priority=1),
        PrinterColumn(name="Age", type="date", json_path=".metadata.creationTimestamp"),
    ],
)
