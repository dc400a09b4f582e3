"""Video temporal grounding (VTG): given a video and a sentence, predict the [start, end] seconds it describes.

Modules: `data_config` (the nested data YAML), `config` (the task YAML), `annotations` / `clips`
(JSONL annotations and their checks, decoding a trimmed clip), `validate`, `time_encoding` (how a
segment is written as text / temporal tokens, and parsed back), `prompting`, `policy` (the model),
`metrics` (IoU, R@k, mIoU), `score_predictions` (metrics from a JSONL's `pred` field), `evaluate`
(a trained model's predictions, then the metrics), `duration_sampler` (duration-based batching),
`sft` and `grpo` (training).
"""
