"""Edge-quality measure: how much of the old background's colour a cutout carries into its soft edge.

Put a cutout with colours ``C`` and alpha ``a`` on any new background ``K``: the composite is
``a*C + (1-a)*K``. Had the cutout carried the true foreground colour, it would be ``a*F + (1-a)*K``;
the difference ``a*(C - F)`` does not depend on ``K``, and its part pointing from the foreground
towards the old background is the halo. Per edge pixel we take

    bleed = a * <C - F_local, u>,    u = (B_local - F_local) / |B_local - F_local|

where ``F_local`` / ``B_local`` are the mean photo colours of the surely-foreground (a > 0.95) and
surely-background (a < 0.05) pixels in the (2*radius+1)^2 box around it. The edge band is the pixels
with 0.05 < a < 0.95 that have both kinds of neighbour and a local contrast |B_local - F_local| of
at least ``min_contrast`` (elsewhere "towards the background" means nothing). Keeping the photo's
colours (C = I = a*F + (1-a)*B) gives bleed ~ a*(1-a)*|B - F| > 0; a perfect estimate gives ~0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rmbg_core.edges.foreground import box_sum

EDGE_LOW, EDGE_HIGH = 0.05, 0.95


@dataclass(frozen=True)
class EdgeBleed:
    """Mean bleed over the edge band: in grey levels (0-255) and as a share of the local contrast."""

    levels: float
    share: float
    pixels: int


def edge_bleed(image: torch.Tensor, alpha: torch.Tensor, colors: torch.Tensor, *, radius: int = 10,
               min_contrast: float = 0.1) -> EdgeBleed:
    """Mean bleed of the old background into a cutout's edge band (see the module docstring).

    ``image`` is the photo (H, W, 3), ``alpha`` the cutout's alpha (H, W), ``colours`` the cutout's
    colours (H, W, 3): the photo itself, or estimated foreground colours. uint8 or float in [0, 1].
    """
    bleed, contrast = edge_bleed_map(image, alpha, colors, radius=radius, min_contrast=min_contrast)
    band = contrast > 0
    if not bool(band.any()):
        return EdgeBleed(0.0, 0.0, 0)
    return EdgeBleed(levels=float(bleed[band].mean()) * 255.0, share=float((bleed[band] / contrast[band]).mean()),
                     pixels=int(band.sum()))


def edge_bleed_map(image: torch.Tensor, alpha: torch.Tensor, colors: torch.Tensor, *, radius: int = 10,
                   min_contrast: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pixel bleed (H, W) in [0, 1] colour units and local contrast (H, W); both 0 off the edge band."""
    photo, cut = _unit(image), _unit(colors)
    a = _unit(alpha)
    sure_bg = (a < EDGE_LOW).to(torch.float32)
    sure_fg = (a > EDGE_HIGH).to(torch.float32)
    planar = photo.permute(2, 0, 1)[None]
    sums = box_sum(torch.cat((planar * sure_fg, planar * sure_bg, sure_fg[None, None], sure_bg[None, None]), dim=1),
                   radius)[0]
    fg_count, bg_count = sums[6], sums[7]
    fg_local = (sums[0:3] / fg_count.clamp(min=1.0)).permute(1, 2, 0)
    bg_local = (sums[3:6] / bg_count.clamp(min=1.0)).permute(1, 2, 0)
    towards = bg_local - fg_local
    contrast = towards.norm(dim=-1)
    band = (a > EDGE_LOW) & (a < EDGE_HIGH) & (fg_count > 0.5) & (bg_count > 0.5) & (contrast >= min_contrast)
    direction = towards / contrast.clamp(min=1e-6).unsqueeze(-1)
    bleed = a * ((cut - fg_local) * direction).sum(dim=-1)
    zero = torch.zeros_like(bleed)
    return torch.where(band, bleed, zero), torch.where(band, contrast, zero)


def _unit(data: torch.Tensor) -> torch.Tensor:
    if data.dtype == torch.uint8:
        return data.to(torch.float32) / 255.0
    return data.to(torch.float32)
