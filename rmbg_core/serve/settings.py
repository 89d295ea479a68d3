"""The limits and switches of one HTTP service, checked once; imports no web framework."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..errors import OptionError
from ..model.processing import MODEL_INPUT_SIZE, check_input_size
from ..options import check_count

# Images per forward pass on a GPU unless --max-batch says otherwise (the CPU's default is 1).
ACCELERATOR_MAX_BATCH = 8


@dataclass(frozen=True)
class ServeSettings:
    """Every ``rmbg serve`` option except where to listen; ``create_app`` takes these as keywords.

    ``device`` and ``dtype`` only apply when the app loads the model itself (from a source, not an
    :class:`RMBGModel`). At most ``max_batch + queue`` removal requests are admitted at once (uploading,
    waiting or in the model); more get 503, so memory stays bounded whatever the load. ``max_batch`` None
    is :data:`ACCELERATOR_MAX_BATCH` on a GPU and 1 on the CPU: there a batch gains nothing, and after one
    the process's later single passes ran slower (benchmarks/README.md, ``serve_load.py``).
    """

    device: str = "auto"
    dtype: str = "auto"
    input_size: tuple[int, int] = MODEL_INPUT_SIZE
    max_batch: int | None = None
    max_wait_ms: float = 10.0
    queue: int = 32
    max_upload_mb: float = 25.0
    max_megapixels: float = 40.0
    token: str | None = None
    allow_urls: bool = False
    url_timeout_s: float = 15.0
    workers: int = 4  # threads decoding uploads and encoding results, beside the model thread

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_size", check_input_size(self.input_size))
        if self.max_batch is not None:
            check_count(self.max_batch, "max_batch", 1)
        check_count(self.queue, "queue", 0)
        check_count(self.workers, "workers", 1)
        for name in ("max_wait_ms", "max_upload_mb", "max_megapixels", "url_timeout_s"):
            value = getattr(self, name)
            low_ok = value >= 0 if name == "max_wait_ms" else value > 0
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or not low_ok:
                raise OptionError(f"{name} must be a {'non-negative' if name == 'max_wait_ms' else 'positive'} "
                                  f"number, got {value!r}")
        if self.token is not None and not self.token.strip():
            raise OptionError("token must not be empty (leave it unset for no token)")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def max_pixels(self) -> int:
        return int(self.max_megapixels * 1_000_000)

    def batch_limit(self, device: torch.device | str) -> int:
        """Most images in one forward pass for a model on ``device`` (``max_batch``, or its default there)."""
        if self.max_batch is not None:
            return self.max_batch
        return 1 if torch.device(device).type == "cpu" else ACCELERATOR_MAX_BATCH

    def admitted_limit(self, device: torch.device | str) -> int:
        """Removal requests handled at once for a model on ``device``; one more is refused with 503."""
        return self.batch_limit(device) + self.queue
