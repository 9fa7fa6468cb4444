"""rnnfused: fused LSTM/GRU/RNN kernels for PyTorch (C++, CUDA, Triton) behind drop-in nn.* replacements."""
from . import _ops, backends, functional, reference
from ._cuda import clear_cuda_graphs, cuda_graph_stats, cuda_path
from ._ops import EXTENSION_ERROR, cuda_built, extension_loaded
from .backends import available_backends, resolve_backend
from .version import __version__

__all__ = [
    "__version__",
    "functional",
    "reference",
    "backends",
    "available_backends",
    "resolve_backend",
    "extension_loaded",
    "cuda_built",
    "EXTENSION_ERROR",
    "cuda_path",
    "cuda_graph_stats",
    "clear_cuda_graphs",
]
from .modules import FusedGRU, FusedGRUCell, FusedLSTM, FusedLSTMCell, FusedRNN, FusedRNNCell  # noqa: E402
from .convert import convert, revert  # noqa: E402

__all__ += ["FusedLSTM", "FusedGRU", "FusedRNN", "FusedLSTMCell", "FusedGRUCell", "FusedRNNCell", "convert", "revert"]
