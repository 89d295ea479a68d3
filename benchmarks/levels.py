"""How solid a cutout is, with and without the ``levels`` refinement: README's table.

    python benchmarks/levels.py [--fixtures DIR] [--levels 0.05,0.95]

On the fixture photos' reference masks (the network's output for them, see the fixture's README), a
Markdown table: the share of subject pixels (mask >= 0.5) at alpha 255, of background pixels (< 0.5)
at alpha 0, and how see-through the subject is on average (1 - mean alpha), for the default output and
for ``Refinement(levels=...)``. Deterministic; needs no model.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rmbg_core import Refinement, apply_refinement  # noqa: E402
from rmbg_core.model.images import mask_to_uint8  # noqa: E402

FIXTURES = REPO.parent / "shared" / "fixtures" / "isnet-real"
PHOTOS = ("astronaut", "chelsea", "coffee")
SUBJECT = 128  # mask >= 0.5


@dataclass(frozen=True)
class Solidity:
    """Shares (0-1) of subject pixels at 255 and background pixels at 0, and the subject's mean see-through."""

    opaque_subject: float
    clear_background: float
    see_through: float


def solidity(alpha: np.ndarray, subject: np.ndarray) -> Solidity:
    """Measure an 8-bit alpha over the ``subject`` / not-subject split of the default mask."""
    return Solidity(float((alpha[subject] == 255).mean()), float((alpha[~subject] == 0).mean()),
                    1.0 - float(alpha[subject].mean()) / 255.0)


def measure(mask: np.ndarray, levels: tuple[float, float]) -> tuple[Solidity, Solidity]:
    """The default mask's solidity and that of the same mask with ``levels`` applied."""
    subject = mask >= SUBJECT
    levelled = mask_to_uint8(apply_refinement(torch.from_numpy(mask.copy()), Refinement(levels=levels))).numpy()
    return solidity(mask, subject), solidity(levelled, subject)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fixtures", type=Path, default=FIXTURES, help="the isnet-real fixture folder")
    parser.add_argument("--levels", default="0.05,0.95", help="LOW,HIGH as for rmbg remove --levels")
    args = parser.parse_args(argv)
    levels = Refinement.from_options(levels=args.levels).levels
    masks = {name: args.fixtures / f"{name}.mask.png" for name in PHOTOS}
    if not all(path.is_file() for path in masks.values()):
        print(f"{args.fixtures}: the fixture masks are not there", file=sys.stderr)
        return 2
    print(f"| photo (default -> `--levels {levels[0]:g},{levels[1]:g}`) | subject at alpha 255 "
          "| background at alpha 0 | subject see-through |")
    print("|---|---:|---:|---:|")
    for name, path in masks.items():
        before, after = measure(np.asarray(Image.open(path).convert("L")), levels)
        print(f"| {name} | {before.opaque_subject:.1%} -> {after.opaque_subject:.1%} "
              f"| {before.clear_background:.1%} -> {after.clear_background:.1%} "
              f"| {before.see_through:.2%} -> {after.see_through:.2%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
