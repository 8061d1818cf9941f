"""The settings of one ``caprl train`` run: YAML mapped to typed sections, with ``key=value`` overrides.

>>> cfg = load_config("configs/demo-cpu.yaml", ["optim.max_steps=10", "reward.mode=soft"])   # doctest: +SKIP
>>> cfg.optim.max_steps, cfg.reward.mode                                                      # doctest: +SKIP
(10, 'soft')

Sections follow the jobs of a run: ``model`` (policy, dtype, frozen vision tower, LoRA), ``data`` (dataset, caption
prompts, frame sampling), ``rollout`` (group size, temperature, caption length), ``algorithm`` (advantage and loss,
KL beta), ``optim``, ``reward`` (in-process reader or reward service URLs, and the reward options), ``logging``,
``checkpoint``. Defaults follow CapRL where it is sound: RLOO-style advantages, no KL term, group size 8,
temperature 1.0. Anything else of TRL's ``GRPOConfig`` can be set under ``trl:``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from caprl.errors import ConfigError, MissingInput, describe_validation
from caprl.reward.engine import RewardConfig
from caprl.schema import FrameSampling, Modality


class _Section(BaseModel):
    # A misspelt key in a YAML file should fail loudly, not be ignored.
    model_config = ConfigDict(extra="forbid")


class LoraSettings(_Section):
    r: int = Field(default=16, ge=1)
    alpha: int = Field(default=32, ge=1)
    dropout: float = Field(default=0.05, ge=0, lt=1)
    target_modules: list[str] | str = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"
    """A regex (peft matches it against full module names) or a list of module names; the default adapts the
    language model only, so the vision tower stays as it was."""


class ModelSettings(_Section):
    policy: str
    """Hub id or local directory of the captioner (any VLM whose processor takes ``images=``/``videos=``). No
    default: a config that forgot it must say so, not quietly fetch a hub model the machine may not reach."""
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """``auto``: bfloat16 on a GPU that supports it, float32 otherwise."""
    attn_implementation: str | None = None
    freeze_vision: bool = False
    """Keep the vision tower (and its merger) fixed and train the language model only."""
    lora: LoraSettings | None = None
    gradient_checkpointing: bool = False


class DataSettings(_Section):
    train: str
    """A caprl dataset directory (``caprl synth``, ``caprl data import``) or a samples file."""
    prompt: str | None = None
    """Caption instruction for every sample, replacing each sample's own prompt."""
    prompts: list[str] = Field(default_factory=list)
    """Several instructions: each sample gets one, chosen by a seeded hash of its id (stable across resumes)."""
    system: str | None = None
    modality: Modality | None = None
    """Keep only samples of this modality."""
    frames: FrameSampling | None = None
    """Video frame sampling for every video, replacing each sample's own."""
    max_samples: int | None = Field(default=None, ge=1)
    max_mcqs: int | None = Field(default=None, ge=1)
    """Keep at most this many MCQs per sample (the first ones)."""


class RolloutSettings(_Section):
    num_generations: int = Field(default=8, ge=2)
    """Captions sampled per prompt (the group)."""
    temperature: float = Field(default=1.0, gt=0)
    top_p: float = Field(default=1.0, gt=0, le=1)
    max_completion_length: int = Field(default=1024, ge=1)
    """Longest caption, in policy tokens."""
    repetition_penalty: float = Field(default=1.0, gt=0)


class AlgorithmSettings(_Section):
    advantage: Literal["rloo", "grpo", "dr_grpo"] = "rloo"
    """``rloo``: reward minus the mean of the other captions of the group (CapRL); ``grpo``: minus the group mean,
    divided by the group std; ``dr_grpo``: minus the group mean, not scaled."""
    loss_type: Literal["grpo", "dr_grpo", "dapo", "bnpo", "cispo", "sapo"] = "dapo"
    """How per-token losses are aggregated (TRL's ``loss_type``)."""
    beta: float = Field(default=0.0, ge=0)
    """KL coefficient; 0 (CapRL) loads no reference model."""
    epsilon: float = Field(default=0.2, gt=0)
    epsilon_high: float | None = None
    num_iterations: int = Field(default=1, ge=1)
    mask_truncated_completions: bool = False


