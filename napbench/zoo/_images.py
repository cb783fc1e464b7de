"""Natural-image inputs for data-dependent zero-cost proxies, from photographs shipped in packages.

No image data set can be downloaded here, but scikit-image ships natural photographs inside
its wheel (``skimage/data``). :func:`natural_images` draws a seeded batch of patches from them:

1. pick one of :data:`IMAGE_FILES` uniformly;
2. crop a random window whose side is a uniform fraction in ``[0.25, 1]`` of the image's
   shorter side, with the target's aspect ratio, at a uniform random position; flip it
   left-right with probability 1/2;
3. resize it to the target ``(H, W)`` (bilinear with antialiasing);
4. map channels: RGB as is, grey replicated; a 1-channel target takes the luminance mean, a
   target with more than 3 channels repeats R, G, B cyclically;
5. normalise each channel with the mean and standard deviation of the whole image pool
   (so a batch has roughly zero mean and unit variance, like the Gaussian inputs, but keeps
   the spatial correlations, edges and textures of photographs).

Same ``(shape, batch_size, seed)`` -> same batch. The decoded pool is cached per process
(read-only, a few MB).
"""

from __future__ import annotations

import functools
import os

import numpy as np
import torch
import torch.nn.functional as F

from napbench.errors import InvalidArgumentError, NapbenchError

#: natural photographs in scikit-image's ``skimage/data`` (synthetic test patterns left out)
IMAGE_FILES: tuple[str, ...] = (
    "astronaut.png", "brick.png", "camera.png", "chelsea.png", "coffee.png", "coins.png", "grass.png", "gravel.png",
    "hubble_deep_field.jpg", "ihc.png", "moon.png", "motorcycle_left.png", "motorcycle_right.png", "page.png",
    "retina.jpg", "rocket.jpg", "text.png", "cell.png", "microaneurysms.png",
)  # fmt: skip


def _data_dir() -> str:
    try:
        import skimage.data
    except ImportError as exc:  # pragma: no cover - a pinned dependency
        raise NapbenchError(f"natural-image inputs need scikit-image ({exc}); expected it installed with napbench") from None
    return os.path.dirname(skimage.data.__file__)


@functools.lru_cache(maxsize=1)
def image_pool() -> tuple[tuple[torch.Tensor, ...], torch.Tensor, torch.Tensor]:
    """The decoded images (float32 ``(3, H, W)`` in [0, 1]) and the pool's per-channel mean and std."""
    import skimage.io

    d = _data_dir()
    images = []
    for name in IMAGE_FILES:
        path = os.path.join(d, name)
        if not os.path.isfile(path):
            continue
        a = np.asarray(skimage.io.imread(path))
        a = a.astype(np.float32) / (65535.0 if a.dtype == np.uint16 else 255.0 if a.dtype == np.uint8 else max(float(a.max()), 1.0))
        if a.ndim == 2:
            a = np.repeat(a[:, :, None], 3, axis=2)
        images.append(torch.from_numpy(np.ascontiguousarray(a[:, :, :3].transpose(2, 0, 1))))
    if len(images) < 5:
        raise NapbenchError(f"only {len(images)} of the {len(IMAGE_FILES)} scikit-image photographs were found in {d}; expected them all")
    flat = torch.cat([im.reshape(3, -1) for im in images], dim=1)
    return tuple(images), flat.mean(1), flat.std(1)


def natural_images(input_shape: tuple[int, int, int], batch_size: int, *, seed: int = 0) -> torch.Tensor:
    """A seeded ``(batch_size, C, H, W)`` float32 batch of normalised natural-image patches."""
    if len(input_shape) != 3 or min(input_shape) < 1:
        raise InvalidArgumentError(f"input_shape is {input_shape!r}; expected (C, H, W) with positive sizes")
    c, h, w = (int(v) for v in input_shape)
    images, mean, std = image_pool()
    rng = np.random.default_rng(int(seed))
    out = torch.empty((int(batch_size), c, h, w), dtype=torch.float32)
    for b in range(int(batch_size)):
        im = images[int(rng.integers(len(images)))]
        ih, iw = im.shape[1:]
        side = float(rng.uniform(0.25, 1.0)) * min(ih, iw)
        ch = max(1, min(ih, round(side * min(1.0, h / w))))
        cw = max(1, min(iw, round(side * min(1.0, w / h))))
        top, left = int(rng.integers(ih - ch + 1)), int(rng.integers(iw - cw + 1))
        patch = im[:, top : top + ch, left : left + cw]
        if rng.random() < 0.5:
            patch = patch.flip(-1)
        patch = F.interpolate(patch[None], size=(h, w), mode="bilinear", antialias=True, align_corners=False)[0]
        patch = (patch - mean[:, None, None]) / std[:, None, None]
        if c == 3:
            out[b] = patch
        elif c == 1:
            out[b] = patch.mean(0, keepdim=True)
        else:
            out[b] = patch[torch.arange(c) % 3]
    return out
