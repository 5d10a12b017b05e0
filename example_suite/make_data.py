"""Generate the synthetic images of the example concept-test suite.

Everything here is procedural (numpy + PIL only) so that the example is
self-contained, needs no download, and the "ground truth" of what each model
should have learnt is known by construction:

* class ``zebra``   <- striped texture
* class ``leopard`` <- dotted texture
* class ``snake``   <- zigzagged texture

plus a ``watermark`` concept (a small fixed patch in the bottom-right corner)
that ``train.py`` turns into a shortcut for the ``shortcut`` model, and
"random" natural-ish images (smooth noise, blobs, gradients, plain shapes) that serve both as
backgrounds and as the random counterpart sets TCAV needs.

The generator functions are imported by ``train.py``, which draws its training
data in memory from them with a different seed; this script only writes the
concept sets and the held-out class inputs.

Run ``python example_suite/make_data.py`` (deterministic, a few seconds).
"""

from __future__ import annotations

import argparse
import shutil
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

#: Side length of every generated image, in pixels (images are square RGB).
IMAGE_SIZE = 32

#: Class names, index = label. Kept in sync with ``model.CLASSES``.
CLASSES = ("zebra", "leopard", "snake")

#: Default seed of the images written to disk (training uses other seeds).
DISK_SEED = 0

HERE = Path(__file__).resolve().parent

#: The watermark: a white square with a black "X", fixed in the bottom-right
#: corner. Fixed pattern + fixed place is what makes it an easy shortcut.
WATERMARK_SIZE = 8
WATERMARK_MARGIN = 1

FloatImage = np.ndarray  # HxWx3 float32 in [0, 1]
UInt8Image = np.ndarray  # HxWx3 uint8


def rng_for(name: str, seed: int) -> np.random.Generator:
    """Return a generator for one named image set.

    Each set gets its own stream (keyed by a stable hash of its name), so
    adding, removing or reordering sets never changes the images of another.
    """
    return np.random.default_rng([seed, zlib.crc32(name.encode("utf-8"))])


# --------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------


