"""rnnfused: fused LSTM/GRU/RNN kernels for PyTorch (C++, CUDA, Triton) behind drop-in nn.* replacements."""
from . import _op_family, backends, functional, reference  # _op_family: registers fakes/autograd of the C++ ops
from ._cpu import cpu_isa, cpu_path
from ._cuda import (clear_cuda_graphs, cuda_arches, cuda_graph_stats, cuda_path, load_crossover_table,
                    persistent_crossover, persistent_stall)
from ._extension import EXTENSION_ERROR, cuda_built, extension_loaded
from .backends import available_backends, resolve_backend
from .convert import convert, revert
from .layer_norm import FusedLayerNormGRU, FusedLayerNormGRUCell, FusedLayerNormLSTM, FusedLayerNormLSTMCell
from .modules import FusedGRU, FusedGRUCell, FusedLSTM, FusedLSTMCell, FusedRNN, FusedRNNCell
from .version import __version__

__all__ = [
    "__version__",
    "FusedLSTM",
    "FusedGRU",
    "FusedRNN",
    "FusedLSTMCell",
    "FusedGRUCell",
    "FusedRNNCell",
    "FusedLayerNormLSTM",
    "FusedLayerNormGRU",
    "FusedLayerNormLSTMCell",
    "FusedLayerNormGRUCell",
    "convert",
    "revert",
    "functional",
    "reference",
    "backends",
    "available_backends",
    "resolve_backend",
    "extension_loaded",
    "cuda_built",
    "EXTENSION_ERROR",
    "cpu_path",
    "cpu_isa",
    "cuda_path",
    "cuda_arches",
    "load_crossover_table",
    "persistent_crossover",
    "persistent_stall",
    "cuda_graph_stats",
    "clear_cuda_graphs",
]

from . import _safe_globals  # noqa: E402

_safe_globals.register()  # torch.load(path) of a saved model with fused layers, weights_only=True (the default)
