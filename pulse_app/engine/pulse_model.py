"""The model class: transformers' LLaVA-NeXT laying image tokens out as LLaVA does.

PULSE-7B's config says ``mm_patch_merge_type: flat``: the base image's features, then every
tile's, concatenated (24x24 = 576 per tile for CLIP ViT-L/14-336), no unpadding, no
``image_newline``. transformers' ``LlavaNextForConditionalGeneration`` always does
``spatial_unpad``, so the stock class silently shows the model a different input than it was
trained on. :class:`PulseLlavaNextForConditionalGeneration` reads the merge type from the config
and does what LLaVA's ``llava_arch.py`` does for ``flat``, ``spatial`` and ``spatial_unpad``
(with LLaVA's own unpad rounding, which differs from transformers' in edge cases).

Converted folders name this class in ``config.json`` (``architectures``); load them with
``PulseLlavaNextForConditionalGeneration.from_pretrained(folder)``.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import LlavaNextConfig
from transformers.models.llava_next.modeling_llava_next import (
    LlavaNextForConditionalGeneration,
    LlavaNextModel,
    LlavaNextPreTrainedModel,
)

from pulse_app.engine.anyres import AnyresGeometry, unpad_size_original


def merge_image_features(features: torch.Tensor, size_wh: tuple[int, int],
                         geometry: AnyresGeometry, image_newline: torch.Tensor | None = None
                         ) -> torch.Tensor:
    """One image's projected features (1 + tiles, tokens_per_tile, dim) -> (image_tokens, dim).

    ``flat``: base then tiles, each row-major (LLaVA ``x.flatten(0, 1)``). ``spatial``: base, then
    the tiles' patches as one big grid, row by row. ``spatial_unpad``: that grid with the black
    padding removed (LLaVA rounding) and ``image_newline`` after every row.
    """
    if geometry.merge_type == "flat" or features.shape[0] == 1:
        merged = features.flatten(0, 1)
        if geometry.merge_type == "spatial_unpad" and features.shape[0] == 1:
            merged = torch.cat((merged, image_newline[None].to(merged)), dim=0)
        return merged
    base, tiles = features[0], features[1:]
    side = geometry.patches_per_side
    cols, rows = geometry.grid_cols_rows(size_wh)
    grid = tiles.view(rows, cols, side, side, -1)
    if geometry.merge_type == "spatial":
        return torch.cat((base, grid.permute(0, 2, 1, 3, 4).flatten(0, 3)), dim=0)
    grid = grid.permute(4, 0, 2, 1, 3).flatten(1, 2).flatten(2, 3)      # (dim, H, W)
    kept_rows, kept_cols = unpad_size_original(tuple(grid.shape[1:]), size_wh)
    top, left = (grid.shape[1] - kept_rows) // 2, (grid.shape[2] - kept_cols) // 2
    grid = grid[:, top:top + kept_rows, left:left + kept_cols]
    newline = image_newline[:, None, None].expand(*grid.shape[:-1], 1).to(grid)
    grid = torch.cat((grid, newline), dim=-1)
    return torch.cat((base, grid.flatten(1, 2).transpose(0, 1)), dim=0)


class PulseLlavaNextModel(LlavaNextModel):
    """``LlavaNextModel`` whose image features are laid out per ``config.mm_patch_merge_type``."""

    def pack_image_features(self, image_features, image_sizes, vision_feature_select_strategy,
                            image_newline=None):
        geometry = AnyresGeometry.from_config(self.config)
        merged = [merge_image_features(feats, (int(size[1]), int(size[0])), geometry,
                                       image_newline)
                  for feats, size in zip(image_features, image_sizes)]   # sizes are (h, w)
        lengths = torch.tensor([m.shape[0] for m in merged], dtype=torch.long,
                               device=image_features[0].device)
        return merged, lengths


class PulseLlavaNextForConditionalGeneration(LlavaNextForConditionalGeneration):
    """Stock LLaVA-NeXT with LLaVA's merge types (see :class:`PulseLlavaNextModel`)."""

    def __init__(self, config: LlavaNextConfig):
        LlavaNextPreTrainedModel.__init__(self, config)
        self.model = PulseLlavaNextModel(config)
        self.lm_head = nn.Linear(config.text_config.hidden_size, config.text_config.vocab_size,
                                 bias=False)
        self.post_init()
