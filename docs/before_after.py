"""Draw README's before/after picture: a fixture photo and its cutout on a checkerboard, side by side.

    python docs/before_after.py [--fixtures DIR] [--out docs/before_after.jpg]

The photo is the test fixture's ``astronaut.png`` (NASA, public domain); the cutout's alpha is the
fixture's reference mask for it, which is the network's output (see the fixture's README), so the script
needs no model and draws the same picture everywhere. Nothing of the weights is copied.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rmbg_core.files import write_atomic  # noqa: E402

FIXTURES = REPO.parent / "shared" / "fixtures" / "isnet-real"
PHOTO = "astronaut"
SIDE = 360          # each panel is SIDE x SIDE pixels
GAP = 8             # white space between the panels
SQUARE = 12         # checkerboard square, pixels
CHECKER = (204, 255)  # the usual light grey and white of "transparent"
QUALITY = 90        # JPEG: the panels are opaque, and a PNG of a photo would be several times larger


def checkerboard(side: int) -> np.ndarray:
    """(side, side, 3) float32 light-grey/white squares."""
    rows, cols = np.indices((side, side)) // SQUARE
    levels = np.where((rows + cols) % 2 == 0, CHECKER[1], CHECKER[0]).astype(np.float32)
    return np.repeat(levels[..., None], 3, axis=2)


def before_after(photo: Image.Image, mask: Image.Image) -> Image.Image:
    """The photo and the photo cut out by ``mask`` over a checkerboard, both SIDE x SIDE, GAP apart."""
    small = np.asarray(photo.convert("RGB").resize((SIDE, SIDE), Image.Resampling.LANCZOS), dtype=np.float32)
    alpha = np.asarray(mask.convert("L").resize((SIDE, SIDE), Image.Resampling.LANCZOS), dtype=np.float32)[..., None]
    cutout = small * (alpha / 255.0) + checkerboard(SIDE) * (1.0 - alpha / 255.0)
    canvas = np.full((SIDE, 2 * SIDE + GAP, 3), 255.0, dtype=np.float32)
    canvas[:, :SIDE] = small
    canvas[:, SIDE + GAP:] = cutout
    return Image.fromarray(np.clip(np.rint(canvas), 0, 255).astype(np.uint8))


def save_atomically(image: Image.Image, path: Path) -> None:
    """Write ``image`` as a JPEG at ``path`` with the package's atomic writer."""
    write_atomic(path, lambda handle: image.save(handle, format="JPEG", quality=QUALITY, optimize=True))

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fixtures", type=Path, default=FIXTURES, help="the isnet-real fixture folder")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "before_after.jpg", help="picture to write")
    args = parser.parse_args(argv)
    photo, mask = args.fixtures / f"{PHOTO}.png", args.fixtures / f"{PHOTO}.mask.png"
    if not (photo.is_file() and mask.is_file()):
        print(f"{args.fixtures}: the fixture photo and mask are not there", file=sys.stderr)
        return 2
    with Image.open(photo) as picture, Image.open(mask) as alpha:
        save_atomically(before_after(picture, alpha), args.out)
    print(f"{args.out} ({args.out.stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
