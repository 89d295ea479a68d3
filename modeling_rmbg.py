"""transformers model class of RMBG-1.4: a ``PreTrainedModel`` holding rmbg_core's IS-Net as ``self.net``.

With ``base_model_prefix = "net"``, BRIA's un-prefixed checkpoint keys (``stage1.rebnconv1...``) load
into ``net.stage1.rebnconv1...`` and ``save_pretrained`` / ``from_pretrained`` round-trip exactly.
``rmbg export`` ships this file in hub-ready folders (``auto_map["AutoModelForImageSegmentation"]``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import torch
from transformers import PreTrainedModel
from transformers.utils import ModelOutput

from configuration_rmbg import RMBGConfig
from rmbg_core.model.network import ISNet


@dataclass
class RMBGSegmentationOutput(ModelOutput):
    """``saliency_maps``: sigmoid maps (B, 1, H, W) at the input resolution, main map first.

    Only the main map unless ``side_outputs=True``; either way ``outputs[0][0]`` is the main map,
    which is how BRIA's model card reads the output of its own remote code.
    """

    saliency_maps: Optional[Tuple[torch.Tensor, ...]] = None


class RMBGForSegmentation(PreTrainedModel):
    """IS-Net for background removal: normalised RGB ``pixel_values`` in, saliency maps in [0, 1] out."""

    config_class = RMBGConfig
    base_model_prefix = "net"
    main_input_name = "pixel_values"
    input_modalities = "image"
    _no_split_modules = ["ISNet"]

    def __init__(self, config: RMBGConfig) -> None:
        super().__init__(config)
        self.net = ISNet(config.in_channels, config.out_channels)
        # Required on transformers 5 (from_pretrained fails without it). The default _init_weights it
        # runs uses only guarded init functions, which never overwrite tensors loaded from a checkpoint.
        self.post_init()

    @classmethod
    def from_network(cls, network: ISNet, config: RMBGConfig | None = None) -> "RMBGForSegmentation":
        """Wrap an already loaded :class:`ISNet` (its tensors are taken over, not copied or re-initialised)."""
        with torch.device("meta"):
            model = cls(config if config is not None else RMBGConfig())
        model.net.load_state_dict(network.state_dict(), strict=True, assign=True)
        return model.eval()

    def forward(self, pixel_values: torch.Tensor, side_outputs: bool = False,
                return_dict: bool | None = None) -> RMBGSegmentationOutput | tuple:
        """Saliency maps for a (B, 3, H, W) batch normalised as ``rmbg_core.model.processing.preprocess`` does."""
        maps = self.net(pixel_values, side_outputs=side_outputs)
        output = RMBGSegmentationOutput(saliency_maps=tuple(maps) if side_outputs else (maps,))
        return output.to_tuple() if return_dict is False else output
