"""transformers configuration of RMBG-1.4 (IS-Net): the few numbers that shape the network and its input.

``rmbg export`` ships this file in hub-ready folders (``auto_map["AutoConfig"]``), with its
``rmbg_core`` imports rewritten to flat relative ones.
"""

from __future__ import annotations

from typing import Any, Sequence

from transformers import PretrainedConfig

from rmbg_core.model.processing import MODEL_INPUT_SIZE


class RMBGConfig(PretrainedConfig):
    """Channels of the IS-Net and the default network input size (height, width) of the pipeline.

    ``model_type`` is ours alone: a name transformers knows natively would make ``AutoConfig`` pick
    the native class over this one.
    """

    model_type = "rmbg"

    def __init__(self, in_channels: int = 3, out_channels: int = 1,
                 model_input_size: Sequence[int] = MODEL_INPUT_SIZE, **kwargs: Any) -> None:
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.model_input_size = list(model_input_size)
        super().__init__(**kwargs)