def _coords(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates ``(y, x)``, each of shape (size, size)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    return yy + 0.5, xx + 0.5


def _rotated(size: int, theta: float) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates ``(u, v)`` rotated by ``theta`` about the image centre."""
    yy, xx = _coords(size)
    c = size / 2.0
    x, y = xx - c, yy - c
    u = x * np.cos(theta) + y * np.sin(theta)
    v = -x * np.sin(theta) + y * np.cos(theta)
    return u, v


def _luma(colour: np.ndarray) -> float:
    return float(colour @ np.array([0.299, 0.587, 0.114], dtype=np.float32))


def _colour_pair(rng: np.random.Generator, min_contrast: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """Two random colours whose luminance differs by at least ``min_contrast``.

    Textures are defined by shape, not colour, so colours are random; a luma
    gap keeps the pattern visible whatever the colours are.
    """
    while True:
        a = rng.uniform(0.0, 1.0, 3).astype(np.float32)
        b = rng.uniform(0.0, 1.0, 3).astype(np.float32)
        if abs(_luma(a) - _luma(b)) >= min_contrast:
            return a, b


def _paint(mask: np.ndarray, fg: np.ndarray, bg: np.ndarray, contrast: float = 1.0) -> FloatImage:
    """Colour a coverage mask (1 = foreground); ``contrast`` < 1 fades the fg into the bg."""
    fg = bg + contrast * (fg - bg)
    return bg[None, None, :] * (1.0 - mask[..., None]) + fg[None, None, :] * mask[..., None]


def _finish(rng: np.random.Generator, img: FloatImage, noise: float = 0.03) -> UInt8Image:
    """Add mild sensor noise and quantise to uint8.

    Quantising here means images trained on in memory are bit-identical in
    kind to the PNGs written to disk.
    """
    img = img + rng.normal(0.0, noise, img.shape).astype(np.float32)
    return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _upsample(small: np.ndarray, size: int) -> np.ndarray:
    """Bicubic upsampling of an (h, w) float map to (size, size) via PIL."""
    im = Image.fromarray(small.astype(np.float32))  # mode "F"
    return np.asarray(im.resize((size, size), Image.BICUBIC), dtype=np.float32)


# --------------------------------------------------------------------------
# textures (float images in [0, 1], before noise/quantisation)
# --------------------------------------------------------------------------


def _striped(rng: np.random.Generator, size: int, contrast: float) -> FloatImage:
    """Parallel straight stripes of random angle, period, duty cycle and colours."""
    theta = rng.uniform(0.0, np.pi)
    period = rng.uniform(4.0, 9.0)
    duty = rng.uniform(0.35, 0.65)
    u, v = _rotated(size, theta)
    # A gentle wobble (jitter) so stripes are not perfectly ruled, but far
    # weaker than the zigzags' amplitude so the two stay distinct.
    wobble = rng.uniform(0.0, 0.5) * np.sin(2 * np.pi * u / rng.uniform(15.0, 40.0) + rng.uniform(0, 2 * np.pi))
    t = (v + wobble) / period + rng.uniform(0.0, 1.0)
    s = np.cos(2 * np.pi * t) - np.cos(np.pi * duty)  # > 0 inside a stripe
    slope = 2 * np.pi / period * max(np.sin(np.pi * duty), 0.3)
    mask = np.clip(0.5 + s / slope, 0.0, 1.0)  # ~1 px anti-aliased edge
    fg, bg = _colour_pair(rng)
    return _paint(mask, fg, bg, contrast)


def _dotted(rng: np.random.Generator, size: int, contrast: float) -> FloatImage:
    """Round dots on a jittered, rotated grid (irregular but evenly spread, like spots)."""
    spacing = rng.uniform(5.0, 9.0)
    radius = rng.uniform(1.2, 0.3 * spacing)
    theta = rng.uniform(0.0, np.pi)
    n = int(np.ceil(size * 1.5 / spacing)) + 1
    gy, gx = np.mgrid[-n:n + 1, -n:n + 1].astype(np.float32) * spacing
    pts = np.stack([gx.ravel(), gy.ravel()], axis=1)
    pts += rng.uniform(0.0, spacing, 2)  # random grid offset
    pts += rng.uniform(-0.25, 0.25, pts.shape) * spacing  # per-dot jitter
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]], dtype=np.float32)
    pts = pts @ rot.T + size / 2.0
    keep = (
        (pts[:, 0] > -radius * 2) & (pts[:, 0] < size + radius * 2)
        & (pts[:, 1] > -radius * 2) & (pts[:, 1] < size + radius * 2)
        & (rng.uniform(0.0, 1.0, len(pts)) > 0.1)  # a few missing spots
    )
    pts = pts[keep]
    radii = radius * rng.uniform(0.8, 1.2, len(pts))
    yy, xx = _coords(size)
    dist = np.sqrt((xx[None] - pts[:, 0, None, None]) ** 2 + (yy[None] - pts[:, 1, None, None]) ** 2)
    cover = np.clip(radii[:, None, None] - dist + 0.5, 0.0, 1.0)
    mask = cover.max(axis=0) if len(pts) else np.zeros((size, size), np.float32)
    fg, bg = _colour_pair(rng)
    return _paint(mask, fg, bg, contrast)


def _zigzagged(rng: np.random.Generator, size: int, contrast: float) -> FloatImage:
    """Parallel zigzag (triangle-wave) lines of random angle, period, amplitude and width."""
    theta = rng.uniform(0.0, np.pi)
    period = rng.uniform(6.0, 11.0)
    amp = rng.uniform(1.5, 3.0)  # peak-to-peak is 2 * amp
    half_width = rng.uniform(0.7, 1.4)
    spacing = rng.uniform(max(6.0, 2 * amp + 2 * half_width + 1.5), 11.0)
    u, v = _rotated(size, theta)
    phase_u = rng.uniform(0.0, 1.0)
    x = u / period + phase_u
    tri = 1.0 - 4.0 * np.abs(x - np.round(x))  # triangle wave in [-1, 1]
    dv = v - amp * tri + rng.uniform(0.0, spacing)
    dv = dv - spacing * np.round(dv / spacing)  # offset to the nearest line
    dist = np.abs(dv) / np.sqrt(1.0 + (4.0 * amp / period) ** 2)  # ~ perpendicular distance
    mask = np.clip(half_width - dist + 0.5, 0.0, 1.0)
    fg, bg = _colour_pair(rng)
    return _paint(mask, fg, bg, contrast)


TextureFn = Callable[[np.random.Generator, int, float], FloatImage]

#: Texture generator per texture concept name.
TEXTURES: dict[str, TextureFn] = {
    "striped": _striped,
    "dotted": _dotted,
    "zigzagged": _zigzagged,
}

#: Which texture defines which class (index = label).
CLASS_TEXTURE = ("striped", "dotted", "zigzagged")


# --------------------------------------------------------------------------
# "random" natural-ish images
# --------------------------------------------------------------------------


def _smooth_noise(rng: np.random.Generator, size: int) -> FloatImage:
    """Coloured low-frequency noise: random colours on a coarse grid, upsampled."""
    cells = int(rng.integers(2, 7))
    return np.clip(np.stack([_upsample(rng.uniform(0, 1, (cells, cells)), size) for _ in range(3)], -1), 0, 1)


def _gradient(rng: np.random.Generator, size: int) -> FloatImage:
    """A linear colour gradient at a random angle."""
    u, _ = _rotated(size, rng.uniform(0.0, 2 * np.pi))
    t = np.clip(u / size + 0.5, 0.0, 1.0)[..., None]
    a, b = rng.uniform(0, 1, 3), rng.uniform(0, 1, 3)
    return (a * (1 - t) + b * t).astype(np.float32)


def _blobs(rng: np.random.Generator, size: int) -> FloatImage:
    """A few soft elliptical colour blobs on a flat background."""
    img = np.ones((size, size, 3), np.float32) * rng.uniform(0, 1, 3).astype(np.float32)
    yy, xx = _coords(size)
    for _ in range(int(rng.integers(1, 5))):
        cy, cx = rng.uniform(0, size, 2)
        ry, rx = rng.uniform(3.0, size * 0.6, 2)
        theta = rng.uniform(0, np.pi)
        x, y = xx - cx, yy - cy
        u = (x * np.cos(theta) + y * np.sin(theta)) / rx
        v = (-x * np.sin(theta) + y * np.cos(theta)) / ry
        alpha = np.exp(-2.0 * (u**2 + v**2))[..., None] * rng.uniform(0.5, 1.0)
        img = img * (1 - alpha) + rng.uniform(0, 1, 3).astype(np.float32) * alpha
    return img


def _shapes(rng: np.random.Generator, size: int) -> FloatImage:
    """A few large hard-edged rectangles/discs: sharp edges without any texture.

    Without them the random sets would be all soft, and a concept's CAV would
    partly learn "has sharp edges" rather than the concept itself.
    """
    img = np.ones((size, size, 3), np.float32) * rng.uniform(0, 1, 3).astype(np.float32)
    yy, xx = _coords(size)
    for _ in range(int(rng.integers(1, 4))):
        cy, cx = rng.uniform(0, size, 2)
        hy, hx = rng.uniform(3.0, size * 0.4, 2)
        x, y = xx - cx, yy - cy
        if rng.uniform() < 0.5:  # rotated rectangle
            theta = rng.uniform(0, np.pi)
            u = x * np.cos(theta) + y * np.sin(theta)
            v = -x * np.sin(theta) + y * np.cos(theta)
            inside = np.minimum(hx - np.abs(u), hy - np.abs(v))
        else:  # disc
            inside = hx - np.sqrt(x**2 + y**2)
        mask = np.clip(inside + 0.5, 0.0, 1.0)[..., None]
        img = img * (1 - mask) + rng.uniform(0, 1, 3).astype(np.float32) * mask
    return img


_NATURAL = (_smooth_noise, _gradient, _blobs, _shapes)


def _natural(rng: np.random.Generator, size: int) -> FloatImage:
    """One natural-ish image: a base generator, sometimes blended with another."""
    img = _NATURAL[int(rng.integers(len(_NATURAL)))](rng, size)
    if rng.uniform() < 0.5:
        other = _NATURAL[int(rng.integers(len(_NATURAL)))](rng, size)
        a = rng.uniform(0.2, 0.8)
        img = img * (1 - a) + other * a
    return img.astype(np.float32)


# --------------------------------------------------------------------------
# public generators (uint8 images, what is saved / trained on)
# --------------------------------------------------------------------------


def texture_image(rng: np.random.Generator, texture: str, size: int = IMAGE_SIZE, contrast: float = 1.0) -> UInt8Image:
    """A full-frame texture image: the examples of a texture concept."""
    return _finish(rng, TEXTURES[texture](rng, size, contrast))


def random_image(rng: np.random.Generator, size: int = IMAGE_SIZE) -> UInt8Image:
    """A natural-ish image with no particular texture: TCAV's random counterpart sets."""
    # Extra per-image noise level so "random" is not simply "smooth".
    return _finish(rng, _natural(rng, size), noise=rng.uniform(0.01, 0.08))


def add_watermark(img: UInt8Image) -> UInt8Image:
    """Return a copy of ``img`` with the watermark stamped in the bottom-right corner."""
    out = img.copy()
    s, m = WATERMARK_SIZE, WATERMARK_MARGIN
    patch = np.full((s, s), 255, np.uint8)
    idx = np.arange(s)
    patch[idx, idx] = 0
    patch[idx, s - 1 - idx] = 0
    h, w = out.shape[:2]
    out[h - m - s:h - m, w - m - s:w - m, :] = patch[..., None]
    return out


def watermark_image(rng: np.random.Generator, size: int = IMAGE_SIZE) -> UInt8Image:
    """A random natural-ish image carrying the watermark: the watermark concept's examples."""
    return add_watermark(random_image(rng, size))


def class_image(
    rng: np.random.Generator,
    label: int,
    size: int = IMAGE_SIZE,
    contrast: float = 1.0,
) -> UInt8Image:
    """An image of class ``label``: its texture as an "animal body" on a natural background.

    The body is a soft-edged random ellipse (sometimes the whole frame), so the
    model must find the texture rather than rely on position; ``contrast`` < 1
    fades the texture (``train.py`` uses this to make stripes weak/ambiguous).
    """
    texture = TEXTURES[CLASS_TEXTURE[label]](rng, size, contrast)
    background = _natural(rng, size)
    if rng.uniform() < 0.3:
        body = np.ones((size, size), np.float32)
    else:
        yy, xx = _coords(size)
        cy, cx = size / 2 + rng.uniform(-0.15, 0.15, 2) * size
        ry, rx = rng.uniform(0.3, 0.6, 2) * size
        theta = rng.uniform(0, np.pi)
        x, y = xx - cx, yy - cy
        u = (x * np.cos(theta) + y * np.sin(theta)) / rx
        v = (-x * np.sin(theta) + y * np.cos(theta)) / ry
        r = np.sqrt(u**2 + v**2)
        body = np.clip((1.0 - r) * min(rx, ry) + 0.5, 0.0, 1.0)  # ~1 px soft edge
    img = background * (1 - body[..., None]) + texture * body[..., None]
    return _finish(rng, img)


# --------------------------------------------------------------------------
# writing the on-disk sets
# --------------------------------------------------------------------------


def _write_set(directory: Path, images: list[UInt8Image]) -> None:
    """Replace ``directory``'s PNGs with ``images`` as 000.png, 001.png, ..."""
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    for i, img in enumerate(images):
        Image.fromarray(img).save(directory / f"{i:03d}.png", optimize=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="root of concepts/ and inputs/ (default: this folder)")
    parser.add_argument("--seed", type=int, default=DISK_SEED)
    parser.add_argument("--n-concept", type=int, default=30, help="images per texture/watermark concept")
    parser.add_argument("--n-random-sets", type=int, default=10)
    parser.add_argument("--n-random", type=int, default=25, help="images per random set")
    parser.add_argument("--n-input", type=int, default=20, help="held-out images per class")
    args = parser.parse_args(argv)

    concepts, inputs = args.out / "concepts", args.out / "inputs"
    sets: dict[Path, list[UInt8Image]] = {}
    for name in TEXTURES:
        rng = rng_for(f"concept/{name}", args.seed)
        sets[concepts / name] = [texture_image(rng, name) for _ in range(args.n_concept)]
    rng = rng_for("concept/watermark", args.seed)
    sets[concepts / "watermark"] = [watermark_image(rng) for _ in range(args.n_concept)]
    for k in range(args.n_random_sets):
        rng = rng_for(f"concept/random_{k}", args.seed)
        sets[concepts / f"random_{k}"] = [random_image(rng) for _ in range(args.n_random)]
    for label, cls in enumerate(CLASSES):
        rng = rng_for(f"input/{cls}", args.seed)
        sets[inputs / cls] = [class_image(rng, label) for _ in range(args.n_input)]

    for directory, images in sets.items():
        _write_set(directory, images)
        print(f"{directory.relative_to(args.out)}: {len(images)} images")


if __name__ == "__main__":
    main()