class OptimSettings(_Section):
    learning_rate: float = Field(default=1e-6, gt=0)
    lr_scheduler: str = "constant"
    warmup_steps: int = Field(default=0, ge=0)
    weight_decay: float = Field(default=0.0, ge=0)
    max_grad_norm: float = Field(default=1.0, gt=0)
    max_steps: int = Field(default=100, ge=1)
    per_device_train_batch_size: int = Field(default=8, ge=1)
    """Captions (not prompts) per device per micro-step; a step sees ``per_device_train_batch_size *
    gradient_accumulation_steps * devices / num_generations`` prompts."""
    gradient_accumulation_steps: int = Field(default=1, ge=1)


PINNED_OPTIONS = (
    "mode", "n_questions", "question_draw", "unanswerable_option", "length_weight", "length_full_until",
    "length_zero_at", "timestamp_weight", "wrong_penalty", "correctness_weight", "correctness_form", "seed",
)  # fmt: skip
"""What a run sends the service even at its default: the terms that shape what training optimises. The reading
itself (path, prompt, sampling) is the service's unless the config sets it."""


class RewardSettings(RewardConfig):
    """A run's reward: where it is computed (a reward service, or a reader in process) and how — every
    ``RewardConfig`` field can be set here, under the same name, with the same default and check."""

    service: list[str] | str | None = None
    """Reward service URL(s) (``caprl reward serve``); None scores in process with ``reader``."""
    reader: str | None = None
    """Reader for in-process scoring (model id or directory, or an OpenAI-compatible URL)."""
    api_key_env: str | None = None
    """Environment variable holding the service's bearer token."""
    send_media: bool = False
    """Send each item's media path (absolute) with the request, so the service verifies the correctness term claim
    by claim on real media (``caprl reward serve --judge ... --media-root`` holding the data; docs/train.md)."""
    timeout_s: float = Field(default=300.0, gt=0)

    @model_validator(mode="after")
    def _one_source(self) -> RewardSettings:
        if (self.service is None) == (self.reader is None):
            raise ValueError("give exactly one of reward.service (URLs) or reward.reader (in-process scoring)")
        if self.send_media and (self.service is None or not self.correctness_weight):
            raise ValueError(
                "reward.send_media is for a reward service verifying the correctness term on real media: it needs "
                "reward.service and a correctness_weight"
            )
        return self

    def reward_config(self) -> RewardConfig:
        """The ``RewardConfig`` part: what in-process scoring uses."""
        return RewardConfig(**{f: getattr(self, f) for f in RewardConfig.model_fields})

    def options(self) -> dict[str, Any]:
        """The ``RewardConfig`` fields sent to the service with every request: those a run always pins
        (``PINNED_OPTIONS``) and any other the config sets; the rest keep the service's own settings."""
        sent = set(PINNED_OPTIONS) | (self.model_fields_set & set(RewardConfig.model_fields))
        return {f: getattr(self, f) for f in RewardConfig.model_fields if f in sent}

    def urls(self) -> list[str]:
        return [self.service] if isinstance(self.service, str) else list(self.service or [])


class LoggingSettings(_Section):
    report_to: list[str] | Literal["auto", "none"] = "auto"
    """``auto``: TensorBoard, plus Weights & Biases when it is installed and configured (``WANDB_API_KEY`` or
    ``WANDB_MODE``)."""
    sample_captions: int = Field(default=4, ge=0)
    """Captions written to ``samples.jsonl`` per step."""
    logging_steps: int = Field(default=1, ge=1)
    print_logs: bool = True
    """Print TRL's logged values under the progress bar (they are in metrics.jsonl and TensorBoard anyway)."""


