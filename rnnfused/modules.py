"""Drop-in replacements for nn.LSTM, nn.GRU, nn.RNN and their single-step cells, computed by the fused ops.

    from rnnfused import FusedLSTM
    lstm = FusedLSTM(256, 512, num_layers=2, bidirectional=True, batch_first=True)   # same args as nn.LSTM
    out, (h_n, c_n) = lstm(x, (h0, c0))                                              # same inputs and outputs

Same constructor, parameter names, shapes, initialisation and ``state_dict`` as ``nn.*`` (they share
``nn.RNNBase``/``nn.RNNCellBase``), plus a keyword ``backend=`` (see :mod:`rnnfused.backends`). Every layer-direction
runs through one fused op; PackedSequence input runs with per-sequence lengths inside the ops (no Python loop over
time).

The sequence modules derive from ``nn.RNNBase`` rather than ``nn.LSTM``/``nn.GRU``/``nn.RNN`` because TorchDynamo
refuses to trace instances of those three classes; ``isinstance(m, nn.RNNBase)`` holds, and ``m.mode`` says which.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from ._cell_ops import cell_step, cpu_module_forward
from ._cells import CellKind, cell_kind, cell_state_dtype
from ._device_lengths import lengths_on_device
from ._inputs import LayerInputs
from ._validation import check_cell_inputs, check_cell_rank, check_module_devices
from .functional import run_layer

__all__ = ["FusedLSTM", "FusedGRU", "FusedRNN", "FusedLSTMCell", "FusedGRUCell", "FusedRNNCell"]


def _onnx_exporting() -> bool:
    """Whether torch.onnx.export is tracing (either exporter: TorchScript tracing or torch.export). The cheap tests
    first: is_in_onnx_export costs about 2 µs, which every step of an eager cell loop would pay."""
    return (torch.jit.is_tracing() or torch.compiler.is_compiling()) and torch.onnx.is_in_onnx_export()

_SEQUENCE_ARGS = """
    Args:
        input_size: features of the input ``x``.
        hidden_size: features of the hidden state ``h``.
        num_layers: stacked recurrent layers (default 1); layer k > 0 takes the previous layer's output.
        bias: whether the layers have the biases ``b_ih`` and ``b_hh`` (default True).
        batch_first: input and output are ``[batch, seq, feature]`` instead of ``[seq, batch, feature]`` (the states
            are always ``[layers * directions, batch, hidden]``).
        dropout: dropout probability on each layer's output except the last, in training (default 0).
        bidirectional: run every layer in both directions and concatenate the outputs (default False).
        device, dtype: of the parameters, as for any ``nn.Module``.
        backend: which implementation runs the ops — ``"cpu"``, ``"cuda"``, ``"triton"``, ``"reference"`` or None
            for the project's rule (``RNNFUSED_BACKEND``, else the fastest for the tensors' device and dtype; see
            :mod:`rnnfused.backends`). A backend named here that cannot run the tensors raises ``RuntimeError``.
        weight_drop: DropConnect on the recurrent weights (AWD-LSTM; not in ``nn.*``): in training, each forward
            call drops every entry of each ``weight_hh_l*`` with this probability (one mask per weight and call,
            drawn from the torch generator) and scales the rest by ``1 / (1 - weight_drop)``; gradients reach
            ``weight_hh_l*`` through the mask. In eval, and at 0 (default), the weights are used as they are.
        zoneout, zoneout_hidden, zoneout_cell (LSTM and GRU, not with proj_size; not in ``nn.*``): zoneout
            (Krueger et al. 2017) of the hidden state (and the LSTM's cell state): in training each unit of each
            row keeps its previous value with this probability at every step (``h_t = d·h_{t-1} + (1 - d)·h̃_t``,
            d ~ Bernoulli(p), drawn from the torch generator); in eval ``h_t = p·h_{t-1} + (1 - p)·h̃_t``. The
            output at step t is the zoned-out state. ``zoneout`` sets both states; ``zoneout_hidden`` and
            ``zoneout_cell`` (LSTM) set them apart. Default 0: none.
"""

_SEQUENCE_IO = """
    Shapes: ``L`` sequence length, ``N`` batch, ``D`` = 2 if bidirectional else 1, ``H_in`` = input_size,
    ``H_out`` = proj_size if > 0 else hidden_size (LSTM), hidden_size otherwise.

    Inputs: ``input, hx``
        input: ``[L, N, H_in]`` (``[N, L, H_in]`` with ``batch_first``), unbatched ``[L, H_in]``, or a
            ``PackedSequence`` (``torch.nn.utils.rnn.pack_padded_sequence``).
        hx: initial state(s) ``[num_layers * D, N, H_out]`` (unbatched ``[num_layers * D, H_out]``); zeros if None.

    Outputs: ``output, h_n``
        output: ``[L, N, D * H_out]`` (``[N, L, D * H_out]`` with ``batch_first``; a ``PackedSequence`` for packed
            input): the last layer's hidden state at every step.
        h_n: the final state(s) of every layer and direction, ``[num_layers * D, N, H_out]``.

    ``forward(input, hx=None, *, resets=None)``: ``resets`` (not in ``nn.*``) restarts sequences inside the batch, see
    :meth:`forward`.

    Raises:
        ValueError / RuntimeError: the exception classes (and, for the checks nn.* has, the messages) that nn.*
            raises for the same bad input: wrong ranks, sizes, dtypes, devices.
"""


def _probability(name: str, p) -> float:
    """A dropout-like probability in [0, 1) (ValueError naming the argument otherwise)."""
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p < 1:
        raise ValueError(f"{name} must be a probability in [0, 1), got {p!r}")
    return float(p)


class _FusedRNNBase(nn.RNNBase):
    """forward() of nn.LSTM / nn.GRU / nn.RNN with each layer-direction computed by a fused op."""

    _MODE = ""  # the nn.RNNBase mode of the subclass (a key of the cell registry)
    backend: Optional[str]
    # The features nn.* lacks, off (class defaults also serve objects pickled before they existed); rnnfused.convert
    # sets them on the nn.* layers it turns into fused ones without __init__, and revert removes them.
    FUSED_ONLY_DEFAULTS = {"weight_drop": 0.0, "zoneout_hidden": 0.0, "zoneout_cell": 0.0}
    weight_drop: float = 0.0
    zoneout_hidden: float = 0.0
    zoneout_cell: float = 0.0

    def __init__(self, mode: str, *args, backend: Optional[str] = None, weight_drop: float = 0.0,
                 zoneout: float = 0.0, zoneout_hidden: Optional[float] = None, zoneout_cell: Optional[float] = None,
                 **kwargs):
        super().__init__(mode, *args, **kwargs)
        self.backend = backend
        self.weight_drop = _probability("weight_drop", weight_drop)
        self.zoneout_hidden, self.zoneout_cell = self._zoneout_probabilities(zoneout, zoneout_hidden, zoneout_cell)

    def _zoneout_probabilities(self, zoneout, hidden, cell) -> Tuple[float, float]:
        """(hidden, cell) zoneout probabilities from the constructor's arguments (ValueError where a cell has no
        such state, or with proj_size)."""
        kind, name = self._kind, type(self).__name__
        hidden = _probability("zoneout_hidden" if hidden is not None else "zoneout",
                              zoneout if hidden is None else hidden)
        if not kind.has_cell_state and cell is not None:
            raise ValueError(f"{name}: zoneout_cell needs a cell state (LSTM); use zoneout")
        cell = _probability("zoneout_cell" if cell is not None else "zoneout", zoneout if cell is None else cell)
        if not kind.has_cell_state:
            cell = 0.0
        if (hidden or cell) and kind.name not in ("lstm", "gru"):
            raise ValueError(f"{name}: zoneout is supported by LSTM and GRU layers only")
        if (hidden or cell) and self.proj_size > 0:
            raise ValueError(f"{name}: zoneout cannot be combined with proj_size")
        return hidden, cell

    def _zoneout_masks(self, x: Tensor) -> Optional[Tensor]:
        """Keep-masks [S, T, B, H] for one layer-direction over x [T, B, ·]: Bernoulli(p) per step, row and unit in
        training (fresh per call, from the torch generator), p in eval; None without zoneout."""
        if not (self.zoneout_hidden or self.zoneout_cell):
            return None
        dtype = cell_state_dtype(x.dtype)
        p = [self.zoneout_hidden] + ([self.zoneout_cell] if self._kind.has_cell_state else [])
        p = torch.tensor(p, dtype=dtype, device=x.device).view(-1, 1, 1, 1)  # [S, 1, 1, 1]
        shape = (p.shape[0], x.shape[0], x.shape[1], self.hidden_size)
        if self.training:
            return (torch.rand(shape, dtype=dtype, device=x.device) < p).to(dtype)
        return p.expand(shape).contiguous()

    @property
    def _kind(self) -> CellKind:
        return cell_kind(self.mode)

    # ------------------------------------------------------------------------------------------ nn.* interop
    def flatten_parameters(self) -> None:
        """No-op: the fused kernels read the parameters where they are (cuDNN's flat buffer is not needed)."""

    def __setstate__(self, d):
        super().__setstate__(d)
        self.__dict__.setdefault("backend", None)

    def extra_repr(self) -> str:
        s = super().extra_repr()
        if self.mode == "RNN_RELU":
            s += ", nonlinearity='relu'"
        if self.weight_drop:
            s += f", weight_drop={self.weight_drop}"
        one_value = not self._kind.has_cell_state or self.zoneout_hidden == self.zoneout_cell
        if one_value and self.zoneout_hidden:
            s += f", zoneout={self.zoneout_hidden}"
        elif not one_value:
            s += f", zoneout_hidden={self.zoneout_hidden}, zoneout_cell={self.zoneout_cell}"
        if self.backend is not None:
            s += f", backend={self.backend!r}"
        return s

    def _constructor_kwargs(self) -> dict:
        kind = cell_kind(self.mode)
        kw = dict(input_size=self.input_size, hidden_size=self.hidden_size, num_layers=self.num_layers,
                  bias=self.bias, batch_first=self.batch_first, dropout=float(self.dropout),
                  bidirectional=self.bidirectional)
        if kind.has_projection:
            kw["proj_size"] = self.proj_size
        if kind.nonlinearity is not None:
            kw["nonlinearity"] = kind.nonlinearity
        return kw

    @classmethod
    def from_module(cls, module: nn.RNNBase, backend: Optional[str] = None):
        """A fused copy of an ``nn.LSTM``/``nn.GRU``/``nn.RNN`` (same configuration, weights copied, same device,
        dtype and training mode).

        Raises:
            TypeError: ``module`` is not the nn.* twin of this class.
        """
        torch_module = cell_kind(cls._MODE).torch_module
        if not isinstance(module, nn.RNNBase):
            raise TypeError(f"from_module expects an nn.RNNBase (nn.LSTM/GRU/RNN), got {type(module).__name__}")
        if cell_kind(module.mode).torch_module is not torch_module:
            raise TypeError(f"{cls.__name__}.from_module expects an {torch_module.__name__}, got mode {module.mode}")
        first = next(module.parameters())
        kw = _FusedRNNBase._constructor_kwargs(module)
        fused = cls(**kw, backend=backend, device=first.device, dtype=first.dtype)
        fused.load_state_dict(module.state_dict())
        fused.train(module.training)
        return fused

    def to_torch(self) -> nn.RNNBase:
        """The equivalent ``nn.LSTM``/``nn.GRU``/``nn.RNN`` with a copy of these weights (same device, dtype and
        training mode)."""
        first = next(self.parameters())
        m = self._kind.torch_module(**self._constructor_kwargs(), device=first.device, dtype=first.dtype)
        m.load_state_dict(self.state_dict())
        m.train(self.training)
        return m

    # ---------------------------------------------------------------------------------------------- forward
    def _layer_params(self, layer: int, direction: int):
        sfx = "_reverse" if direction == 1 else ""
        get = lambda name: getattr(self, f"{name}_l{layer}{sfx}", None)  # noqa: E731
        w_hr = get("weight_hr") if self.proj_size > 0 else None
        w_hh = get("weight_hh")
        if self.weight_drop and self.training:
            w_hh = F.dropout(w_hh, p=self.weight_drop, training=True)  # DropConnect: a fresh mask per call
        return get("weight_ih"), w_hh, get("bias_ih"), get("bias_hh"), w_hr

    def _run_direction(self, layer: int, direction: int, x: Tensor, h0: Tensor, c0: Optional[Tensor],
                       lengths: Optional[Tensor], resets: Optional[Tensor], backend: Optional[str]):
        """One layer-direction over x [T, B, I] from h0 [B, H_out] (c0 [B, H]) -> (output, h_n, c_n or None)."""
        w_ih, w_hh, b_ih, b_hh, w_hr = self._layer_params(layer, direction)
        inputs = LayerInputs(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths, direction == 1, resets=resets,
                             zoneout=self._zoneout_masks(x))
        return run_layer(self._kind, inputs, backend)

    def _run_layers(self, x: Tensor, h0: Tensor, c0: Optional[Tensor], lengths: Optional[Tensor],
                    resets: Optional[Tensor] = None):
        """x [T, B, I] time-major; h0 [L*D, B, H_out]; c0 [L*D, B, H]; resets [T, B] bool (every layer and direction
        restarts there) -> output [T, B, D*H_out], h_n, c_n."""
        D = 2 if self.bidirectional else 1
        # An empty batch is valid for nn.* (empty results); the fused ops reject it, the reference handles it.
        # While exporting to ONNX (only LSTMs with proj_size get here, see forward) the reference equations are
        # plain ops that every exporter translates.
        backend = "reference" if x.size(1) == 0 or _onnx_exporting() else self.backend
        h_n, c_n = [], []
        layer_input = x
        for layer in range(self.num_layers):
            outputs = []
            for direction in range(D):
                idx = layer * D + direction
                out, h, c = self._run_direction(layer, direction, layer_input, h0[idx],
                                                c0[idx] if c0 is not None else None, lengths, resets, backend)
                outputs.append(out)
                h_n.append(h)
                c_n.append(c)
            layer_input = outputs[0] if D == 1 else torch.cat(outputs, dim=2)
            if self.dropout and self.training and layer < self.num_layers - 1:
                layer_input = F.dropout(layer_input, p=self.dropout, training=True)
        return layer_input, torch.stack(h_n), (torch.stack(c_n) if c0 is not None else None)

    def forward(self, input, hx=None, *, resets: Optional[Tensor] = None):
        """As ``nn.LSTM.forward`` / ``nn.GRU.forward`` / ``nn.RNN.forward``: same inputs, outputs and errors (see the
        class docstring for the shapes).

        ``resets`` (keyword only; not in ``nn.*``): a bool tensor ``[T, B]`` (``[B, T]`` with ``batch_first``, ``[T]``
        for unbatched input) on input's device, or None. Where ``resets[t, b]`` is true, row b's sequence is split
        before step t: the state entering step t is the initial one (``hx``, or zeros) again, in every layer and
        direction, exactly as if each segment ran alone (the reverse direction restarts at each segment's end).
        Not with PackedSequence input."""
        kind = self._kind
        if resets is not None and _onnx_exporting():
            raise RuntimeError(f"{type(self).__name__}: resets cannot be exported to ONNX (its RNN ops have no "
                               "in-sequence resets)")
        if (self.zoneout_hidden or self.zoneout_cell) and _onnx_exporting():
            raise RuntimeError(f"{type(self).__name__}: zoneout cannot be exported to ONNX (its RNN ops have none)")
        if _onnx_exporting() and self.proj_size == 0:
            # torch.onnx.export (either exporter) translates nn.*'s own RNN functions to ONNX's LSTM/GRU/RNN ops: run
            # them on these parameters. ONNX's LSTM has no projection, and neither exporter translates nn.LSTM with
            # proj_size (torch 2.13): those run the reference equations instead (see _run_layers).
            return kind.torch_module.forward(self, input, hx)
        self._update_flat_weights()
        has_c = kind.has_cell_state  # the hidden state is a pair (h, c)
        D = 2 if self.bidirectional else 1
        real_hidden = self.proj_size if self.proj_size > 0 else self.hidden_size
        orig_input = input
        is_batched = True
        batch_dim = 0 if self.batch_first else 1
        if isinstance(orig_input, PackedSequence):
            if resets is not None:
                raise ValueError(f"{type(self).__name__}: resets cannot be used with PackedSequence input (pad the "
                                 "batch, or split its sequences)")
            data, batch_sizes, sorted_indices, unsorted_indices = orig_input
            max_batch = int(batch_sizes[0])
            if hx is not None:
                hx = self.permute_hidden(hx, sorted_indices)
        else:
            batch_sizes = sorted_indices = unsorted_indices = None
            name = "RNN" if self.mode.startswith("RNN") else self.mode
            if input.dim() not in (2, 3):
                tensor = " tensor" if name == "RNN" else ""
                raise ValueError(f"{name}: Expected input to be 2D or 3D, got {input.dim()}D{tensor} instead")
            is_batched = input.dim() == 3
            if not is_batched:
                input = input.unsqueeze(batch_dim)
            max_batch = input.size(0) if self.batch_first else input.size(1)
            if hx is not None:
                hx = self._batched_hx(hx, is_batched)
            data = input
        if hx is None:
            zeros = lambda size: torch.zeros(self.num_layers * D, max_batch, size, dtype=data.dtype,  # noqa: E731
                                             device=data.device)
            hx = (zeros(real_hidden), zeros(self.hidden_size)) if has_c else zeros(real_hidden)
        self.check_forward_args(data, hx, batch_sizes)
        h0, c0 = hx if has_c else (hx, None)
        check_module_devices(data, self._flat_weights[0], [("hx[0]" if has_c else "hx", h0), ("hx[1]", c0)])
        if data.size(0) == 0 and batch_sizes is None:
            raise RuntimeError("Expected sequence length to be larger than 0 in RNN")  # nn.*'s error

        if batch_sizes is not None:
            # Padded, in the packed (length-sorted) batch order; lengths go into the ops.
            x, lengths = pad_packed_sequence(PackedSequence(data, batch_sizes))
            # One non-blocking copy to the device for all layers and directions (the ops would each block on it).
            out, h_n, c_n = self._run_layers(x, h0, c0, lengths_on_device(lengths, x.device))
            output = PackedSequence(pack_padded_sequence(out, lengths).data, batch_sizes, sorted_indices,
                                    unsorted_indices)
        else:
            x = data.transpose(0, 1) if self.batch_first else data
            out, h_n, c_n = self._run_layers(x, h0, c0, None, self._time_major_resets(resets, x, is_batched))
            output = out.transpose(0, 1) if self.batch_first else out
            if not is_batched:
                output = output.squeeze(batch_dim)
                h_n = h_n.squeeze(1)
                c_n = c_n.squeeze(1) if c_n is not None else None
        hidden = (h_n, c_n) if has_c else h_n
        return output, self.permute_hidden(hidden, unsorted_indices)

    def _time_major_resets(self, resets: Optional[Tensor], x: Tensor, is_batched: bool) -> Optional[Tensor]:
        """The forward's ``resets`` checked against x [T, B, I] (time-major) and returned as [T, B] bool."""
        if resets is None:
            return None
        T, B = x.shape[0], x.shape[1]
        want = (B, T) if self.batch_first else (T, B)
        if not is_batched:
            want = (T,)
        name = type(self).__name__
        if not isinstance(resets, Tensor) or resets.dtype != torch.bool:
            got = resets.dtype if isinstance(resets, Tensor) else type(resets).__name__
            raise ValueError(f"{name}: resets must be a bool tensor, got {got}")
        if tuple(resets.shape) != want:
            layout = "[seq_len]" if not is_batched else "[batch, seq_len]" if self.batch_first else "[seq_len, batch]"
            raise ValueError(f"{name}: resets must have shape {layout} = {list(want)} like input, got "
                             f"{list(resets.shape)}")
        if resets.device != x.device:
            raise ValueError(f"{name}: resets must be on {x.device} like input, got {resets.device}")
        if not is_batched:
            return resets.unsqueeze(1)
        return resets.t() if self.batch_first else resets

    def _batched_hx(self, hx, is_batched: bool):
        """nn.*'s rank checks of hx for (un)batched input; returns hx with a batch dimension."""
        if self._kind.has_cell_state:
            want = 3 if is_batched else 2
            if hx[0].dim() != want or hx[1].dim() != want:
                kind = "batched 3-D" if is_batched else "unbatched 2-D"
                raise RuntimeError(f"For {kind} input, hx and cx should also be {want}-D but got "
                                   f"({hx[0].dim()}-D, {hx[1].dim()}-D) tensors")
            return hx if is_batched else (hx[0].unsqueeze(1), hx[1].unsqueeze(1))
        if is_batched and hx.dim() != 3:
            raise RuntimeError(f"For batched 3-D input, hx should also be 3-D but got {hx.dim()}-D tensor")
        if not is_batched and hx.dim() != 2:
            raise RuntimeError(f"For unbatched 2-D input, hx should also be 2-D but got {hx.dim()}-D tensor")
        return hx if is_batched else hx.unsqueeze(1)


class FusedLSTM(_FusedRNNBase):
    __doc__ = """Drop-in ``nn.LSTM`` (multi-layer, bidirectional, ``proj_size``, PackedSequence) on the fused ops.

    Same constructor, parameters (``weight_ih_l{k}{_reverse}`` …, ``weight_hr_l{k}`` with ``proj_size``),
    initialisation, ``state_dict``, inputs, outputs and errors as ``nn.LSTM``: replace the class and nothing else.
""" + _SEQUENCE_ARGS + """        proj_size: if > 0, an LSTM with projections: ``h_t = (σ(o)·tanh(c_t)) W_hrᵀ`` of size proj_size.
""" + _SEQUENCE_IO + """
    LSTM: ``hx`` and ``h_n`` are pairs ``(h, c)``; ``c`` has ``hidden_size`` features.

    Example::

        >>> lstm = FusedLSTM(10, 20, num_layers=2, batch_first=True)
        >>> out, (h_n, c_n) = lstm(torch.randn(3, 5, 10))
        >>> out.shape, h_n.shape, c_n.shape
        (torch.Size([3, 5, 20]), torch.Size([2, 3, 20]), torch.Size([2, 3, 20]))
        >>> FusedLSTM.from_module(torch.nn.LSTM(10, 20))   # copy an existing nn.LSTM; .to_torch() goes back
        FusedLSTM(10, 20)
    """

    _MODE = "LSTM"

    def __init__(self, *args, backend: Optional[str] = None, **kwargs):
        super().__init__("LSTM", *args, backend=backend, **kwargs)

    # LSTM's hidden state is a pair: reuse nn.LSTM's own checks and permutation (same messages, same errors).
    get_expected_cell_size = nn.LSTM.get_expected_cell_size
    check_forward_args = nn.LSTM.check_forward_args
    permute_hidden = nn.LSTM.permute_hidden


def _no_proj_size(kwargs: dict) -> None:
    if "proj_size" in kwargs:
        raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")


class FusedGRU(_FusedRNNBase):
    __doc__ = """Drop-in ``nn.GRU`` (multi-layer, bidirectional, PackedSequence) on the fused ops.

    Same constructor, parameters, initialisation, ``state_dict``, inputs, outputs and errors as ``nn.GRU``.
""" + _SEQUENCE_ARGS + _SEQUENCE_IO + """
    Example::

        >>> gru = FusedGRU(10, 20, bidirectional=True)
        >>> out, h_n = gru(torch.randn(5, 3, 10))
        >>> out.shape, h_n.shape
        (torch.Size([5, 3, 40]), torch.Size([2, 3, 20]))
    """

    _MODE = "GRU"

    def __init__(self, *args, backend: Optional[str] = None, **kwargs):
        _no_proj_size(kwargs)
        super().__init__("GRU", *args, backend=backend, **kwargs)


class FusedRNN(_FusedRNNBase):
    __doc__ = """Drop-in ``nn.RNN`` (Elman RNN, ``nonlinearity='tanh'|'relu'``) on the fused ops.

    Same constructor, parameters, initialisation, ``state_dict``, inputs, outputs and errors as ``nn.RNN``.
""" + _SEQUENCE_ARGS + """        nonlinearity: ``'tanh'`` (default) or ``'relu'``; also the 4th positional argument, as in nn.RNN.
""" + _SEQUENCE_IO + """
    Example::

        >>> rnn = FusedRNN(10, 20, nonlinearity="relu")
        >>> out, h_n = rnn(torch.randn(5, 3, 10))
        >>> out.shape, h_n.shape
        (torch.Size([5, 3, 20]), torch.Size([1, 3, 20]))
    """

    _MODE = "RNN_TANH"

    def __init__(self, *args, backend: Optional[str] = None, **kwargs):
        _no_proj_size(kwargs)
        if len(args) > 3:
            nonlinearity = args[3]
            args = args[:3] + args[4:]
        else:
            nonlinearity = kwargs.pop("nonlinearity", "tanh")
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"Unknown nonlinearity '{nonlinearity}'. Select from 'tanh' or 'relu'.")
        self.nonlinearity = nonlinearity
        super().__init__("RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU", *args, backend=backend, **kwargs)


