"""A tiny forward+backward of every cell on the cuda backend, for `compute-sanitizer --tool memcheck`.

    PYTORCH_NO_CUDA_MEMORY_CACHING=1 compute-sanitizer --tool memcheck --error-exitcode 1 \
        python tests/gpu/sanitize_small.py

(PYTORCH_NO_CUDA_MEMORY_CACHING=1 gives every tensor its own allocation, so an out-of-bounds access is not hidden
inside a pooled block.) Covers the packed (H % 4 == 0) and scalar (odd H) kernel variants, float32/bfloat16/float64,
lengths, reverse, in-sequence resets (bfloat16 runs them on the persistent kernels) and an LSTM projection. Exits
non-zero on any error.
"""
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ for helpers

from helpers import Case, make_inputs, random_like, run_backend, tensor_fields  # noqa: E402

CASES = [
    Case("lstm", B=3, T=4, I=5, H=8),
    Case("lstm", B=3, T=4, I=5, H=7, proj=3, lengths=(4, 1, 2), reverse=True),
    Case("gru", B=2, T=3, I=4, H=8, lengths=(3, 1)),
    Case("gru", B=2, T=3, I=4, H=5, reverse=True),
    Case("rnn_tanh", B=2, T=3, I=2, H=4),
    Case("rnn_relu", B=1, T=2, I=3, H=3, lengths=(1,)),
    Case("lstm", B=3, T=5, I=4, H=8, resets=0.4, reverse=True),
    Case("gru", B=2, T=4, I=3, H=5, resets=0.5),
]


def main() -> int:
    assert torch.cuda.is_available(), "needs a CUDA GPU"
    for case in CASES:
        for dtype in (torch.float32, torch.bfloat16, torch.float64):
            x = make_inputs(case, dtype=dtype, device="cuda")
            outs = run_backend(case.kind, x, "cuda")
            grads = torch.autograd.grad(outs, [t for _, t in tensor_fields(x)], random_like(outs))
            torch.cuda.synchronize()
            assert all(torch.isfinite(g).all() for g in grads), case.id
            print(f"ok {case.id} {dtype}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
