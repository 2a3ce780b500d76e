"""Draw the integration's brand icon: a house with a lightning bolt, in a circle.

Run `scripts/setup run python scripts/brand_icon.py` to write icon.png (256 px) and
icon@2x.png (512 px) into custom_components/smart_community/brand/. The shapes live on a
unit square, are drawn four times larger than the largest output and scaled down, which gives
smooth edges without a vector library.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

BRAND = Path(__file__).resolve().parent.parent / "custom_components/smart_community/brand"
OVERSAMPLE = 4

# The circle fills the square edge to edge: brand images are trimmed, with no empty margin.
CIRCLE = "#0b7a6b"
RING = "#09665a"
HOUSE = "#ffffff"
BOLT = "#ffc21a"
BOLT_EDGE = "#0b7a6b"

# A house: roof ridge at the top, eaves overhanging the walls, a chimney on the right slope.
ROOF = [
    (0.50, 0.19),
    (0.83, 0.49),
    (0.77, 0.49),
    (0.77, 0.78),
    (0.23, 0.78),
    (0.23, 0.49),
    (0.17, 0.49),
]
CHIMNEY = [(0.66, 0.26), (0.73, 0.26), (0.73, 0.40), (0.66, 0.34)]
# A bolt from upper right to lower left, centred on the walls.
BOLT_SHAPE = [
    (0.56, 0.34),
    (0.37, 0.60),
    (0.48, 0.60),
    (0.43, 0.76),
    (0.64, 0.50),
    (0.53, 0.50),
    (0.60, 0.34),
]


def _scaled(points: list[tuple[float, float]], size: int) -> list[tuple[float, float]]:
    return [(x * size, y * size) for x, y in points]


def draw(size: int) -> Image.Image:
    """The icon, ``size`` pixels square, on a transparent background."""
    big = size * OVERSAMPLE
    image = Image.new("RGBA", (big, big), (0, 0, 0, 0))
    canvas = ImageDraw.Draw(image)
    canvas.ellipse((0, 0, big - 1, big - 1), fill=RING)
    inset = round(big * 0.03)
    canvas.ellipse((inset, inset, big - 1 - inset, big - 1 - inset), fill=CIRCLE)
    canvas.polygon(_scaled(CHIMNEY, big), fill=HOUSE)
    canvas.polygon(_scaled(ROOF, big), fill=HOUSE)
    bolt = _scaled(BOLT_SHAPE, big)
    canvas.polygon(bolt, fill=BOLT, outline=BOLT_EDGE, width=round(big * 0.012))
    return image.resize((size, size), Image.Resampling.LANCZOS)


def main() -> None:
    """Write the icon in the sizes Home Assistant serves."""
    BRAND.mkdir(exist_ok=True)
    for name, size in (("icon.png", 256), ("icon@2x.png", 512)):
        draw(size).save(BRAND / name, optimize=True)
        print(f"wrote {BRAND / name}")


if __name__ == "__main__":
    main()
