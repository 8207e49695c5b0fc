"""mmsegmentation's SelfAttentionBlock (ANN's AFNB/APNB, ISANet): dot-product attention of
projected queries over projected keys and values, with mmseg's keys (`key_project`,
`query_project`, `value_project`, `out_project`)."""

from __future__ import annotations

import torch
from torch import nn

from segbench.layers.conv import ConvBNReLU


def _projection(in_channels: int, channels: int, num_convs: int) -> nn.Module:
    """`num_convs` 1x1 ConvBNReLU; one is the module itself (keys `conv`, `bn`), more a Sequential."""
    convs = [ConvBNReLU(in_channels if i == 0 else channels, channels, 1) for i in range(num_convs)]
    return convs[0] if num_convs == 1 else nn.Sequential(*convs)


class SelfAttentionBlock(nn.Module):
    """Queries from `query_feats`, keys and values from `key_feats`; similarities scaled by
    channels**-0.5 and softmaxed over the keys. Key/query projections are ConvBNReLU, the value
    and output projections plain biased 1x1 convs (mmseg's configs of both families).

    `share_key_query` makes the query projection the key projection itself (ANN's APNB): its
    weights then appear under both names in the state_dict, as in mmseg, and count once.
    `key_downsample` applies to keys and values (ANN's pyramid sampling); queries keep every
    position (ANN's query_scales=(1,), the only one its configs use).
    """

    def __init__(
        self,
        key_in_channels: int,
        query_in_channels: int,
        channels: int,
        out_channels: int,
        *,
        share_key_query: bool,
        key_query_num_convs: int,
        with_out: bool,
        key_downsample: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.channels = channels
        self.key_project = _projection(key_in_channels, channels, key_query_num_convs)
        self.query_project = (
            self.key_project if share_key_query else _projection(query_in_channels, channels, key_query_num_convs)
        )
        self.value_project = nn.Conv2d(key_in_channels, channels if with_out else out_channels, 1)
        self.out_project = nn.Conv2d(channels, out_channels, 1) if with_out else None
        self.key_downsample = key_downsample

    def forward(self, query_feats: torch.Tensor, key_feats: torch.Tensor) -> torch.Tensor:
        query = self.query_project(query_feats)
        key, value = self.key_project(key_feats), self.value_project(key_feats)
        if self.key_downsample is not None:
            key, value = self.key_downsample(key), self.key_downsample(value)
        similarity = torch.matmul(query.flatten(2).transpose(1, 2), key.flatten(2)) * self.channels**-0.5
        context = torch.matmul(similarity.softmax(dim=-1), value.flatten(2).transpose(1, 2))
        # contiguous as mmseg's: a transposed (channels-last) layout sends the next conv down another kernel
        context = context.transpose(1, 2).contiguous().view(query_feats.shape[0], -1, *query_feats.shape[2:])
        return context if self.out_project is None else self.out_project(context)
