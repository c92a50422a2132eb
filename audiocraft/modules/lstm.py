"""An LSTM that works on convolutional layouts (``[B, C, T]``), with an optional residual skip."""
from __future__ import annotations

import torch
from torch import nn


class StreamableLSTM(nn.Module):
    """Multi-layer LSTM over time applied to ``[B, D, T]`` features, output ``[B, D, T]``.

    The hidden state is not kept between calls (each call starts from zeros). With
    ``skip=True`` the input is added to the LSTM output, as in EnCodec's SEANet.
    The wrapped ``nn.LSTM`` is stored as ``lstm`` (state-dict keys ``lstm.weight_ih_l0`` ...).

    Args:
        dimension: feature size D (input and hidden size).
        num_layers: number of stacked LSTM layers.
        skip: add the input to the output.
    """

    def __init__(self, dimension: int, num_layers: int = 2, skip: bool = True) -> None:
        super().__init__()
        self.skip = skip
        self.lstm = nn.LSTM(dimension, dimension, num_layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time_major = x.permute(2, 0, 1)  # [T, B, D], the LSTM's default layout
        y, _ = self.lstm(time_major)
        if self.skip:
            y = y + time_major
        return y.permute(1, 2, 0)
