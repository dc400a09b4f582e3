"""Video temporal grounding (VTG): given a video and a sentence, predict the [start, end] seconds it describes.

Modules: `data_config` (the nested data YAML), `data` / `clip` (JSONL annotations, checks, decoding a
trimmed clip), `temporal` (how a segment is written as text / temporal tokens, and parsed back), `metrics`
(IoU, R@k, mIoU), `evaluate` (metrics from a JSONL's `pred` field), `sampler` (duration-based batching),
`synthetic` (mp4 data with a known event segment). Behaviour follows `vtg_config_guide.md`.
"""
