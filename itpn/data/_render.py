"""Drawing for the generated stand-in data sets: each class is a fixed shape + colour + texture.

Everything here is deterministic given the numpy ``Generator`` passed in. Polygons are rasterised with
pycocotools, the same code that turns COCO polygons into masks, so painted pixels and annotations agree.
"""

from __future__ import annotations

import colorsys
import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

SHAPES = ("circle", "square", "triangle", "star", "cross", "hexagon", "diamond", "pentagon")
TEXTURES = ("solid", "stripes", "checker")


@dataclass(frozen=True)
class Style:
    shape: str
    colour: tuple[int, int, int]
    texture: str


def class_style(index: int) -> Style:
    """The look of class ``index``: shape cycles fastest, hue follows the golden ratio, texture by block."""
    hue = (index * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 0.95)
    return Style(
        shape=SHAPES[index % len(SHAPES)],
        colour=(int(r * 255), int(g * 255), int(b * 255)),
        texture=TEXTURES[(index // len(SHAPES)) % len(TEXTURES)],
    )


def shape_polygon(shape: str, cx: float, cy: float, radius: float, angle: float) -> np.ndarray:
    """Vertices ``(K, 2)`` of ``shape`` centred at ``(cx, cy)`` with circumradius ``radius``."""
    if shape == "circle":
        t = np.linspace(0.0, 2 * np.pi, 24, endpoint=False)
        pts = np.stack([np.cos(t), np.sin(t)], 1)
    elif shape in ("triangle", "square", "pentagon", "hexagon"):
        k = {"triangle": 3, "square": 4, "pentagon": 5, "hexagon": 6}[shape]
        t = np.linspace(0.0, 2 * np.pi, k, endpoint=False) + np.pi / k
        pts = np.stack([np.cos(t), np.sin(t)], 1)
    elif shape == "star":
        t = np.linspace(0.0, 2 * np.pi, 10, endpoint=False)
        r = np.where(np.arange(10) % 2 == 0, 1.0, 0.45)
        pts = np.stack([r * np.cos(t), r * np.sin(t)], 1)
    elif shape == "cross":
        a = 0.35
        pts = np.array(
            [[a, 1], [-a, 1], [-a, a], [-1, a], [-1, -a], [-a, -a], [-a, -1], [a, -1], [a, -a], [1, -a], [1, a], [a, a]]
        ) / np.hypot(1, a)
    elif shape == "diamond":
        pts = np.array([[1.0, 0.0], [0.0, 0.55], [-1.0, 0.0], [0.0, -0.55]])
    else:
        raise ValueError(f"unknown shape {shape!r}; known: {SHAPES}")
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return pts @ rot.T * radius + np.array([cx, cy])


def rotated_rectangle(cx: float, cy: float, length: float, width: float, angle: float) -> np.ndarray:
    """Corners ``(4, 2)`` of an oriented rectangle, clockwise in image coordinates (y down)."""
    dx, dy = np.cos(angle), np.sin(angle)
    u = np.array([dx, dy]) * length / 2
    v = np.array([-dy, dx]) * width / 2
    c = np.array([cx, cy])
    return np.stack([c - u - v, c + u - v, c + u + v, c - u + v])


def rasterize(polygon: np.ndarray, height: int, width: int) -> np.ndarray:
    """Boolean ``(H, W)`` mask of a polygon, rasterised exactly as pycocotools does for COCO polygons."""
    from pycocotools import mask as mask_utils  # pycocotools is imported where it is used: itpn.data, and so the pre-training, import without it

    rles = mask_utils.frPyObjects([np.asarray(polygon, dtype=np.float64).ravel().tolist()], height, width)
    return mask_utils.decode(rles)[:, :, 0].astype(bool)


def rasterize_window(polygon: np.ndarray, height: int, width: int) -> tuple[int, int, np.ndarray]:
    """Rasterise over the polygon's integer bounding window only: ``(y0, x0, mask)``.

    Faster on large images, but pycocotools' sub-pixel rounding can differ from :func:`rasterize` by a
    border pixel, so annotations that are polygons must be painted with :func:`rasterize`.
    """
    x0 = max(int(np.floor(polygon[:, 0].min())) - 1, 0)
    y0 = max(int(np.floor(polygon[:, 1].min())) - 1, 0)
    x1 = min(int(np.ceil(polygon[:, 0].max())) + 2, width)
    y1 = min(int(np.ceil(polygon[:, 1].max())) + 2, height)
    local = polygon - np.array([x0, y0])
    return y0, x0, rasterize(local, y1 - y0, x1 - x0)


def texture_field(texture: str, height: int, width: int, period: int, phase: float) -> np.ndarray:
    """Brightness factor ``(H, W)`` in [0.55, 1] for a texture."""
    yy, xx = np.mgrid[0:height, 0:width]
    if texture == "solid":
        return np.ones((height, width))
    if texture == "stripes":
        return np.where(((xx + yy + phase) // period) % 2 == 0, 1.0, 0.55)
    if texture == "checker":
        return np.where(((xx // period) + (yy // period)) % 2 == 0, 1.0, 0.55)
    raise ValueError(f"unknown texture {texture!r}; known: {TEXTURES}")


def paint(canvas: np.ndarray, y0: int, x0: int, mask: np.ndarray, style: Style, rng: np.random.Generator) -> None:
    """Fill ``mask`` (placed at ``(y0, x0)``) on the uint8 ``canvas`` with the style's colour and texture."""
    h, w = mask.shape
    period = int(rng.integers(3, 6))
    shade = texture_field(style.texture, h, w, period, float(rng.integers(0, period)))
    colour = np.array(style.colour, dtype=np.float64) * rng.uniform(0.85, 1.0)
    pixels = shade[..., None] * colour + rng.normal(0.0, 6.0, (h, w, 3))
    region = canvas[y0 : y0 + h, x0 : x0 + w]
    region[mask] = np.clip(pixels[mask], 0, 255).astype(np.uint8)


def background(height: int, width: int, rng: np.random.Generator, *, noise: float = 8.0) -> np.ndarray:
    """A low-saturation smooth gradient with mild noise, ``(H, W, 3)`` uint8."""
    base = rng.uniform(70, 150)
    gy = np.linspace(0, 1, height)[:, None, None] * rng.uniform(-40, 40, 3)
    gx = np.linspace(0, 1, width)[None, :, None] * rng.uniform(-40, 40, 3)
    image = base + gy + gx + rng.normal(0.0, noise, (height, width, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def encode_image(pixels: np.ndarray, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image = Image.fromarray(pixels)
    if fmt == "JPEG":
        image.save(buffer, format="JPEG", quality=92)
    else:
        image.save(buffer, format=fmt, compress_level=1)
    return buffer.getvalue()


def place_without_overlap(
    rng: np.random.Generator,
    count: int,
    height: int,
    width: int,
    radius_range: tuple[float, float],
    taken: list[tuple[float, float, float]] | None = None,
    tries: int = 60,
) -> list[tuple[float, float, float]]:
    """Up to ``count`` circles ``(cx, cy, r)`` inside the image that overlap neither each other nor ``taken``."""
    placed = list(taken or [])
    start = len(placed)
    for _ in range(count):
        for _ in range(tries):
            r = rng.uniform(*radius_range)
            cx = rng.uniform(r + 1, width - r - 1)
            cy = rng.uniform(r + 1, height - r - 1)
            if all(np.hypot(cx - px, cy - py) > r + pr + 2 for px, py, pr in placed):
                placed.append((cx, cy, r))
                break
    return placed[start:]
