"""ModelTraining: one training run that produces one certified version."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field
from pydantic.config import JsonDict

from certmodel.operator.api.base import ApiModel, Condition, CrdInfo, PrinterColumn, StatusModel

IMMUTABLE: JsonDict = {
    "rule": "self == oldSelf",
    "message": "is part of the recipe and cannot change",
}
RECIPE_PART: JsonDict = {"x-kubernetes-validations": [IMMUTABLE], "default": {}}
"""Recipe sections default to {} on the server, so that the immutability rule always applies."""
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
REL_PATH = r"^[A-Za-z0-9_.][A-Za-z0-9_./-]*$"
"""A path relative to the models volume; '..' segments are refused by a CEL rule as well."""
NO_DOTDOT: JsonDict = {
    "rule": "!self.split('/').exists(s, s == '..')",
    "message": "must stay inside the models volume (no '..' segments)",
}
LABEL_VALUE = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
LabelValue = Annotated[str, Field(max_length=63, pattern=LABEL_VALUE)]
LABEL_KEYS: JsonDict = {
    "x-kubernetes-validations": [
        {
            "rule": "self.all(k, size(k) <= 317 && k.matches("
            "'^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
            "[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$'))",
            "message": "keys must be label keys ([prefix/]name, name at most 63 characters)",
        }
    ]
}
"""Label maps (node selectors, pod selectors): Kubernetes' own key and value rules, so that a
bad selector is refused on apply rather than when the operator creates a Job from it."""
IMAGE_REF = r"^[A-Za-z0-9][A-Za-z0-9._/:@-]*$"


class Dataset(ApiModel):
    """The training data, a file on the models volume."""

    path: str = Field(
        min_length=1,
        max_length=512,
        pattern=REL_PATH,
        description="File path relative to the models volume, e.g. datasets/faq.jsonl.",
        json_schema_extra={"x-kubernetes-validations": [NO_DOTDOT]},
    )
    format: Literal["auto", "jsonl", "text"] = Field(
        default="auto",
        description="jsonl: one JSON object a line ('text', or 'prompt' + 'completion');"
        " text: plain text; auto: by file suffix.",
    )
    text_field: str = Field(
        default="text",
        min_length=1,
        max_length=128,
        description="The JSON field holding the text (jsonl).",
    )


class LoraMethod(ApiModel):
    """LoRA settings (all of them are part of the recipe, and so of the DNA)."""

    type: Literal["lora"] = "lora"
    r: int = Field(default=8, ge=1, le=1024, description="LoRA rank.")
    alpha: float = Field(default=16.0, gt=0, le=4096, description="Scale numerator (alpha / r).")
    dropout: float = Field(default=0.05, ge=0, lt=1)
    target_modules: (
        list[Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.]+$")]]
        | None
    ) = Field(
        default=None,
        max_length=64,
        description="Module name suffixes to adapt; default: the architecture's projections.",
    )


class Hyperparameters(ApiModel):
    """Optimisation settings; maxSteps, when set, overrides epochs."""

    max_steps: int | None = Field(default=None, ge=1, le=10_000_000)
    epochs: int = Field(default=1, ge=1, le=1000)
    learning_rate: float = Field(default=2e-4, gt=0, le=1)
    schedule: Literal["constant", "linear", "cosine"] = "cosine"
    warmup_steps: int = Field(default=0, ge=0, le=10_000_000)
    weight_decay: float = Field(default=0.0, ge=0, le=1)
    max_grad_norm: float = Field(default=1.0, ge=0, le=1000)
    batch_size: int = Field(default=8, ge=1, le=4096, description="Packed sequences per step.")
    grad_accum: int = Field(default=1, ge=1, le=4096, description="Micro-batches per step.")
    max_seq_len: int = Field(default=512, ge=1, le=131072, description="Packed block length.")
    seed: int = Field(default=42, ge=0, le=2**32 - 1)
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    eval_fraction: float = Field(default=0.1, ge=0, lt=0.5, description="Held out for eval loss.")


class Output(ApiModel):
    """What the version holds."""

    merge: bool = Field(
        default=False,
        description="false: LoRA adapter + base-model reference (Option A);"
        " true: merged full model (Option B).",
    )


class Toleration(ApiModel):
    """A pod toleration (subset of core/v1 Toleration)."""

    key: str | None = Field(default=None, max_length=317)
    operator: Literal["Exists", "Equal"] | None = None
    value: LabelValue | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = Field(default=None, ge=0, le=2**31 - 1)


class Resources(ApiModel):
    """What the training pod asks for."""

    gpus: int = Field(default=0, ge=0, le=64, description="nvidia.com/gpu; >1 runs torchrun.")
    cpu: str = Field(default="2", max_length=32, pattern=r"^[0-9]+(\.[0-9]+|m)?$")
    memory: str = Field(default="8Gi", max_length=32, pattern=r"^[0-9]+(Ki|Mi|Gi|Ti|K|M|G|T)?$")
    node_selector: dict[str, LabelValue] | None = Field(
        default=None, max_length=64, json_schema_extra=LABEL_KEYS
    )
    tolerations: list[Toleration] | None = Field(default=None, max_length=32)


class ModelTrainingSpec(ApiModel):
    """The desired training run."""

    certified_model: str = Field(
        min_length=1,
        max_length=63,
        pattern=DNS_LABEL,
        description="The CertifiedModel (model line) that receives the version.",
        json_schema_extra={"x-kubernetes-validations": [IMMUTABLE]},
    )
    base_model: str = Field(
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        description="Base model folder name under base_models/ on the models volume.",
        json_schema_extra={"x-kubernetes-validations": [IMMUTABLE]},
    )
    dataset: Dataset = Field(json_schema_extra={"x-kubernetes-validations": [IMMUTABLE]})
    method: LoraMethod = Field(default_factory=LoraMethod, json_schema_extra=RECIPE_PART)
    hyperparameters: Hyperparameters = Field(
        default_factory=Hyperparameters,
        json_schema_extra={
            "default": {},
            "x-kubernetes-validations": [
                IMMUTABLE,
                {
                    "rule": "!has(self.maxSteps) || !has(self.warmupSteps)"
                    " || self.warmupSteps <= self.maxSteps",
                    "message": "warmupSteps cannot exceed maxSteps",
                },
            ],
        },
    )
    output: Output = Field(default_factory=Output, json_schema_extra=RECIPE_PART)
    resources: Resources = Field(default_factory=Resources, json_schema_extra={"default": {}})
    retries: int = Field(default=2, ge=0, le=20, description="Job backoffLimit.")
    deadline_seconds: int = Field(
        default=86400, ge=60, le=30 * 86400, description="Job activeDeadlineSeconds."
    )
    promote: bool = Field(
        default=False, description="Ask the CertifiedModel to make this version current."
    )
    image: str | None = Field(
        default=None,
        max_length=512,
        pattern=IMAGE_REF,
        description="Runtime image override for the Job.",
    )


Phase = Literal["Pending", "Running", "Succeeded", "Failed"]


class Progress(StatusModel):
    step: int = 0
    total_steps: int = 0
    loss: float | None = None
    tokens_per_second: float | None = None
    eta_seconds: int | None = None
    summary: str = Field(default="", description="e.g. 120/400 (30%).")


class TrainingMetrics(StatusModel):
    train_loss: float | None = None
    eval_loss: float | None = None
    tokens: int | None = None
    duration_seconds: float | None = None


class ModelTrainingStatus(StatusModel):
    """What the operator observed."""

    phase: Phase = "Pending"
    dna: str | None = None
    job_name: str | None = None
    deduplicated: bool | None = Field(
        default=None, description="The version existed already; no Job was run."
    )
    progress: Progress | None = None
    metrics: TrainingMetrics | None = None
    content_digest: str | None = None
    message: str = ""
    start_time: datetime | None = None
    completion_time: datetime | None = None
    observed_generation: int | None = None
    conditions: list[Condition] = Field(default_factory=list)


CRD = CrdInfo(
    kind="ModelTraining",
    plural="modeltrainings",
    singular="modeltraining",
    short_names=["mt"],
    columns=[
        PrinterColumn(name="Model", type="string", json_path=".spec.certifiedModel"),
        PrinterColumn(name="Phase", type="string", json_path=".status.phase"),
        PrinterColumn(name="Progress", type="string", json_path=".status.progress.summary"),
        PrinterColumn(name="Loss", type="number", json_path=".status.progress.loss"),
        PrinterColumn(name="DNA", type="string", json_path=".status.dna"),
        PrinterColumn(name="Job", type="string", json_path=".status.jobName", priority=1),
        PrinterColumn(name="Message", type="string", json_path=".status.message", priority=1),
        PrinterColumn(name="Age", type="date", json_path=".metadata.creationTimestamp"),
    ],
)
