"""Edge bleed with and without foreground estimation; writes the before/after picture of the README.

    python benchmarks/edge_quality.py [--fixtures DIR] [--predict] [--picture docs/edge_quality.png]

Two Markdown tables (bleed: the old background's colour carried into the edge, in grey levels and as a
share of the local contrast; see benchmarks/quality.py):

- a synthetic scene drawn here, whose true foreground colours and alpha are known: a head with several
  hundred sub-pixel hair strands, composited over a saturated green background;
- the fixture photos (../shared/fixtures/isnet-real) with the fixture's reference masks (``--predict``:
  masks predicted with the fixture's weights), when the fixture is there.

``--picture`` writes the before/after picture from the synthetic scene only (nothing in it comes from
the fixture): the scene, then its hair crop with the most bleed on a dark new background three times,
with the photo's colours, the estimated foreground, and the true foreground. Deterministic.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rmbg_core import estimate_foreground, load_model  # noqa: E402
from rmbg_core.edges.compose import composite  # noqa: E402
from rmbg_core.model.images import to_uint8  # noqa: E402
from rmbg_core.files import write_atomic  # noqa: E402
from benchmarks.quality import EDGE_HIGH, EDGE_LOW, edge_bleed, edge_bleed_map  # noqa: E402

PHOTOS = ("astronaut", "chelsea", "coffee")
CROP = 64
ZOOM = 4
# The new background of the picture: dark and neutral, so a green fringe shows (a saturated complement
# such as magenta would mix with the green into grey and hide it).
NEW_BACKGROUND = "#1e1e3c"

# The synthetic scene: size, supersampling factor for anti-aliased coverage, strands, seed.
SCENE_SIZE = (256, 320)  # height, width
SUPERSAMPLE = 4
STRANDS = 700
SEED = 20240601


@dataclass(frozen=True)
class Scene:
    """A photo ``a*F + (1-a)*B`` made from a known foreground ``F``, alpha ``a`` and background ``B``."""

    photo: torch.Tensor        # (H, W, 3) uint8: what a camera would give
    alpha: torch.Tensor        # (H, W) uint8: the true alpha, as an 8-bit mask
    foreground: torch.Tensor   # (H, W, 3) float32 in [0, 1]: the true foreground colour (where alpha > 0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fixtures", type=Path, default=REPO.parent / "shared" / "fixtures" / "isnet-real")
    parser.add_argument("--predict", action="store_true", help="predict the fixture masks with the fixture's weights")
    parser.add_argument("--picture", type=Path, help="write the synthetic before/after picture here (PNG)")
    args = parser.parse_args(argv)

    scene = synthetic_scene()
    estimated = estimate_foreground(scene.photo, scene.alpha)
    print("Synthetic scene (true foreground known), 256x320:\n")
    print("| colours | bleed | error vs true foreground |")
    print("|---|---:|---:|")
    for label, colors in (("photo colours", scene.photo), ("estimated foreground", estimated),
                           ("true foreground", scene.foreground)):
        bleed = edge_bleed(scene.photo, scene.alpha, colors)
        print(f"| {label} | {bleed.levels:.1f} levels ({100 * bleed.share:.1f}%) | "
              f"{visible_error(scene, colours):.1f} levels |")
    if args.picture is not None:
        save_atomically(picture(scene, estimated), args.picture)
        print(f"\npicture: {args.picture} ({args.picture.stat().st_size // 1024} KB)")

    if not (args.fixtures / "astronaut.png").is_file():
        print(f"\nfixture photos not found in {args.fixtures}: no fixture table")
        return 0
    model = load_model(args.fixtures, device="cpu", dtype="float32") if args.predict else None
    print(f"\nFixture photos, {'predicted masks' if model else 'reference masks'}:\n")
    print("| photo | edge px | bleed, photo colours | bleed, estimated foreground | reduction |")
    print("|---|---:|---:|---:|---:|")
    for name in PHOTOS:
        photo = torch.from_numpy(np.asarray(Image.open(args.fixtures / f"{name}.png").convert("RGB")).copy())
        if model is not None:
            alpha = (model.predict(photo[None])[0] * 255).to(torch.uint8)
        else:
            alpha = torch.from_numpy(np.asarray(Image.open(args.fixtures / f"{name}.mask.png")).copy())
        before = edge_bleed(photo, alpha, photo)
        after = edge_bleed(photo, alpha, estimate_foreground(photo, alpha))
        print(f"| {name} | {before.pixels} | {before.levels:.1f} levels ({100 * before.share:.1f}%) | "
              f"{after.levels:.1f} levels ({100 * after.share:.1f}%) | {before.levels / after.levels:.1f}x |")
    return 0


def synthetic_scene(seed: int = SEED) -> Scene:
    """A head with hair over a saturated green background; coverage from SUPERSAMPLE x supersampling.

    Strands are 0.5-1.25 px wide curves leaving the upper half of the head, each with its own colour
    (blond to brown), drawn in front of the head; the background is a green-to-teal gradient.
    """
    rng = np.random.default_rng(seed)
    height, width = SCENE_SIZE
    big = (width * SUPERSAMPLE, height * SUPERSAMPLE)
    center = np.array([width / 2, height * 0.62])
    radii = np.array([62.0, 72.0])

    head = Image.new("L", big, 0)
    ImageDraw.Draw(head).ellipse([*((center - radii) * SUPERSAMPLE), *((center + radii) * SUPERSAMPLE)], fill=255)
    shoulders = np.array([width / 2, height + 40.0]), np.array([140.0, 70.0])
    ImageDraw.Draw(head).ellipse([*((shoulders[0] - shoulders[1]) * SUPERSAMPLE),
                                  *((shoulders[0] + shoulders[1]) * SUPERSAMPLE)], fill=255)

    hair_cover = Image.new("L", big, 0)
    hair_color = Image.new("RGB", big, 0)
    cover_draw, color_draw = ImageDraw.Draw(hair_cover), ImageDraw.Draw(hair_color)
    for _ in range(STRANDS):
        angle = rng.uniform(-math.pi * 0.95, -math.pi * 0.05)  # the upper half of the head
        root = center + radii * 0.92 * np.array([math.cos(angle), math.sin(angle)])
        heading = angle + rng.normal(0.0, 0.25)
        length = rng.uniform(25.0, 75.0)
        curl = rng.normal(0.0, 0.012)
        points, position = [], root.copy()
        for _ in range(int(length)):
            points.append(tuple(position * SUPERSAMPLE))
            heading += curl + rng.normal(0.0, 0.02)
            position = position + np.array([math.cos(heading), math.sin(heading)])
        shade = rng.uniform(0.0, 1.0)
        color = tuple(int(c) for c in (np.array([236, 196, 110]) * (1 - shade) + np.array([120, 70, 30]) * shade))
        line_width = int(rng.integers(2, 6))  # 0.5 to 1.25 px at the final size
        cover_draw.line(points, fill=255, width=line_width, joint="curve")
        color_draw.line(points, fill=color, width=line_width, joint="curve")

    head_alpha = _downsample(np.asarray(head, np.float32)[..., None] / 255.0)[..., 0]
    cover = np.asarray(hair_cover, np.float32)[..., None] / 255.0
    hair_alpha = _downsample(cover)[..., 0]
    hair_premultiplied = _downsample(np.asarray(hair_color, np.float32) / 255.0 * cover)
    hair_rgb = hair_premultiplied / np.maximum(hair_alpha[..., None], 1e-6)

    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    light = np.clip(1.05 - 0.35 * np.hypot((xs - center[0] + 25) / radii[0], (ys - center[1] + 30) / radii[1]), 0.35, 1)
    skin = np.stack([0.93 * light, 0.74 * light, 0.62 * light], axis=-1)
    background = np.stack([0.10 + 0.15 * xs / width, 0.80 - 0.15 * ys / height, 0.25 + 0.35 * ys / height], axis=-1)

    # Hair in front of the head: premultiplied "over".
    alpha = hair_alpha + (1 - hair_alpha) * head_alpha
    premultiplied = hair_alpha[..., None] * hair_rgb + ((1 - hair_alpha) * head_alpha)[..., None] * skin
    foreground = np.where(alpha[..., None] > 0, premultiplied / np.maximum(alpha[..., None], 1e-6), hair_rgb)
    photo = premultiplied + (1 - alpha[..., None]) * background
    return Scene(photo=torch.from_numpy(np.round(photo * 255).astype(np.uint8)),
                 alpha=torch.from_numpy(np.round(alpha * 255).astype(np.uint8)),
                 foreground=torch.from_numpy(np.clip(foreground, 0, 1).astype(np.float32)))


def _downsample(values: np.ndarray) -> np.ndarray:
    """Mean over SUPERSAMPLE x SUPERSAMPLE blocks of an (h, w, c) array."""
    h, w, c = values.shape
    return values.reshape(h // SUPERSAMPLE, SUPERSAMPLE, w // SUPERSAMPLE, SUPERSAMPLE, c).mean(axis=(1, 3))


def visible_error(scene: Scene, colors: torch.Tensor) -> float:
    """Mean |a*(C - F_true)| over the edge band and the channels, in grey levels: what any new background shows."""
    alpha = scene.alpha.to(torch.float32) / 255.0
    band = (alpha > EDGE_LOW) & (alpha < EDGE_HIGH)
    shown = colors.to(torch.float32) / (255.0 if colors.dtype == torch.uint8 else 1.0)
    error = (alpha[..., None] * (shown - scene.foreground)).abs()
    return float(error[band].mean()) * 255.0


def picture(scene: Scene, estimated: torch.Tensor) -> Image.Image:
    """The scene, then its most bleeding hair crop on NEW_BACKGROUND: photo | estimate | truth."""
    bleed, _ = edge_bleed_map(scene.photo, scene.alpha, scene.photo)
    top, left = worst_crop(bleed)
    crop = (slice(top, top + CROP), slice(left, left + CROP))
    alpha = scene.alpha[crop]
    panels = [composite(colors[crop], alpha, NEW_BACKGROUND)
              for colors in (scene.photo, estimated, scene.foreground)]
    side = CROP * ZOOM
    overview = Image.fromarray(scene.photo.numpy()).resize((side * SCENE_SIZE[1] // SCENE_SIZE[0], side),
                                                           Image.BILINEAR)
    header, gap = 18, 4
    sheet = Image.new("RGB", (overview.width + 3 * (side + gap), header + side), "white")
    draw = ImageDraw.Draw(sheet)
    sheet.paste(overview, (0, header))
    scale = side / SCENE_SIZE[0]
    draw.rectangle([left * scale, header + top * scale, (left + CROP) * scale, header + (top + CROP) * scale],
                   outline="white")
    labels = ("synthetic photo", "photo colours (halo)", "estimated foreground", "true foreground")
    draw.text((4, 3), labels[0], fill="black")
    for index, (panel, label) in enumerate(zip(panels, labels[1:])):
        x = overview.width + gap + index * (side + gap)
        sheet.paste(Image.fromarray(to_uint8(panel).numpy()).resize((side, side), Image.NEAREST), (x, header))
        draw.text((x + 4, 3), label, fill="black")
    return sheet


def worst_crop(bleed: torch.Tensor) -> tuple[int, int]:
    """Top-left corner of the CROP x CROP window holding the most bleed."""
    height, width = bleed.shape
    size = (min(CROP, height), min(CROP, width))
    totals = F.avg_pool2d(bleed[None, None].clamp(min=0), size, stride=8)[0, 0]
    index = int(totals.argmax())
    return (index // totals.shape[1]) * 8, (index % totals.shape[1]) * 8


def save_atomically(image: Image.Image, path: Path) -> None:
    """Write ``image`` as a PNG at ``path`` with the package's atomic writer."""
    write_atomic(path, lambda handle: image.save(handle, format="PNG", optimize=True))

if __name__ == "__main__":
    sys.exit(main())
