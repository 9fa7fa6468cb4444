"""One layer-direction of an LSTM, GRU or Elman RNN over a whole sequence, on any backend.

    output, (h_n, c_n) = rnnfused.functional.lstm(x, (h0, c0), w_ih, w_hh, b_ih, b_hh)
    output, h_n        = rnnfused.functional.gru(x, h0, w_ih, w_hh, b_ih, b_hh, batch_first=True)
    output, h_n        = rnnfused.functional.rnn(x, None, w_ih, w_hh, nonlinearity="relu", lengths=[5, 3])

Shapes: ``input`` [T, B, I] ([B, T, I] with ``batch_first``); states [B, H] ([B, proj_size] for an LSTM's h
with ``w_hr``); weights as in ``nn.LSTM``/``nn.GRU``/``nn.RNN`` (``w_ih`` [G*H, I], ``w_hh`` [G*H, H_out], biases
[G*H], ``w_hr`` [proj_size, H]). ``hx=None`` means zero initial states. ``lengths`` ([B] ints in [1, T], any order)
gives each sequence's length: padded steps produce zeros and leave the state alone, so ``h_n`` is each sequence's
state after its own last step (first step with ``reverse=True``).
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor

from . import backends
from ._cells import CellKind, cell_kind
from ._device_lengths import lengths_on_device
from ._inputs import LayerInputs
from ._validation import Lengths, as_lengths, check_layer_inputs

__all__ = ["lstm", "gru", "rnn", "run_layer"]


def run_layer(kind: CellKind, x: LayerInputs, backend: Optional[str] = None) -> Tuple[Tensor, Tensor, Optional[Tensor]]:
    """Runs one already validated layer-direction (time-major) on the selected backend. The modules call this once
    per layer and direction; users want :func:`lstm`, :func:`gru` or :func:`rnn`, which validate first.

    Args:
        kind: the cell (``rnnfused._cells.cell_kind("lstm")``, ...).
        x: :class:`rnnfused._inputs.LayerInputs`: input ``[T, B, I]``, h0 ``[B, H_out]``, c0 ``[B, H]`` (LSTM), weights,
            biases, w_hr, lengths ``[B]`` or None, reverse.
        backend: as for the modules (None: ``RNNFUSED_BACKEND``, else ``auto``).

    Returns:
        ``output [T, B, H_out]``, ``h_n [B, H_out]``, ``c_n [B, H]`` (None for cells without a cell state).

    Example::

        >>> x = LayerInputs(torch.randn(4, 2, 3), torch.zeros(2, 5), None, torch.randn(15, 3), torch.randn(15, 5),
        ...                 None, None, None, None, False)
        >>> out, h_n, _ = run_layer(cell_kind("gru"), x, "cpu")
    """
    return backends.get_backend(backend, x.input.device, x.input.dtype).run(kind, x)


def _layer(kind: CellKind, input: Tensor, h0: Optional[Tensor], c0: Optional[Tensor], w_ih: Tensor, w_hh: Tensor,
           b_ih: Optional[Tensor], b_hh: Optional[Tensor], w_hr: Optional[Tensor], lengths: Lengths, reverse: bool,
           batch_first: bool, backend: Optional[str], resets: Optional[Tensor]):
    if isinstance(input, Tensor) and input.dim() == 3 and batch_first:
        input = input.transpose(0, 1)
        if isinstance(resets, Tensor) and resets.dim() == 2:
            resets = resets.t()  # [B, T] -> [T, B]
    if isinstance(input, Tensor) and input.dim() == 3 and isinstance(w_hh, Tensor) and w_hh.dim() == 2:
        B, H_out, H = input.shape[1], w_hh.shape[1], w_hh.shape[0] // kind.gates
        h0 = input.new_zeros(B, H_out) if h0 is None else h0
        c0 = input.new_zeros(B, H) if (c0 is None and kind.has_cell_state) else c0
    x = LayerInputs(input, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, None, bool(reverse), resets=resets)
    check_layer_inputs(kind, x)
    if resets is not None and lengths is not None:
        raise ValueError("resets cannot be combined with lengths: give one or the other")
    x = x._replace(lengths=lengths_on_device(as_lengths(lengths, input.shape[1], input.shape[0]), input.device))
    output, h_n, c_n = run_layer(kind, x, backend)
    if batch_first:
        output = output.transpose(0, 1)
    return output, h_n, c_n


def lstm(input: Tensor, hx: Optional[Tuple[Tensor, Tensor]], w_ih: Tensor, w_hh: Tensor,
         b_ih: Optional[Tensor] = None, b_hh: Optional[Tensor] = None, w_hr: Optional[Tensor] = None, *,
         lengths: Lengths = None, reverse: bool = False, batch_first: bool = False,
         backend: Optional[str] = None, resets: Optional[Tensor] = None) -> Tuple[Tensor, Tuple[Tensor, Tensor]]:
    """One LSTM layer-direction over a whole sequence (one fused op; see the module docstring for the shapes).

    Args:
        input: ``[T, B, I]`` (``[B, T, I]`` with ``batch_first``), floating dtype.
        hx: ``(h0 [B, H_out], c0 [B, H])`` or None for zeros.
        w_ih: ``[4H, I]``; w_hh: ``[4H, H_out]``; b_ih, b_hh: ``[4H]`` or None (no bias); gates in the order i, f, g, o.
        w_hr: ``[proj_size, H]`` or None: an LSTM with projection, ``H_out = proj_size`` (else ``H_out = H``).
        lengths: ``[B]`` sequence lengths in ``[1, T]`` (a tensor or a list), or None: every row runs T steps.
        reverse: run from the last step to the first (the backward direction of a bidirectional layer).
        batch_first: input and output are batch-major.
        backend: the implementation (see :mod:`rnnfused.backends`); None: the project's rule.
        resets: ``[T, B]`` bool (``[B, T]`` with ``batch_first``) on input's device, or None: where ``resets[t, b]``
            is true, row b's sequence is split before step t and the new segment starts from ``hx`` again (in
            either direction: each segment runs as if alone). Not with ``lengths``.

    Returns:
        ``output [T, B, H_out]`` (``[B, T, H_out]`` with ``batch_first``; zeros at padded steps) and
        ``(h_n [B, H_out], c_n [B, H])``, each row's state after its own last step.

    Raises:
        ValueError: an argument of the wrong rank, size, dtype or device (the message names it).
        RuntimeError: a ``backend`` named explicitly that cannot run these tensors here.

    Example::

        >>> x, h0, c0 = torch.randn(5, 3, 10), torch.zeros(3, 20), torch.zeros(3, 20)
        >>> w_ih, w_hh = torch.randn(80, 10) * 0.1, torch.randn(80, 20) * 0.1
        >>> out, (h_n, c_n) = rnnfused.functional.lstm(x, (h0, c0), w_ih, w_hh, lengths=[5, 2, 4])
        >>> out.shape, h_n.shape
        (torch.Size([5, 3, 20]), torch.Size([3, 20]))
    """
    if hx is None:
        h0 = c0 = None
    elif isinstance(hx, (tuple, list)) and len(hx) == 2:
        h0, c0 = hx
    else:
        raise ValueError("hx must be None or a tuple (h0, c0)")
    output, h_n, c_n = _layer(cell_kind("lstm"), input, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths, reverse,
                              batch_first, backend, resets)
    return output, (h_n, c_n)


def gru(input: Tensor, hx: Optional[Tensor], w_ih: Tensor, w_hh: Tensor, b_ih: Optional[Tensor] = None,
        b_hh: Optional[Tensor] = None, *, lengths: Lengths = None, reverse: bool = False, batch_first: bool = False,
        backend: Optional[str] = None, resets: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
    """One GRU layer-direction over a whole sequence: ``output [T, B, H], h_n [B, H]``.

    ``w_ih [3H, I]``, ``w_hh [3H, H]``, biases ``[3H]`` (gates r, z, n as in nn.GRU; ``b_hn`` inside ``r·(…)``);
    ``hx``: ``h0 [B, H]`` or None. The other arguments, the results and the errors are those of :func:`lstm`.

    Example::

        >>> out, h_n = rnnfused.functional.gru(torch.randn(3, 5, 10), None, torch.randn(60, 10), torch.randn(60, 20),
        ...                                    batch_first=True)
        >>> out.shape
        torch.Size([3, 5, 20])
    """
    output, h_n, _ = _layer(cell_kind("gru"), input, hx, None, w_ih, w_hh, b_ih, b_hh, None, lengths, reverse,
                            batch_first, backend, resets)
    return output, h_n


def rnn(input: Tensor, hx: Optional[Tensor], w_ih: Tensor, w_hh: Tensor, b_ih: Optional[Tensor] = None,
        b_hh: Optional[Tensor] = None, *, nonlinearity: str = "tanh", lengths: Lengths = None, reverse: bool = False,
        batch_first: bool = False, backend: Optional[str] = None,
        resets: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
    """One Elman RNN layer-direction, ``h' = act(x W_ihᵀ + b_ih + h W_hhᵀ + b_hh)`` with ``act`` = ``nonlinearity``
    (``"tanh"`` or ``"relu"``): ``output [T, B, H], h_n [B, H]``.

    ``w_ih [H, I]``, ``w_hh [H, H]``, biases ``[H]``; ``hx``: ``h0 [B, H]`` or None. The other arguments, the results
    and the errors are those of :func:`lstm` (and ValueError for an unknown ``nonlinearity``).

    Example::

        >>> out, h_n = rnnfused.functional.rnn(torch.randn(5, 3, 10), None, torch.randn(20, 10), torch.randn(20, 20),
        ...                                    nonlinearity="relu")
        >>> h_n.shape
        torch.Size([3, 20])
    """
    if nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
    output, h_n, _ = _layer(cell_kind("rnn", nonlinearity), input, hx, None, w_ih, w_hh, b_ih, b_hh, None, lengths,
                            reverse, batch_first, backend, resets)
    return output, h_n
