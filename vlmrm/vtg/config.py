"""The VTG training YAML (``task: vtg_sft`` / ``vtg_grpo``): nested sections (docs/vtg.md, "Task YAML").

    task: vtg_sft                  # or vtg_grpo
    data_config: vtg/data.yaml     # the nested data YAML (vlmrm.vtg.data_config), or the mapping inline
    model: {name_or_path, torch_dtype, attn_implementation}
    lora: {enabled, r, lora_alpha, lora_dropout, target_modules}
    training: {...}                # HF TrainingArguments (SFT) / TRL GRPOConfig (GRPO) keys + run keys
    rl: {algorithm, num_generations, temperature, kl_coef, clip_range, max_completion_length, sft_checkpoint}
    rewards: [{name: temporal_iou, weight: 1.0}, {name: segment_overlap, weight: 0.5, mode: recall}]

Loaded by :func:`vlmrm.core.config.load_config` (nested layout): every section is checked key by
key (unknown keys name their dotted path; ``model`` and ``lora`` are shared with ``grm_sft``),
``training`` by ``HfArgumentParser`` into ``TrainingArguments`` / ``GRPOConfig``. ``data_config``
is the data YAML's path (its own relative paths follow the path rule from its folder) or the
mapping inline. Command-line overrides: ``--key value`` goes to ``training`` unless ``key`` is a
top-level key here (the launcher's ``--use_cpu true --ddp_backend gloo`` land in ``training``), a
dotted ``--model.name_or_path X`` / ``--data_config.video.max_frames 8`` to that section.

``training`` also takes the run-management keys every task shares (``experiment_name``,
``resume_from_checkpoint: latest``, ``load_weights_only``, ``early_stopping_patience``,
``skip_nonfinite_loss``: :mod:`vlmrm.training.run`).

Batch sizes: ``training.per_device_train_batch_size`` / ``per_device_eval_batch_size`` when given,
else the data config's ``dataloader.batch_size`` / ``validation.batch_size``; the data loader's
workers, prefetch and pinning come from ``dataloader`` unless ``training`` sets them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from vlmrm.core.config import AT_LEAST_ONE, NON_NEGATIVE, POSITIVE, ConfigError, Layout, load_config, option
from vlmrm.core.paths import check_directory, check_model_source
from vlmrm.modeling.generation import LoraSection, ModelSection
from vlmrm.training.sft import SFTTrainingArguments
from vlmrm.vtg.data_config import VTGDataConfig

VTG_TASKS = ("vtg_sft", "vtg_grpo")
OUTPUT_ROOT = "outputs"
"""``training.output_dir`` when the YAML sets none: ``outputs/<task>``."""
RewardName = Literal["temporal_iou", "segment_overlap"]


@dataclass
class RLSection:
    algorithm: Literal["grpo", "r1"] = option("grpo", "grpo: TRL GRPOTrainer, loss_type grpo.")
    num_generations: int = option(4, "Completions sampled per prompt (the GRPO group).", bound=AT_LEAST_ONE)
    temperature: float = option(0.7, "Sampling temperature of the completions.", bound=POSITIVE)
    kl_coef: float = option(
        0.05, "KL coefficient beta against the starting policy (0: no reference model).", bound=NON_NEGATIVE
    )
    clip_range: float = option(0.2, "PPO clip range epsilon of the importance ratio.", bound=POSITIVE)
    max_completion_length: int = option(32, "Most tokens generated per completion.", bound=AT_LEAST_ONE)
    sft_checkpoint: str | None = option(
        None, "The vtg_sft output (adapter) to start from; unset: the base model.", path=True
    )

    def __post_init__(self) -> None:
        if self.algorithm == "r1":
            raise ConfigError(
                "rl.algorithm: 'r1' names DeepSeek-R1's recipe, whose policy objective is GRPO itself; use "
                "algorithm: grpo (TRL loss_type 'grpo'). Other objectives (dr_grpo, dapo) go in "
                "training.loss_type."
            )


@dataclass
class RewardEntry:
    name: RewardName = option("temporal_iou", "temporal_iou or segment_overlap.")
    weight: float = option(1.0, "Weight of this reward in the sum GRPO normalises per group.")
    mode: Literal["recall", "precision", "f1"] | None = option(
        None, "segment_overlap only: recall, precision or f1 (default recall)."
    )

    def __post_init__(self) -> None:
        if self.mode is not None and self.name != "segment_overlap":
            raise ConfigError(f"mode: only segment_overlap takes a mode, not {self.name}")


@dataclass
class VTGTaskSections:
    task: Literal["vtg_sft", "vtg_grpo"] = option("vtg_sft", "Which VTG job.")
    data_config: VTGDataConfig | None = option(
        None, "Path of the nested data YAML (vlmrm.vtg.data_config), or the mapping itself.", path=True
    )
    model: ModelSection = field(default_factory=ModelSection, metadata={"help": "Base model."})
    lora: LoraSection = field(default_factory=LoraSection, metadata={"help": "LoRA adapters."})
    training: dict = field(default_factory=dict, metadata={"help": "TrainingArguments / GRPOConfig keys."})
    rl: RLSection = field(default_factory=RLSection, metadata={"help": "GRPO settings."})
    rewards: list[RewardEntry] = field(
        default_factory=lambda: [RewardEntry()], metadata={"help": "GRPO rewards and weights."}
    )
    max_length: int | None = option(
        None,
        "SFT: longest prompt + answer in tokens; longer samples are an error.",
        bound=AT_LEAST_ONE,
    )


@dataclass
class VTGTaskConfig:
    sections: VTGTaskSections
    data: VTGDataConfig
    training: Any  # SFTTrainingArguments or GRPOTrainingArguments (training_class)
    source: str


def training_class(task: str) -> type:
    """TRL's ``GRPOConfig`` for GRPO, HF ``TrainingArguments`` for SFT, each with the run keys
    (TRL imported only for GRPO)."""
    if task == "vtg_grpo":
        from vlmrm.vtg.grpo_trainer import GRPOTrainingArguments

        return GRPOTrainingArguments
    return SFTTrainingArguments


def training_of(sections: VTGTaskSections) -> tuple[type, dict]:
    """The ``training`` class of the task and the defaults its YAML values go over: batch sizes and
    loader settings from the data config, the GRPO settings from ``rl`` and ``rewards``."""
    if not sections.model.name_or_path:
        raise ConfigError("model.name_or_path: required")
    data = sections.data_config
    if data is None:
        raise ConfigError("data_config: required (path of the data YAML or its mapping)")
    defaults = {
        "output_dir": f"{OUTPUT_ROOT}/{sections.task}",
        "per_device_train_batch_size": data.dataloader.batch_size,
        "per_device_eval_batch_size": data.validation.batch_size,
        "dataloader_num_workers": data.dataloader.num_workers,
        "dataloader_pin_memory": data.dataloader.pin_memory,
        "remove_unused_columns": False,
    }
    if data.dataloader.num_workers > 0:
        defaults["dataloader_prefetch_factor"] = data.dataloader.prefetch_factor
    if sections.task == "vtg_grpo":
        rl = sections.rl
        defaults.update(
            num_generations=rl.num_generations,
            temperature=rl.temperature,
            beta=rl.kl_coef,
            epsilon=rl.clip_range,
            loss_type="grpo",
            max_completion_length=rl.max_completion_length,
            reward_weights=[entry.weight for entry in sections.rewards],
        )
    return training_class(sections.task), defaults


LAYOUT = Layout((VTGTaskSections,), training=training_of)


def check_model_paths(sections: VTGTaskSections) -> None:
    """The model (folder or Hub id) and GRPO's SFT checkpoint exist, before anything loads: checked at
    run time, not while parsing, so a config can be read and printed on a machine without them."""
    check_model_source(sections.model.name_or_path, "model.name_or_path")
    if sections.task == "vtg_grpo":
        check_directory(sections.rl.sft_checkpoint, "rl.sft_checkpoint")


def load_vtg_task_config(
    path: str | Path | None = None, overrides: list[str] | None = None, values: dict | None = None
) -> VTGTaskConfig:
    """The whole VTG job: sections, the data config (file or inline) and the training arguments."""
    sections, args = load_config(LAYOUT, path, overrides, values)
    return VTGTaskConfig(sections, sections.data_config, args, str(path) if path is not None else "values")