# --------------------------------------------------------------------------------------------------- cells
_CELL_ARGS = """
    Args:
        input_size: features of the input ``x``.
        hidden_size: features of the hidden state.
        bias: whether the cell has the biases ``bias_ih`` and ``bias_hh`` (default True).
        device, dtype: of the parameters, as for any ``nn.Module``.
        backend: which implementation runs the op (see :class:`FusedLSTM`).

    Raises:
        ValueError / RuntimeError: nn.*Cell's exception classes and messages for wrong ranks, input sizes, batch and
            hidden sizes; RuntimeError naming the tensors for dtype or device mismatches.
"""


# A cell module's kind, looked up at every step of a cell loop (cell_kind's normalising costs a microsecond there).
_CELL_KIND_OF_MODE = {mode: cell_kind(mode) for mode in ("LSTM", "GRU", "RNN_TANH", "RNN_RELU")}
_RNN_CELL_KINDS = {nonlinearity: cell_kind("rnn", nonlinearity) for nonlinearity in ("tanh", "relu")}


class _FusedCellBase(nn.RNNCellBase):
    """One step of a cell: the single-step cell op (rnnfused/_cell_ops.py: two GEMMs and one fused pointwise pass,
    with its own backward). Subclasses set ``_MODE`` (a key of the cell registry) and ``_NAME`` (nn's class name,
    used in nn's error messages)."""

    _MODE = ""
    _NAME = ""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, *, backend: Optional[str] = None,
                 device=None, dtype=None):
        gates = cell_kind(type(self)._MODE).gates
        super().__init__(input_size, hidden_size, bias, num_chunks=gates, device=device, dtype=dtype)
        self.backend = backend

    @property
    def _kind(self) -> CellKind:
        return _CELL_KIND_OF_MODE[self._MODE]

    def __setstate__(self, d):
        super().__setstate__(d)
        self.__dict__.setdefault("backend", None)

    def extra_repr(self) -> str:
        s = super().extra_repr()
        return s + (f", backend={self.backend!r}" if self.backend is not None else "")

    def _extra_kwargs(self) -> dict:
        return {}

    @classmethod
    def from_module(cls, cell: nn.RNNCellBase, backend: Optional[str] = None):
        """A fused copy of an ``nn.LSTMCell``/``nn.GRUCell``/``nn.RNNCell`` (weights copied, same device and dtype).

        Raises:
            TypeError: ``cell`` is not the nn.* twin of this class.
        """
        torch_cell = cell_kind(cls._MODE).torch_cell
        if not isinstance(cell, torch_cell):
            raise TypeError(f"{cls.__name__}.from_module expects an {torch_cell.__name__}, got {type(cell).__name__}")
        extra = {"nonlinearity": cell.nonlinearity} if isinstance(cell, nn.RNNCell) else {}
        fused = cls(cell.input_size, cell.hidden_size, cell.bias, **extra, backend=backend,
                    device=cell.weight_ih.device, dtype=cell.weight_ih.dtype)
        fused.load_state_dict(cell.state_dict())
        fused.train(cell.training)
        return fused

    def to_torch(self) -> nn.RNNCellBase:
        """The equivalent ``nn.*Cell`` with a copy of these weights."""
        m = self._kind.torch_cell(self.input_size, self.hidden_size, self.bias, **self._extra_kwargs(),
                                  device=self.weight_ih.device, dtype=self.weight_ih.dtype)
        m.load_state_dict(self.state_dict())
        m.train(self.training)
        return m

    def forward(self, input: Tensor, hx: Union[Tensor, Tuple[Tensor, Tensor], None] = None):
        """One step, as the nn.*Cell's forward: ``h'`` from ``(input, h)``, or ``(h', c')`` from
        ``(input, (h, c))`` for the LSTM cell (see the class docstring for the shapes)."""
        kind = self._kind
        if type(self)._step is _FusedCellBase._step:  # the plain cells (subclasses with their own _step: below)
            w_ih, w_hh, b_ih, b_hh = self._weights()
            if not kind.has_cell_state:
                out = cpu_module_forward(kind, self.backend, input, hx, None, w_ih, w_hh, b_ih, b_hh,
                                         self.input_size, self.hidden_size)
                if out is not None:
                    return out[0]
            elif hx is None or (type(hx) is tuple and len(hx) == 2):
                h, c = hx if hx is not None else (None, None)
                out = cpu_module_forward(kind, self.backend, input, h, c, w_ih, w_hh, b_ih, b_hh,
                                         self.input_size, self.hidden_size)
                if out is not None:
                    return out[0], out[1]
        if _onnx_exporting():
            return kind.torch_cell.forward(self, input, hx)  # what the ONNX exporters translate (see _FusedRNNBase)
        if kind.has_cell_state:
            if hx is not None and not isinstance(hx, (tuple, list)):
                raise TypeError(f"lstm_cell(): argument 'hx' (position 2) must be tuple of Tensors, not "
                                f"{type(hx).__name__}")
            states = list(hx) if hx is not None else None
            indexed = list(enumerate(states or []))
        else:
            states = [hx] if hx is not None else None
            indexed = [(None, hx)]
        is_batched = check_cell_rank(self._NAME, input, indexed)
        if not is_batched:
            input = input.unsqueeze(0)
        if states is None:
            zeros = torch.zeros(input.size(0), self.hidden_size, dtype=input.dtype, device=input.device)
            states = [zeros] * kind.state_size
        elif not is_batched:
            states = [s.unsqueeze(0) for s in states]
        new = self._step(kind, input, states)
        if not is_batched:
            new = [s.squeeze(0) for s in new]
        return tuple(new) if kind.has_cell_state else new[0]

    def _weights(self) -> Tuple[Tensor, Tensor, Optional[Tensor], Optional[Tensor]]:
        """(weight_ih, weight_hh, bias_ih, bias_hh). Read from ``_parameters`` where they are registered: a cell loop
        reads them at every step, and nn.Module.__getattr__ costs about as much as the rest of a step's Python.
        A name not there (a parametrization's property, a hook's plain attribute) is read as an attribute."""
        params = self._parameters
        try:
            return params["weight_ih"], params["weight_hh"], params["bias_ih"], params["bias_hh"]
        except KeyError:
            return tuple(params[n] if n in params else getattr(self, n)  # type: ignore[return-value]
                         for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))

    def _step(self, kind: CellKind, input: Tensor, states: Sequence[Tensor]) -> List[Tensor]:
        """input [B, I], states [B, H] each -> the new states."""
        w_ih, w_hh, b_ih, b_hh = self._weights()
        check_cell_inputs(input, states, self.input_size, self.hidden_size, w_ih)
        c = states[1] if kind.has_cell_state else None
        # Zero-size steps are valid for nn.* (empty results); the fused ops reject them, the reference handles them.
        backend = "reference" if input.size(0) == 0 or self.hidden_size == 0 else self.backend
        h_n, c_n = cell_step(kind, input, states[0], c, w_ih, w_hh, b_ih, b_hh, backend)
        return [h_n, c_n] if kind.has_cell_state else [h_n]


