"""Streaming support: modules that keep state between successive calls.

A :class:`StreamingModule` keeps a small dict of tensors (``_streaming_state``) while
it is inside a :meth:`StreamingModule.streaming` context, e.g. the keys and values of
the past time steps of an attention layer, or the time offset of a transformer. The
state of a whole tree of modules can be read and restored as one flat dict, which is
what two-pass classifier-free guidance uses to run a second, unconditional stream.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Dict, Iterator, Union

import torch
from torch import nn

State = Dict[str, Union[torch.Tensor, int]]  # tensors, and plain ints for counters


class StreamingModule(nn.Module):
    """Base class for modules that can process a sequence step by step."""

    def __init__(self) -> None:
        super().__init__()
        self._streaming_state: State = {}
        self._is_streaming = False

    def _streaming_modules(self) -> Iterator[tuple[str, "StreamingModule"]]:
        for name, module in self.named_modules():
            if isinstance(module, StreamingModule):
                yield name, module

    @contextmanager
    def streaming(self):
        """Enter streaming mode for this module and all its streaming children.

        The state is cleared on exit, so a new ``with model.streaming():`` always starts
        from an empty history.
        """
        modules = [module for _, module in self._streaming_modules()]
        for module in modules:
            module._is_streaming = True
        try:
            yield
        finally:
            for module in modules:
                module._is_streaming = False
                module._streaming_state = {}

    def reset_streaming(self) -> None:
        """Forget the history of every streaming module in this tree."""
        for _, module in self._streaming_modules():
            module._streaming_state = {}

    def get_streaming_state(self) -> State:
        """The state of the whole tree, as ``{'<module name>.<key>': tensor}``."""
        state: State = {}
        for name, module in self._streaming_modules():
            prefix = f"{name}." if name else ""
            for key, value in module._streaming_state.items():
                state[prefix + key] = value
        return state

    def set_streaming_state(self, state: State) -> None:
        """Replace the state of the whole tree with ``state`` (from :meth:`get_streaming_state`)."""
        remaining = dict(state)
        for name, module in self._streaming_modules():
            prefix = f"{name}." if name else ""
            module._streaming_state = {}
            for key in list(remaining):
                if key.startswith(prefix) and "." not in key[len(prefix):]:
                    module._streaming_state[key[len(prefix):]] = remaining.pop(key)
        if remaining:
            raise ValueError(f"set_streaming_state: unknown state entries {sorted(remaining)[:5]}")