class CheckpointSettings(_Section):
    save_steps: int = Field(default=50, ge=1)
    save_total_limit: int | None = Field(default=3, ge=1)
    resume: Literal["auto", "never"] | str = "auto"
    """``auto``: continue from the last checkpoint in the run directory if there is one; ``never``: refuse to
    reuse a directory with checkpoints; a path: resume from that checkpoint."""


class TrainConfig(_Section):
    run_dir: Path
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int | None = Field(default=None, ge=1)
    """Torch intra-op threads (None: torch's default)."""
    model: ModelSettings
    data: DataSettings
    rollout: RolloutSettings = Field(default_factory=RolloutSettings)
    algorithm: AlgorithmSettings = Field(default_factory=AlgorithmSettings)
    optim: OptimSettings = Field(default_factory=OptimSettings)
    reward: RewardSettings
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    checkpoint: CheckpointSettings = Field(default_factory=CheckpointSettings)
    trl: dict[str, Any] = Field(default_factory=dict)
    """Extra ``trl.GRPOConfig`` fields, passed as they are (they win over the values derived above)."""

    @model_validator(mode="after")
    def _batch_holds_groups(self) -> TrainConfig:
        rows = self.optim.per_device_train_batch_size * self.optim.gradient_accumulation_steps
        if rows % self.rollout.num_generations:
            raise ValueError(
                f"optim.per_device_train_batch_size * optim.gradient_accumulation_steps ({rows}) must be a multiple "
                f"of rollout.num_generations ({self.rollout.num_generations}): every step needs whole groups"
            )
        return self


# --- loading and overrides ----------------------------------------------------------------------------------------


def _set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    node = tree
    parts = key.split(".")
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"override {key!r}: {part!r} is not a section")
        node = child
    node[parts[-1]] = value


def apply_overrides(tree: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``section.key=value`` overrides; values are parsed as YAML (``1e-5``, ``true``, ``[a, b]``, ``null``)."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} is not of the form key=value (e.g. optim.max_steps=10)")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"override {item!r}: the value is not valid YAML ({_yaml_problem(exc)})") from None
        _set_dotted(tree, key.strip(), value)
    return tree


def _yaml_problem(exc: yaml.YAMLError) -> str:
    return getattr(exc, "problem", None) or str(exc).splitlines()[0]


def _read_yaml(path: str | Path) -> dict[str, Any]:
    """The mapping in a YAML file; a missing file, bad encoding or syntax error is a ``ConfigError`` with the file
    and the 1-based line."""
    p = Path(path)
    if not p.is_file():
        raise MissingInput(f"--config {path}: no such file")
    try:
        loaded = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{where}: not valid YAML ({_yaml_problem(exc)})") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: a config file must hold a mapping, got {type(loaded).__name__}")
    return loaded


def load_config(path: str | Path | None = None, overrides: Sequence[str] = (), **base: Any) -> TrainConfig:
    """A config from a YAML file (relative paths inside it stay as written) with overrides applied on top. Any
    problem is a ``ConfigError`` naming the file, line or field (``optim.max_steps: ...``)."""
    tree: dict[str, Any] = dict(base)
    if path is not None:
        tree.update(_read_yaml(path))
    tree = apply_overrides(tree, overrides)
    for section in ("model", "data", "reward"):  # so a missing one is reported by its field (model.policy: required)
        tree.setdefault(section, {})
    try:
        return TrainConfig.model_validate(tree)
    except ValidationError as exc:
        missing = [".".join(map(str, e["loc"])) for e in exc.errors() if e["type"] == "missing"]
        hint = f"set it in the config file, or add {missing[0]}=... to the command" if missing else None
        where = f"{path}: " if path is not None else ""
        raise ConfigError(f"{where}{describe_validation(exc, limit=6)}", hint=hint) from None


def dump_config(cfg: TrainConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