class FusedLSTMCell(_FusedCellBase):
    __doc__ = """Drop-in ``nn.LSTMCell`` on the fused op: ``h', c' = cell(x, (h, c))``.
""" + _CELL_ARGS + """
    Inputs: ``input [N, input_size]`` (or unbatched ``[input_size]``), ``hx = (h, c)`` each ``[N, hidden_size]``
    (zeros if None). Outputs: ``(h', c')``, each ``[N, hidden_size]``.

    Example::

        >>> cell = FusedLSTMCell(10, 20)
        >>> h, c = cell(torch.randn(3, 10))
        >>> h, c = cell(torch.randn(3, 10), (h, c))
        >>> h.shape
        torch.Size([3, 20])
    """

    _MODE = "LSTM"
    _NAME = "LSTMCell"

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None, dtype=None, *,
                 backend: Optional[str] = None):
        super().__init__(input_size, hidden_size, bias, backend=backend, device=device, dtype=dtype)


class FusedGRUCell(_FusedCellBase):
    __doc__ = """Drop-in ``nn.GRUCell`` on the fused op: ``h' = cell(x, h)``.
""" + _CELL_ARGS + """
    Inputs: ``input [N, input_size]`` (or unbatched ``[input_size]``), ``hx [N, hidden_size]`` (zeros if None).
    Output: ``h' [N, hidden_size]``.

    Example::

        >>> cell = FusedGRUCell(10, 20)
        >>> h = cell(torch.randn(3, 10))
        >>> h.shape
        torch.Size([3, 20])
    """

    _MODE = "GRU"
    _NAME = "GRUCell"

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None, dtype=None, *,
                 backend: Optional[str] = None):
        super().__init__(input_size, hidden_size, bias, backend=backend, device=device, dtype=dtype)


