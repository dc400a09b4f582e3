"""A pair that fails inside the training loop: named by file and line, or skipped and counted.

Validation decodes what training will decode (:mod:`vlmrm.pairs.validate`), but a file can change
or a decoder can fail on a frame validation did not read. Then ``on_bad_sample: error`` stops with
``file:line [column]: reason`` (a :class:`SampleError`: a plain message, so it survives the
re-raise of a DataLoader worker's exception), and ``skip`` replaces the pair by the next usable one
of the file, logs ``file:line`` and records it in the item (:data:`SKIPPED_KEY`), so the trainer
counts it and the run reports it at the end. Substituting keeps every batch full: a rank whose batch
came up empty would skip its forward and hang the others in the gradient all-reduce.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from PIL import Image

from vlmrm.media.image import ImageLoadError
from vlmrm.media.video import VideoDecodeError

logger = logging.getLogger(__name__)

SKIPPED_KEY = "skipped_samples"
"""Item and batch key: ``file:line`` of each pair skipped inside the loop in place of this one."""

SAMPLE_FAILURES = (VideoDecodeError, ImageLoadError, Image.DecompressionBombError, OSError, ValueError)
"""What loading a pair's media raises on bad data (decoder, image, size and file errors)."""


class SampleError(RuntimeError):
    """A pair that failed inside the training loop under ``on_bad_sample: error``."""


class MediaFailure(Exception):
    """Loading one column of a pair failed; carries the column for the message."""

    def __init__(self, column: str, reason: str):
        super().__init__(reason)
        self.column = column
        self.reason = reason


def load_column(column: str, load: Callable[[], object]) -> object:
    """``load()``, with a failure tagged by the column it loads (``path_A``, ``image_B`` ...)."""
    try:
        return load()
    except SAMPLE_FAILURES as err:
        raise MediaFailure(column, str(err)) from err


class BadSampleGuard:
    """Applies ``on_bad_sample`` to a dataset's ``__getitem__`` (see the module docstring).

    ``skip`` remembers failed indices (per process and worker), so a pair is tried once an epoch at most.
    """

    def __init__(self, file: str, lines: Sequence[int], on_bad_sample: str = "error"):
        self.file = file
        self.lines = lines
        self.on_bad_sample = on_bad_sample
        self.failed: set[int] = set()

    def where(self, index: int, column: str | None) -> str:
        return f"{self.file}:{self.lines[index]}" + (f" [{column}]" if column else "")

    def item(self, index: int, load: Callable[[int], dict]) -> dict:
        """``load(index)``, or under ``skip`` the next index that loads, with the skipped ones recorded."""
        skipped: list[str] = []
        for offset in range(len(self.lines)):
            candidate = (index + offset) % len(self.lines)
            if candidate in self.failed:
                skipped.append(self.where(candidate, None))
                continue
            try:
                item = load(candidate)
            except MediaFailure as err:
                where = self.where(candidate, err.column)
                if self.on_bad_sample != "skip":
                    raise SampleError(f"{where}: {err.reason} (inside the training loop)") from err
                logger.warning("%s: %s; skipped (on_bad_sample: skip)", where, err.reason)
                self.failed.add(candidate)
                skipped.append(self.where(candidate, None))
                continue
            item[SKIPPED_KEY] = skipped
            return item
        raise SampleError(f"{self.file}: every pair failed to load inside the training loop")
