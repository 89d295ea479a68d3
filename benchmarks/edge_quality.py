"""Edge bleed with and without foreground estimation on the fixture photos; writes a before/after picture.

    python benchmarks/edge_quality.py [--fixtures DIR] [--predict] [--picture docs/edge_quality.png]

Masks are the fixture's reference masks (the network's output for these photos); ``--predict`` runs the
fixture's weights instead. Prints a Markdown table: per photo, the edge-band size and the mean bleed of
the old background into the edge (grey levels, and share of the local contrast; see rmbg_core/quality.py).
The picture shows, per photo, the crop with the most bleed composited on a contrasting colour: photo
colours on the left, estimated foreground colours on the right.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rmbg_core import estimate_foreground, load_model  # noqa: E402
from rmbg_core.compose import composite, to_uint8  # noqa: E402
from rmbg_core.quality import edge_bleed, edge_bleed_map  # noqa: E402

PHOTOS = ("astronaut", "chelsea", "coffee")
CROP = 64
ZOOM = 3
# Saturated colours to composite on; each photo gets the one farthest from its old background.
CANDIDATES = ("#ff00ff", "#00ff00", "#00ffff", "#ffff00", "#ff0000", "#0000ff", "#ffffff", "#000000")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fixtures", type=Path, default=REPO.parent / "shared" / "fixtures" / "isnet-real")
    parser.add_argument("--predict", action="store_true", help="predict masks with the fixture's weights")
    parser.add_argument("--picture", type=Path, default=REPO / "docs" / "edge_quality.png")
    args = parser.parse_args(argv)
    if not (args.fixtures / "astronaut.png").is_file():
        print(f"edge_quality: fixture photos not found in {args.fixtures}", file=sys.stderr)
        return 2
    model = load_model(args.fixtures, device="cpu", dtype="float32") if args.predict else None

    rows, tiles = [], []
    print("| photo | edge px | bleed, photo colours | bleed, estimated foreground | reduction |")
    print("|---|---:|---:|---:|---:|")
    for name in PHOTOS:
        photo = torch.from_numpy(np.asarray(Image.open(args.fixtures / f"{name}.png").convert("RGB")).copy())
        if model is not None:
            alpha = (model.predict(photo[None])[0] * 255).to(torch.uint8)
        else:
            alpha = torch.from_numpy(np.asarray(Image.open(args.fixtures / f"{name}.mask.png")).copy())
        colours = estimate_foreground(photo, alpha)
        before, after = edge_bleed(photo, alpha, photo), edge_bleed(photo, alpha, colours)
        rows.append((name, before, after))
        print(f"| {name} | {before.pixels} | {before.levels:.1f} levels ({100 * before.share:.1f}%) | "
              f"{after.levels:.1f} levels ({100 * after.share:.1f}%) | {before.levels / after.levels:.1f}x |")
        tiles.append(before_after(photo, alpha, colours))
    save_atomically(stack(tiles), args.picture)
    print(f"\npicture: {args.picture} ({args.picture.stat().st_size // 1024} KB)")
    return 0


def before_after(photo: torch.Tensor, alpha: torch.Tensor, colours: torch.Tensor) -> Image.Image:
    """The most bleeding crop, on the colour farthest from the old background: photo | estimate."""
    bleed, _ = edge_bleed_map(photo, alpha, photo)
    top, left = worst_crop(bleed)
    crop = (slice(top, top + CROP), slice(left, left + CROP))
    colour = contrasting_colour(photo[crop], alpha[crop])
    halves = [composite(photo[crop], alpha[crop], colour), composite(colours[crop], alpha[crop], colour)]
    pictures = [Image.fromarray(to_uint8(half).numpy()).resize((CROP * ZOOM,) * 2, Image.NEAREST) for half in halves]
    pair = Image.new("RGB", (2 * CROP * ZOOM + 4, CROP * ZOOM), "white")
    pair.paste(pictures[0], (0, 0))
    pair.paste(pictures[1], (CROP * ZOOM + 4, 0))
    return pair


def worst_crop(bleed: torch.Tensor) -> tuple[int, int]:
    """Top-left corner of the CROP x CROP window holding the most bleed."""
    height, width = bleed.shape
    size = (min(CROP, height), min(CROP, width))
    totals = F.avg_pool2d(bleed[None, None].clamp(min=0), size, stride=8)[0, 0]
    index = int(totals.argmax())
    return (index // totals.shape[1]) * 8, (index % totals.shape[1]) * 8


def contrasting_colour(photo: torch.Tensor, alpha: torch.Tensor) -> str:
    """The candidate colour farthest from the mean of the crop's surely-background pixels."""
    background = photo[alpha < 13].float().mean(dim=0) if bool((alpha < 13).any()) else photo.float().mean(dim=(0, 1))
    def distance(hex_colour: str) -> float:
        rgb = torch.tensor([int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)], dtype=torch.float32)
        return float((rgb - background).norm())
    return max(CANDIDATES, key=distance)


def stack(pairs: list[Image.Image]) -> Image.Image:
    """Pairs one under another, below a two-word header."""
    header = 18
    width = pairs[0].width
    sheet = Image.new("RGB", (width, header + sum(p.height + 4 for p in pairs)), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((4, 3), "photo colours (halo)", fill="black")
    draw.text((width // 2 + 6, 3), "estimated foreground", fill="black")
    y = header
    for pair in pairs:
        sheet.paste(pair, (0, y))
        y += pair.height + 4
    return sheet


def save_atomically(picture: Image.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".png")
    os.close(handle)
    picture.save(temporary, optimize=True)
    os.chmod(temporary, 0o644)
    os.replace(temporary, path)


if __name__ == "__main__":
    sys.exit(main())
