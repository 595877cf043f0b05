"""Draw the docs' two sample images, ``cat.jpg`` and ``dog.png``, with Pillow (a few kB each).

They are committed, so every README and docs/api.md command runs as written from a fresh clone; run this
again only to change them: ``.venv/bin/python examples/make_samples.py``. The drawings are deterministic
(no randomness).
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

HERE = Path(__file__).parent


def cat() -> Image.Image:
    """A tabby-ish cat's head on a blue wall, 320 x 240."""
    image = Image.new("RGB", (320, 240), (70, 110, 160))
    draw = ImageDraw.Draw(image)
    fur, dark, pink = (200, 140, 70), (120, 80, 40), (230, 150, 160)
    draw.polygon([(95, 95), (110, 25), (150, 75)], fill=fur)  # ears
    draw.polygon([(225, 95), (210, 25), (170, 75)], fill=fur)
    draw.ellipse((85, 55, 235, 205), fill=fur)  # head
    for y in (70, 85, 100):  # forehead stripes
        draw.line((140, y, 180, y), fill=dark, width=5)
    draw.ellipse((120, 110, 145, 135), fill=(90, 170, 60))  # eyes
    draw.ellipse((175, 110, 200, 135), fill=(90, 170, 60))
    draw.ellipse((128, 113, 137, 132), fill=(10, 10, 10))
    draw.ellipse((183, 113, 192, 132), fill=(10, 10, 10))
    draw.polygon([(152, 150), (168, 150), (160, 160)], fill=pink)  # nose
    for dy in (-6, 0, 6):  # whiskers
        draw.line((150, 163, 95, 160 + 2 * dy), fill=(240, 240, 240), width=2)
        draw.line((170, 163, 225, 160 + 2 * dy), fill=(240, 240, 240), width=2)
    return image


def dog() -> Image.Image:
    """A brown dog's head with floppy ears on grass, 256 x 192."""
    image = Image.new("RGB", (256, 192), (120, 180, 90))
    draw = ImageDraw.Draw(image)
    fur, ear = (160, 110, 60), (100, 65, 35)
    draw.ellipse((58, 30, 198, 170), fill=fur)  # head
    draw.ellipse((35, 40, 85, 140), fill=ear)  # ears
    draw.ellipse((171, 40, 221, 140), fill=ear)
    draw.ellipse((98, 100, 158, 160), fill=(220, 190, 150))  # muzzle
    draw.ellipse((115, 105, 141, 125), fill=(20, 20, 20))  # nose
    draw.ellipse((95, 70, 113, 88), fill=(20, 20, 20))  # eyes
    draw.ellipse((143, 70, 161, 88), fill=(20, 20, 20))
    draw.chord((108, 125, 148, 155), 0, 180, fill=(200, 60, 80))  # tongue
    return image


def main() -> None:
    """Write both samples next to this script."""
    cat().save(HERE / "cat.jpg", "JPEG", quality=85)
    # Few colours: a palette PNG stays small; the gateway converts it to RGB like any other image.
    dog().quantize(colors=16).save(HERE / "dog.png", "PNG", optimize=True)


if __name__ == "__main__":
    main()
