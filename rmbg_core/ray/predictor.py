"""``RemoveBackground``: background removal as a Ray Data ``map_batches`` stage, one model per actor.

It takes the rows ``ray.data.read_binary_files(..., include_paths=True)`` makes (``bytes``, ``path``),
decodes them in the actor and runs one forward pass per batch; a file that cannot be used becomes a row
with ``error`` set, never a failed job. Ray itself is not imported here: the class is plain Python that
Ray instantiates once per actor.
"""

from __future__ import annotations

import io
import os
from typing import Any

import numpy as np

from ..batch import iter_remove_background
from ..formats import OUTPUT_FORMATS
from ..edges.refine import RefinementLike
from ..errors import OptionError
from ..model.model import load_model
from ..model.processing import MODEL_INPUT_SIZE
from ..model.weights import DEFAULT_SOURCE

Batch = dict[str, np.ndarray]


class RemoveBackground:
    """A ``Dataset.map_batches`` callable class: ``{"bytes", "path", ...}`` rows in, encoded outputs out.

    Made once per actor with ``load_model``'s options (``model`` is its ``source``; ``device``, ``dtype``
    and any other keyword such as ``revision`` go to it) and ``remove_background``'s output options
    (``return_mask``, ``background``, ``refine``, ``estimate_foreground``, ``input_size``), plus the file
    ``output_format`` (``png``, ``webp`` or ``jpg``, as ``rmbg remove --format``) and ``workers`` (threads
    decoding and encoding beside the model, as in ``iter_remove_background``). Each call returns the
    batch's other columns unchanged, without ``bytes``, plus ``output`` (the encoded image; empty on
    error), ``width`` and ``height`` (its size in pixels; 0 on error) and ``error`` (a one-line message
    naming the path; ``""`` on success, so no column is ever null). A row that arrives with a non-empty
    ``error`` (an earlier stage could not read the file) is passed on as it is. Options are checked when
    the actor starts, before any row.
    """

    def __init__(self, model: str | os.PathLike = DEFAULT_SOURCE, *, device: str = "auto", dtype: str = "auto",
                 return_mask: bool = False, background: str | tuple[int, int, int] | None = None,
                 refine: RefinementLike = None, estimate_foreground: bool = False, output_format: str = "png",
                 input_size: int | tuple[int, int] = MODEL_INPUT_SIZE, workers: int = 2,
                 **load_options: Any) -> None:
        if output_format not in OUTPUT_FORMATS:
            raise OptionError(f"output_format must be one of {', '.join(OUTPUT_FORMATS)}, got {output_format!r}")
        if output_format == "jpg" and (background is None or return_mask):
            raise OptionError("output_format 'jpg' needs a background colour (JPEG has no transparency)")
        self.output_format = OUTPUT_FORMATS[output_format]
        self.model = load_model(model, device=device, dtype=dtype, **load_options)
        self.options = {"return_mask": return_mask, "background": background, "refine": refine,
                        "estimate_foreground": estimate_foreground, "input_size": input_size, "workers": workers}
        iter_remove_background([], model=self.model, **self.options)  # the core's checks of every option

    def __repr__(self) -> str:
        return f"RemoveBackground({self.model!r}, output_format={self.output_format.pil_format})"

    def __call__(self, batch: Batch) -> Batch:
        """Outputs for one batch of rows (see the class documentation); one forward pass for the batch."""
        names = [str(name) for name in batch["path"]]
        count = len(names)
        outputs = np.full(count, b"", dtype=object)
        errors = np.array([_message(error) for error in batch.get("error", [""] * count)], dtype=object)
        sizes = np.zeros((2, count), dtype=np.int64)
        sources, rows = [], []
        for row, (data, name) in enumerate(zip(batch["bytes"], names)):
            if errors[row]:
                continue
            if data is None or len(data) == 0:
                errors[row] = f"{name}: empty file"
                continue
            source = io.BytesIO(bytes(data))
            source.name = name  # error messages name the path, as they do for files
            sources.append(source)
            rows.append(row)
        results = iter_remove_background(sources, model=self.model, batch_size=max(len(sources), 1), **self.options)
        for row, result in zip(rows, results):
            if not result.ok:
                errors[row] = result.error
                continue
            try:
                outputs[row] = self.output_format.encode(result.image)
            except (OSError, ValueError) as exc:
                errors[row] = f"{names[row]}: cannot encode as {self.output_format.pil_format} ({exc})"
                continue
            sizes[:, row] = result.image.size
        kept = {column: values for column, values in batch.items() if column != "bytes"}
        return {**kept, "output": outputs, "width": sizes[0], "height": sizes[1], "error": errors}


def _message(error: object) -> str:
    """An incoming ``error`` cell as text: Ray may hand a missing value over as None or NaN."""
    return error if isinstance(error, str) else ""
