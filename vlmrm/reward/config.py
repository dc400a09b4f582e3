"""Typed configuration: one dataclass per concern, loaded from YAML through ``HfArgumentParser``.

A run is described by three dataclasses — :class:`ModelConfig`, :class:`DataConfig` and
:class:`RewardTrainingArguments` (a ``transformers.TrainingArguments`` subclass) — so every key a
VideoAlign / HF Trainer user knows keeps its name and meaning. YAML values and command-line
overrides go through the same argparse parser, which is why ``learning_rate: 1e-5`` (a *string* to
PyYAML) still arrives as a float and why ``train_rm.py cfg.yaml --learning_rate 5e-6`` works.
Unknown keys are errors that name the key and suggest the closest valid one: a typo must never be
silently ignored. Loaded by :func:`vlmrm.core.config.load_config` (flat layout), which holds the
override grammar and the path rule for the fields marked ``path=True`` (the backbone, ``init_from``,
the data files and folders).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from transformers import TrainingArguments

from vlmrm.core.config import (
    AT_LEAST_ONE,
    AT_LEAST_TWO,
    NON_NEGATIVE,
    POSITIVE,
    PROBABILITY_BELOW_ONE,
    Bound,
    ConfigError,
    Layout,
    as_str_list,
    load_config,
    option,
)
from vlmrm.core.paths import check_directory, check_file, check_model_source
from vlmrm.media.sampling import (
    DEFAULT_MAX_FRAME_PIXELS,
    DEFAULT_VIDEO_FPS,
    FPS_MAX_FRAMES,
    FPS_MIN_FRAMES,
)
from vlmrm.pairs.labels import IMAGE_PAIR_SUFFIXES
from vlmrm.reward.templates import read_template_file
from vlmrm.reward.videoalign_flags import translate_videoalign
from vlmrm.training.run import RunArguments

TIE_K_BOUND = Bound(1, low_open=True)
"""Rao-Kupper k: P(tie) = (k^2 - 1) e^(r_A + r_B) / ((e^r_A + k e^r_B)(k e^r_A + e^r_B)) is a
probability above 0 only for k > 1 (docs/reward_math.md)."""


@dataclass
class ModelConfig:
    """Backbone, reward head, freezing and LoRA options (VideoAlign names)."""

    task: Literal["reward_model"] = option(
        "reward_model",
        "The job this YAML runs (vlmrm.cli.tasks); vtg_sft / vtg_grpo / grm_sft YAMLs have their own layout.",
    )
    model_name_or_path: str | None = option(None, "Local path or hub id of the Qwen-VL backbone.", path=True)
    model_revision: str | None = option(
        None, "Hub revision (branch, tag or commit) of model_name_or_path; unset = the hub's default."
    )
    torch_dtype: Literal["auto", "bfloat16", "float16", "float32"] = option(
        "auto", "dtype the backbone is loaded in; 'auto' follows bf16/fp16 of the training arguments."
    )
    attn_implementation: Literal["sdpa", "flash_attention_2", "eager"] = option(
        "sdpa", "Attention kernel; flash_attention_2 needs the flash-attn package."
    )
    output_dim: int | None = option(
        None,
        "Outputs of the reward head: len(eval_dim); with reward_token=special 1 (a head shared by the "
        "dimensions' tokens, default) or len(eval_dim) (token d reads output d). Unset = derived.",
        bound=AT_LEAST_ONE,
    )
    use_special_tokens: bool = option(False, "Add one reward token per dimension, e.g. <|VQ_reward|>.")
    reward_token: Literal["last", "mean", "special"] = option(
        "last",
        "Where the reward is read: last non-pad token, masked mean over tokens, or the special tokens.",
    )
    reward_head: Literal["linear", "mlp"] = option(
        "linear", "Reward head: linear hidden->output_dim, or a 2-layer MLP."
    )
    freeze_vision_tower: bool = option(False, "Freeze the ViT (not the merger).", aliases=["freeze_vit"])
    freeze_llm: bool = option(False, "Freeze the language model.")
    tune_merger: bool = option(False, "Train the vision->LLM merger even when the vision tower is frozen.")
    lora_enable: bool = option(False, "Train LoRA adapters on the LLM instead of its full weights.")
    vision_lora: bool = option(False, "Also put LoRA adapters on the vision tower.")
    lora_r: int = option(64, "LoRA rank.", bound=AT_LEAST_ONE)
    lora_alpha: int = option(128, "LoRA alpha.", bound=POSITIVE)
    lora_dropout: float = option(0.05, "LoRA dropout.", bound=PROBABILITY_BELOW_ONE)
    lora_namespan_exclude: list[str] = option(
        ["lm_head", "rm_head", "embed_tokens"], "Module name fragments never wrapped with LoRA."
    )
    num_lora_modules: int = option(-1, "LoRA on the last N matching modules; -1 = all.")
    use_rslora: bool = option(
        False, "Rank-stabilised LoRA (PEFT's use_rslora): adapters scaled by lora_alpha / sqrt(r), not / r."
    )
    lora_modules_to_save: list[str] | None = option(
        None,
        "With lora_enable: more modules trained in full and saved with the adapters (PEFT's "
        "modules_to_save), besides the reward head and the vision parts vlmrm adds itself.",
    )
    init_from: str | None = option(
        None,
        "Start from an existing vlmrm reward checkpoint (its weights, head and reward tokens).",
        path=True,
    )

    def __post_init__(self) -> None:
        self.lora_namespan_exclude = as_str_list(self.lora_namespan_exclude, "lora_namespan_exclude")
        if self.lora_modules_to_save is not None:
            self.lora_modules_to_save = as_str_list(self.lora_modules_to_save, "lora_modules_to_save")


@dataclass
class DataConfig:
    """Where the preference data lives and how videos are sampled (qwen-vl-utils rules)."""

    meta_data: str | None = option(
        None, "Training data: CSV video pairs or JSONL image pairs.", aliases=["dataset_path"], path=True
    )
    meta_data_test: str | None = option(None, "Held-out CSV in the same format.", path=True)
    eval_split_ratio: float | None = option(
        None,
        "No meta_data_test: hold out ceil(ratio x pairs) training pairs (at least 1), drawn with the run's "
        "seed, for evaluation (VideoAlign's conduct_eval split is 0.02); the counts are logged and written "
        "to eval_results.json.",
        bound=Bound(0, 1, low_open=True, high_open=True),
    )
    data_dir: str | None = option(
        None,
        "Folder the CSV's relative video paths are resolved against; unset = the CSV's folder.",
        path=True,
    )
    restrict_paths: bool = option(
        False,
        "Every media path of a data file (CSV videos, JSONL images) must resolve, after '..' and symlinks, "
        "inside data_dir (image_dir for images; unset = the data file's folder); one outside is a "
        "validation problem of its line.",
    )
    eval_dim: list[str] = option(["VQ", "MQ", "TA"], "Label columns to learn, one reward each (1..N).")
    use_tied_data: bool = option(
        True, "Keep tie ('same') labels; false drops rows whose every selected dimension is a tie."
    )
    prompt_template_type: str = option(
        "simple",
        "Prompt template name (vlmrm.reward.templates): none, simple, video_score, detailed, ...; vlmrm's "
        "own wording, not VideoAlign's texts of the same names (only none is the same).",
    )
    prompt_template_file: str | None = option(
        None,
        "Text file used as the prompt template instead of prompt_template_type: {prompt}, {dimensions} and "
        "{reward_token:DIM} are filled in (docs/videoalign_checkpoints.md); the text is stored in the checkpoint.",
        path=True,
    )
    video_position: Literal["before_text", "after_text"] = option(
        "before_text", "Where the video sits in the user turn: before the prompt (VideoAlign) or after it."
    )
    fps: float = option(
        DEFAULT_VIDEO_FPS,
        "Frames sampled per second of video (ignored if num_frames is set).",
        bound=POSITIVE,
    )
    num_frames: int | None = option(
        None, "Sample exactly this many frames per video instead of by fps.", bound=AT_LEAST_TWO
    )
    min_frames: int = option(
        FPS_MIN_FRAMES, "Fewest frames sampled per video when sampling by fps.", bound=AT_LEAST_ONE
    )
    max_frames: int = option(
        FPS_MAX_FRAMES, "Most frames sampled per video when sampling by fps.", bound=AT_LEAST_ONE
    )
    max_frame_pixels: int | None = option(
        DEFAULT_MAX_FRAME_PIXELS,
        "Max pixels per frame (VideoAlign's 448*448 = 200704); qwen-vl-utils' caps apply on top: "
        "768 tokens x factor^2 and total_pixels / frames x 2. 0 = those caps alone (qwen-vl-utils).",
        bound=NON_NEGATIVE,
    )
    min_frame_pixels: int | None = option(
        None,
        "Min pixels per frame; null = qwen-vl-utils' 128 tokens x factor^2 of the model family "
        "(100352 for Qwen2/2.5-VL, 131072 for Qwen3-VL).",
        bound=AT_LEAST_ONE,
    )
    total_pixels: int | None = option(
        None,
        "Pixel budget of a whole video (qwen-vl-utils' total_pixels): a frame gets at most "
        "total_pixels / frames x 2; null = qwen-vl-utils' 0.9 x 128000 tokens x factor^2.",
        bound=AT_LEAST_ONE,
    )
    frame_rounding: Literal["floor", "round"] = option(
        "floor",
        "Frame count by fps to the temporal patch: floor (qwen-vl-utils 0.0.14) or round "
        "(VideoAlign's copy: 31 frames at 8 fps, fps 2 -> 8 instead of 6). Stored in checkpoints.",
    )
    short_video: Literal["error", "all_frames"] = option(
        "error",
        "A clip with fewer frames than min_frames or num_frames (rounded to 2): error names it; "
        "all_frames samples every frame it has, floored to even (qwen-vl-utils for min_frames).",
    )
    sample_type: Literal["uniform", "random"] = option(
        "uniform", "uniform: evenly spaced frames; random: one random frame per equal segment."
    )
    video_backend: Literal["auto", "decord", "pyav", "torchcodec"] = option(
        "auto", "Video decoder; auto = torchcodec if it works, else decord, else PyAV."
    )
    cache_videos_in_memory: bool = option(
        False, "Keep decoded frames in RAM after first use (small data sets; uniform sampling only)."
    )
    frame_cache_dir: str | None = option(
        None,
        "Keep decoded, resized frames on local disk here (vlmrm.media.frame_cache), keyed by file and "
        "every sampling parameter; fill ahead with python -m vlmrm.data.precache. Uniform sampling only.",
    )
    frame_cache_max_gb: float = option(
        50.0,
        "Frame cache size limit in GiB; least-recently-used entries are deleted beyond it.",
        bound=POSITIVE,
    )
    data_format: Literal[
        "auto",
        "video_pairs",
        "chosen_rejected",
        "ranking",
        "image_preference",
        "trl",
        "llamafactory_sharegpt",
        "llamafactory_alpaca",
    ] = option(
        "auto",
        "auto: .csv = video pairs, .jsonl / .json = image pairs with the schema detected per record "
        "(vlmrm's, TRL's or LLaMA-Factory's, vlmrm.pairs.external_formats); or force one.",
    )
    image_dir: str | None = option(
        None, "Folder relative image paths of JSONL data resolve against (default: its folder).", path=True
    )
    max_train_samples: int | None = option(
        None, "Train on the first N pairs only (None = all).", bound=AT_LEAST_ONE
    )
    use_irrelevant_queries: bool = option(
        False, "Image data: add irrelevant-query pairs (matched image above an unrelated one, same text)."
    )
    num_irrelevant_pairs: int = option(
        1,
        "Irrelevant pairs per sample (training with use_irrelevant_queries; evaluation always, when > 0).",
        bound=NON_NEGATIVE,
    )
    margin_score_columns: str | None = option(
        None,
        "Per-pair margins for loss_type margin: the CSV's score column names as a pattern with {side} "
        "(A, B) and {dim}, e.g. MOS_{side}_{dim} (VideoAlign's); m = margin_scale * y * (s_A - s_B) per "
        "pair and dimension. Unset = the fixed margin.",
    )
    on_bad_sample: Literal["error", "skip"] = option(
        "error",
        "A bad row / line or media file stops the run before training (error) or is skipped and counted.",
    )
    validate_decode: Literal["header", "sampled", "all"] = option(
        "header",
        "How much of each video validation decodes before training: header = probe frame count, rate, "
        "size and a truncated index; sampled = also decode the frames training samples; all = decode "
        "every frame (damage in the middle of a stream).",
    )
    min_pixels: int | None = option(None, "Min pixels of an image input (images only).", bound=AT_LEAST_ONE)
    max_pixels: int | None = option(None, "Max pixels of an image input (images only).", bound=AT_LEAST_ONE)

    def is_image_data(self, path: str | None = None) -> bool:
        """JSONL image pairs (by suffix, or a JSONL schema named in ``data_format``) vs CSV video pairs."""
        if self.data_format != "auto":
            return self.data_format != "video_pairs"
        return Path(path or self.meta_data or "").suffix.lower() in IMAGE_PAIR_SUFFIXES

    def image_size(self) -> dict | None:
        """Qwen-VL image-processor size bounds from ``min_pixels`` / ``max_pixels`` (None: its defaults)."""
        if self.min_pixels is None and self.max_pixels is None:
            return None
        size = {}
        if self.min_pixels is not None:
            size["shortest_edge"] = self.min_pixels
        if self.max_pixels is not None:
            size["longest_edge"] = self.max_pixels
        return size

    def prompt_template_text(self) -> str | None:
        """The text of ``prompt_template_file`` (None without one); a ConfigError names a missing or
        placeholder-less file."""
        if self.prompt_template_file is None:
            return None
        try:
            return read_template_file(self.prompt_template_file)
        except (OSError, ValueError) as error:
            raise ConfigError(f"prompt_template_file: {error}") from error

    def __post_init__(self) -> None:
        self.eval_dim = as_str_list(self.eval_dim, "eval_dim")
        self.prompt_template_text()
        if self.is_image_data() and len(self.eval_dim) != 1:
            raise ConfigError(
                f"eval_dim: image-pair data carries one preference per pair; give one name, got {self.eval_dim}"
            )
        if not self.eval_dim:
            raise ConfigError("eval_dim: list at least one label column")
        if len(set(self.eval_dim)) != len(self.eval_dim):
            raise ConfigError(f"eval_dim: repeated dimension in {self.eval_dim}")
        if self.eval_split_ratio is not None and self.meta_data_test:
            raise ConfigError("eval_split_ratio: give meta_data_test or eval_split_ratio, not both")
        if self.min_frames > self.max_frames:
            raise ConfigError(f"min_frames ({self.min_frames}) > max_frames ({self.max_frames})")
        if self.max_frame_pixels == 0:  # YAML null is "not given"; 0 asks for qwen-vl-utils' caps alone
            self.max_frame_pixels = None
        if (
            self.min_frame_pixels is not None
            and self.max_frame_pixels is not None
            and self.min_frame_pixels > self.max_frame_pixels
        ):
            raise ConfigError(
                f"min_frame_pixels ({self.min_frame_pixels}) > max_frame_pixels ({self.max_frame_pixels})"
            )


BEST_MODEL_METRIC = "accuracy_mean"
"""Default for load_best_model_at_end / early stopping: mean held-out accuracy over the dimensions."""


@dataclass
class RewardTrainingArguments(RunArguments, TrainingArguments):
    """``TrainingArguments`` plus the reward-model options of VideoAlign and TRL's RewardConfig, and
    the run-management keys every task shares (:class:`vlmrm.training.run.RunArguments`)."""

    loss_type: Literal["bt", "btt", "margin", "reg"] = option(
        "btt", "bt: Bradley-Terry; btt: BT with ties (Rao-Kupper); margin: BT with a margin; reg: MSE."
    )
    tie_k: float = option(5.0, "Rao-Kupper tie parameter k > 1 of the btt loss.", bound=TIE_K_BOUND)
    learn_tie_k: bool = option(False, "btt: learn one k > 1 per dimension (starting at tie_k).")
    margin: float = option(
        0.5,
        "Fixed margin m of the margin loss (used unless the data has margin_score_columns).",
        bound=NON_NEGATIVE,
    )
    margin_scale: float = option(
        1.0,
        "Margin loss with margin_score_columns: per pair and dimension m = margin_scale * y * (s_A - s_B) (the preferred side's score minus the other's, as VideoAlign).",
        bound=POSITIVE,
    )
    merger_lr: float | None = option(
        None, "Learning rate of the merger; unset = learning_rate.", bound=POSITIVE
    )
    vision_lr: float | None = option(
        None, "Learning rate of the vision tower; unset = learning_rate.", bound=POSITIVE
    )
    special_token_lr: float | None = option(
        None, "Learning rate of the reward-token embeddings.", bound=POSITIVE
    )
    head_lr: float | None = option(
        None, "Learning rate of the reward head; unset = learning_rate.", bound=POSITIVE
    )
    merge_pair_forward: bool = option(
        True, "Run both videos of each pair through one forward (pad to a common length, split after)."
    )
    logging_epochs: float | None = option(
        None,
        "Log every this fraction of an epoch (overrides logging_steps).",
        bound=POSITIVE,
    )
    eval_epochs: float | None = option(
        None,
        "Evaluate every this fraction of an epoch (overrides eval_steps).",
        bound=POSITIVE,
    )
    save_epochs: float | None = option(
        None, "Save every this fraction of an epoch (overrides save_steps).", bound=POSITIVE
    )
    save_full_model: bool = option(False, "Also save the merged full model, not only adapters/head.")
    irrelevant_loss_weight: float = option(
        1.0, "Weight of the BT loss of irrelevant-query pairs.", bound=NON_NEGATIVE
    )
    use_margin_loss: bool = option(False, "Scorer-reference name for loss_type: margin (with `margin`).")
    score_min: float | None = option(None, "Lower end of the reward range (soft clamp, see RewardHead).")
    score_max: float | None = option(None, "Upper end of the reward range (soft clamp, see RewardHead).")
    disable_dropout: bool = option(False, "Set every dropout probability of the model to 0 (as TRL does).")
    normalization_pairs: int | None = option(
        None,
        "After training, store each dimension's reward mean/std over this many training pairs (both "
        "videos) in the checkpoint, for normalised rewards and Overall. None = all pairs, 0 = skip.",
        bound=NON_NEGATIVE,
    )
    max_length: int | None = option(
        None,
        "Max tokens per sequence (guards against OOM).",
        aliases=["max_seq_length"],
        bound=AT_LEAST_ONE,
    )
    remove_unused_columns: bool = option(False, "Kept False: the collator needs every dataset field.")

    def __post_init__(self) -> None:
        if self.use_margin_loss:
            self.loss_type = "margin"
        if (self.score_min is None) != (self.score_max is None) or (
            self.score_min is not None and self.score_min >= self.score_max
        ):
            raise ConfigError(
                f"score_min / score_max: give both, min < max (got {self.score_min}, {self.score_max})"
            )
        if self.early_stopping_patience is not None or self.load_best_model_at_end:
            self.load_best_model_at_end = True
            self.metric_for_best_model = self.metric_for_best_model or BEST_MODEL_METRIC
            if self.metric_for_best_model == BEST_MODEL_METRIC:
                self.greater_is_better = True
        for name, strategy in (
            ("logging_epochs", "logging_strategy"),
            ("eval_epochs", "eval_strategy"),
            ("save_epochs", "save_strategy"),
        ):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError(f"{name}: must be > 0, got {value}")
            if value is not None:  # the step interval is set once the data size is known (train.py)
                setattr(self, strategy, "steps")
        super().__post_init__()  # RunArguments: TrainingArguments' own checks, then the run keys'


CONFIG_CLASSES = (ModelConfig, DataConfig, RewardTrainingArguments)
LAYOUT = Layout(CONFIG_CLASSES, flat=True, translate=translate_videoalign)
"""The flat reward-model YAML: every key belongs to one of the three classes (``warmup_ratio``, the
reference's key, is converted by the loader into the fraction ``warmup_steps`` takes), or is one of
VideoAlign's ``train.sh`` flags, translated or refused (:mod:`vlmrm.reward.videoalign_flags`)."""


@dataclass
class RunConfig:
    """The three parsed concerns of one run."""

    model: ModelConfig
    data: DataConfig
    training: RewardTrainingArguments

    def __post_init__(self) -> None:
        check_cross_fields(self.model, self.data)


def check_cross_fields(model: ModelConfig, data: DataConfig) -> None:
    """Checks that span two dataclasses; fills ``output_dim`` when unset.

    Number of rewards = len(eval_dim). With ``reward_token: special`` each dimension reads its own
    token, through one shared head output (``output_dim: 1``, the default, as in VideoAlign's
    configs) or its own head row (``output_dim: len(eval_dim)``, VideoAlign's diagonal); otherwise
    one position yields all of them.
    """
    num_dims = len(data.eval_dim)
    if model.reward_token == "special":
        if not model.use_special_tokens:
            raise ConfigError("reward_token: 'special' needs use_special_tokens: true")
        allowed = sorted({1, num_dims})
    else:
        allowed = [num_dims]
    if model.output_dim is None:
        model.output_dim = allowed[0]
    elif model.output_dim not in allowed:
        raise ConfigError(
            f"output_dim: {model.output_dim} does not fit reward_token={model.reward_token!r} with "
            f"{num_dims} eval_dim {data.eval_dim}; expected {' or '.join(map(str, allowed))}"
        )


def check_run_paths(cfg: RunConfig) -> None:
    """Model, checkpoint and data paths exist (or the model is a Hub id that can be fetched): one line in
    seconds instead of a traceback or the Hub's retries once the model loads. Here, not in
    :mod:`vlmrm.reward.train`, so the launcher can call it before importing the training stack."""
    check_model_source(cfg.model.model_name_or_path, "model_name_or_path")
    check_model_source(cfg.model.init_from, "init_from")
    check_file(cfg.data.meta_data, "meta_data")
    check_file(cfg.data.meta_data_test, "meta_data_test")
    check_directory(cfg.data.data_dir, "data_dir")
    check_directory(cfg.data.image_dir, "image_dir")


def parse_config(
    path: str | Path | None = None, overrides: list[str] | None = None, values: dict | None = None
) -> RunConfig:
    """A training run's :class:`RunConfig` from YAML / overrides / values (see :func:`load_config`)."""
    model, data, training = load_config(LAYOUT, path, overrides, values)
    return RunConfig(model=model, data=data, training=training)
