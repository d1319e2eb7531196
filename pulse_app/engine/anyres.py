"""LLaVA-NeXT's anyres images: which tiles an image becomes, how many image tokens that makes,
and the pixel values of those tiles (LLaVA ``mm_utils.process_anyres_image`` + CLIP's processor).

This is what training and the app feed the vision tower, reproduced exactly: the model was
trained on these pixels. Light on purpose (PIL and numpy; torch only inside
:func:`anyres_pixel_values`), so data pipelines import it without the model classes.

Geometry conventions: LLaVA writes sizes and pinpoints as (width, height), transformers as
(height, width); every function here says which it takes.

>>> geo = AnyresGeometry(tile_px=336, patch_px=14, pinpoints_wh=PULSE_PINPOINTS_WH)
>>> geo.best_resolution_wh((1600, 800)), geo.image_token_count((1600, 800))
((672, 336), 1728)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np
from PIL import Image

from pulse_app.errors import ModelUnavailable

if TYPE_CHECKING:
    import torch

#: LLaVA's ``mm_patch_merge_type`` values (how tile features become image tokens).
MERGE_TYPES = ("flat", "spatial", "spatial_unpad")
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
PULSE_PINPOINTS_WH = ((336, 672), (672, 336), (672, 672), (1008, 336), (336, 1008))


# -- geometry: which tiles an image becomes, and how many image tokens that makes -----------------

def select_best_resolution_wh(size_wh: tuple[int, int],
                              pinpoints_wh: Sequence[tuple[int, int]]) -> tuple[int, int]:
    """LLaVA's ``select_best_resolution``: the pinpoint keeping most of the image's pixels
    (effective resolution), ties broken by least padding (waste), then by list order."""
    width, height = size_wh
    best, best_effective, best_waste = None, 0, float("inf")
    for pin_w, pin_h in pinpoints_wh:
        scale = min(pin_w / width, pin_h / height)
        effective = min(int(width * scale) * int(height * scale), width * height)
        waste = pin_w * pin_h - effective
        if effective > best_effective or (effective == best_effective and waste < best_waste):
            best, best_effective, best_waste = (pin_w, pin_h), effective, waste
    return best


def unpad_size_original(grid_hw: tuple[int, int], size_wh: tuple[int, int]) -> tuple[int, int]:
    """Rows and columns of the feature grid kept by LLaVA's ``unpad_image`` (int() rounding).

    transformers computes ``int(round(x, 7))`` instead of ``int(x)``: where ``x`` lands just
    below an integer in floating point, transformers keeps 2 more rows (or columns).
    """
    rows, cols = grid_hw
    width, height = size_wh
    if width / height > cols / rows:
        new_rows = int(height * (cols / width))
        pad = (rows - new_rows) // 2
        return rows - 2 * pad, cols
    new_cols = int(width * (rows / height))
    pad = (cols - new_cols) // 2
    return rows, cols - 2 * pad


@dataclass(frozen=True)
class AnyresGeometry:
    """How a LLaVA-NeXT model cuts an image into tiles and turns them into image tokens.

    ``tile_px`` is the vision tower's input size (336 for CLIP ViT-L/14-336), ``patch_px`` its
    patch size, ``pinpoints_wh`` the allowed grid resolutions as (width, height) in pixels.
    """

    tile_px: int
    patch_px: int
    pinpoints_wh: tuple[tuple[int, int], ...]
    merge_type: str = "flat"
    with_cls: bool = False           # vision_feature_select_strategy "full" keeps the CLS token

    def __post_init__(self):
        if self.merge_type not in MERGE_TYPES:
            raise ModelUnavailable(f"unsupported mm_patch_merge_type {self.merge_type!r}",
                                   hint=f"supported: {', '.join(MERGE_TYPES)}")
        if self.with_cls and self.merge_type != "flat":
            raise ModelUnavailable("the 'cls_patch' feature selection only works with 'flat' merging")

    @property
    def patches_per_side(self) -> int:
        return self.tile_px // self.patch_px

    @property
    def tokens_per_tile(self) -> int:
        return self.patches_per_side ** 2 + int(self.with_cls)

    def best_resolution_wh(self, size_wh: tuple[int, int]) -> tuple[int, int]:
        return select_best_resolution_wh(size_wh, self.pinpoints_wh)

    def grid_cols_rows(self, size_wh: tuple[int, int]) -> tuple[int, int]:
        """Tiles across and down for an image of ``size_wh`` pixels."""
        width, height = self.best_resolution_wh(size_wh)
        return math.ceil(width / self.tile_px), math.ceil(height / self.tile_px)

    def image_token_count(self, size_wh: tuple[int, int]) -> int:
        """Image tokens the model inserts for one image (what the prompt must reserve).

        >>> g = AnyresGeometry(336, 14, PULSE_PINPOINTS_WH)
        >>> [g.image_token_count(s) for s in [(672, 672), (2000, 600), (300, 300)]]
        [2880, 2304, 1728]
        """
        cols, rows = self.grid_cols_rows(size_wh)
        if self.merge_type in ("flat", "spatial"):
            return self.tokens_per_tile * (1 + cols * rows)
        side = self.patches_per_side
        kept_rows, kept_cols = unpad_size_original((rows * side, cols * side), size_wh)
        return side * side + kept_rows * (kept_cols + 1)

    @classmethod
    def from_config(cls, config) -> "AnyresGeometry":
        """From a (converted) ``LlavaNextConfig``; its pinpoints are (height, width)."""
        vision = config.vision_config
        return cls(tile_px=vision.image_size, patch_px=vision.patch_size,
                   pinpoints_wh=tuple((w, h) for h, w in config.image_grid_pinpoints),
                   merge_type=getattr(config, "mm_patch_merge_type", "spatial_unpad"),
                   with_cls=config.vision_feature_select_strategy == "full")


# -- pixels: LLaVA mm_utils.process_anyres_image + the CLIP image processor -----------------------

def anyres_crops(image: Image.Image, geometry: AnyresGeometry) -> list[Image.Image]:
    """The base image then the tiles, row by row, as LLaVA cuts them.

    The base image is the *whole* image squashed to tile x tile (aspect ratio not kept). The
    tiles come from the image resized into the best pinpoint keeping its aspect ratio (bicubic,
    size rounded up) and pasted centred on black.
    """
    image = image.convert("RGB")
    target_w, target_h = geometry.best_resolution_wh(image.size)
    width, height = image.size
    scale_w, scale_h = target_w / width, target_h / height    # this float order, as LLaVA:
    if scale_w < scale_h:                                      # 300 * (336/300) -> 337 rows
        new_w, new_h = target_w, min(math.ceil(height * scale_w), target_h)
    else:
        new_w, new_h = min(math.ceil(width * scale_h), target_w), target_h
    canvas = Image.new("RGB", (target_w, target_h), (0, 0, 0))
    canvas.paste(image.resize((new_w, new_h), Image.BICUBIC),
                 ((target_w - new_w) // 2, (target_h - new_h) // 2))
    tile = geometry.tile_px
    tiles = [canvas.crop((x, y, x + tile, y + tile))
             for y in range(0, target_h, tile) for x in range(0, target_w, tile)]
    return [image.resize((tile, tile), Image.BICUBIC)] + tiles


def clip_normalize(crop: Image.Image, mean=CLIP_MEAN, std=CLIP_STD) -> np.ndarray:
    """One tile-sized crop -> float32 (3, H, W), as CLIPImageProcessor computes it.

    (Its resize to the tile size and centre crop are identities here: every crop is tile-sized.)
    """
    pixels = (np.asarray(crop, dtype=np.uint8).astype(np.float64) * (1 / 255)).astype(np.float32)
    pixels = (pixels - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return pixels.transpose(2, 0, 1)


def anyres_pixel_values(image: Image.Image, geometry: AnyresGeometry,
                        mean=CLIP_MEAN, std=CLIP_STD) -> torch.Tensor:
    """``pixel_values`` for one image: float32 tensor (1 + tiles, 3, tile, tile)."""
    import torch

    return torch.from_numpy(np.stack([clip_normalize(c, mean, std)
                                      for c in anyres_crops(image, geometry)]))

