"""Generative reward models (GRM): a VLM judges two images or videos in text, then is tuned on its
own correct judgements (rejection sampling).

Modules: `sources` (``source:path`` datasets -> :class:`~vlmrm.grm.sources.GRMSample` with counts),
`records` (the filtered-sample record rejection sampling writes and conversion reads; shown vs
original item order), `parsing` (verdict, reasoning and score totals from a generation; judging
against the ground truth; stats), `convert` (filtered samples -> SFT conversations),
`instructions` (default T2I / T2V task instructions) and `rejection_sampling` (the inference CLI).
"""
