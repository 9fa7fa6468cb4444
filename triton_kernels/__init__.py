"""Triton kernels of rnnfused, installed as ``rnnfused._triton`` (see README "Triton backend").

    cell_math.py           per-element gate math (the equations of csrc/common/cell_math.h), one helper per cell
    recurrent_dot.py       the recurrent GEMM slices of a tile (tl.dot): h W_hhᵀ forward, dgates W_hh backward
    tiles.py               one [BLOCK_B × BLOCK_H] tile of one step: GEMM slice + cell math + stores
    steps.py               one whole step (pointer selection, tile loop), shared by both kernel shapes
    step_kernels.py        one launch per step
    persistent_kernels.py  one launch for all steps; barrier.py: the bounded grid barrier between steps
    dispatch.py            which shape a layer takes
    configs.py             block configs per shape family (tuned once, or heuristic); config_cache.py: on disk
    forward_launch.py, backward_launch.py, launch_common.py   host-side launchers (device guard, cooperative launch)
    recurrence_ops.py      the recurrence of either path as an opaque custom op (one torch.compile node for any T)
    layer.py, ops.py       the op bodies and their triton_op registration (rnnfused::*_triton)
    op_signature.py        typed signatures from which triton_op infers the ops' schemas
    layer_norm_kernels.py  the LayerNorm LSTM/GRU step kernels (whole rows per program; the GEMM is the host's)
    layer_norm_launch.py   their per-step loops; layer_norm_ops.py: checks, bodies, rnnfused::layernorm_*_triton
    compile_check.py       compiles every kernel for a GPU architecture (--arch, default sm_90) without a GPU

Importing this package imports nothing heavy; ``rnnfused._triton.ops`` registers the ops.
"""
