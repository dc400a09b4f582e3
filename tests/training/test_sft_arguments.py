"""The SFT tasks' training arguments and batches: the run keys ride on HF's TrainingArguments and
are checked there; ``sample_ids`` go into the batch for the NaN error and never reach a forward."""

import pytest
import torch
from torch import nn
from transformers import EarlyStoppingCallback

from vlmrm.core.config import ConfigError
from vlmrm.training.run import early_stopping
from vlmrm.training.sft import IGNORE_INDEX, GenerationSFTTrainer, SFTTrainingArguments, masked_row, pad_rows

PAD_ID = 0
VOCAB = 8


def arguments(tmp_path, **keys) -> SFTTrainingArguments:
    return SFTTrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none", **keys)


def test_run_keys_are_sft_training_arguments_and_are_checked(tmp_path):
    evaluated = {"eval_strategy": "steps", "save_strategy": "steps", "eval_steps": 1, "save_steps": 1}
    args = arguments(tmp_path, experiment_name="exp", early_stopping_patience=2, **evaluated)
    assert args.experiment_name == "exp" and not args.skip_nonfinite_loss
    # early stopping reads the best metric: it turns it on; TrainingArguments picks the loss
    assert args.load_best_model_at_end and args.metric_for_best_model == "loss"
    assert [type(c) for c in early_stopping(args)] == [EarlyStoppingCallback]
    with pytest.raises(ConfigError, match="early_stopping_patience: must be >= 1"):
        arguments(tmp_path, early_stopping_patience=0, **evaluated)
    with pytest.raises(ConfigError, match="early_stopping_patience: needs evaluations"):
        early_stopping(arguments(tmp_path, early_stopping_patience=2, save_strategy="no"))
    assert early_stopping(arguments(tmp_path)) == []


def row(ids: list[int]) -> dict:
    prompt, target = torch.tensor([ids[:-1]]), torch.tensor([ids[-1:]])
    return masked_row([(prompt, False), (target, True)])


def test_pad_rows_puts_the_sample_ids_in_the_batch():
    rows = [row([1, 2, 3]), row([4, 5])]
    batch = pad_rows(rows, PAD_ID, [7, 3])
    assert torch.equal(batch["sample_ids"], torch.tensor([7, 3]))
    assert batch["labels"].tolist() == [[IGNORE_INDEX, IGNORE_INDEX, 3], [IGNORE_INDEX, 5, IGNORE_INDEX]]
    assert pad_rows(rows, PAD_ID, ["a.json example 0", "b.json example 2"])["sample_ids"] == [
        "a.json example 0",
        "b.json example 2",
    ]
    assert "sample_ids" not in pad_rows(rows, PAD_ID)
    with pytest.raises(ValueError, match="1 sample ids for 2 rows"):
        pad_rows(rows, PAD_ID, [7])


class TinyLM(nn.Module):
    """A next-token model whose forward takes only what a Qwen-VL forward would from these batches
    and records the keys it was given."""

    def __init__(self):
        super().__init__()
        self.embed, self.seen = nn.Embedding(VOCAB, VOCAB), []

    def forward(self, input_ids, attention_mask, labels, mm_token_type_ids):
        self.seen.append(True)
        logits = self.embed(input_ids)
        loss = nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX)
        return {"loss": loss, "logits": logits}


def test_sample_ids_are_dropped_before_the_forward_in_training_evaluation_and_prediction(tmp_path):
    samples = [[1, 2, 3], [4, 5], [6, 7, 1], [2, 3]]
    collate = lambda items: pad_rows([row(s) for _, s in items], PAD_ID, [line for line, _ in items])
    data = list(enumerate(samples, start=1))
    model = TinyLM()
    args = arguments(tmp_path, max_steps=1, per_device_train_batch_size=2, remove_unused_columns=False)
    trainer = GenerationSFTTrainer(
        model=model, args=args, data_collator=collate, train_dataset=data, eval_dataset=data
    )
    trainer.train()
    metrics = trainer.evaluate()
    predictions = trainer.predict(data)
    assert model.seen and torch.isfinite(torch.tensor(metrics["eval_loss"]))
    assert predictions.predictions.shape[0] == len(samples)