class FusedRNNCell(_FusedCellBase):
    __doc__ = """Drop-in ``nn.RNNCell`` (``nonlinearity='tanh'|'relu'``) on the fused op: ``h' = cell(x, h)``.
""" + _CELL_ARGS + """        nonlinearity: ``'tanh'`` (default) or ``'relu'``.

    Inputs: ``input [N, input_size]`` (or unbatched ``[input_size]``), ``hx [N, hidden_size]`` (zeros if None).
    Output: ``h' [N, hidden_size]``.

    Example::

        >>> cell = FusedRNNCell(10, 20, nonlinearity="relu")
        >>> cell(torch.randn(3, 10)).shape
        torch.Size([3, 20])
    """

    _MODE = "RNN_TANH"  # the nn twin's family (nn.RNNCell); the instance's cell follows its nonlinearity
    _NAME = "RNNCell"

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, nonlinearity: str = "tanh",
                 device=None, dtype=None, *, backend: Optional[str] = None):
        super().__init__(input_size, hidden_size, bias, backend=backend, device=device, dtype=dtype)
        self.nonlinearity = nonlinearity  # checked when called, as nn.RNNCell does

    @property
    def _kind(self) -> CellKind:
        kind = _RNN_CELL_KINDS.get(self.nonlinearity)
        if kind is None:
            raise RuntimeError(f"Unknown nonlinearity: {self.nonlinearity}")
        return kind

    def _extra_kwargs(self) -> dict:
        return {"nonlinearity": self.nonlinearity}
