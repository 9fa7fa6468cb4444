// What the fused CPU kernels read and write, as raw pointers, and their entry points per instruction set.
//
// The fused path runs one layer-direction's whole recurrence in one parallel region: each logical worker owns a
// slice of hidden units for all T steps, packs its rows of W_hh (all gates of its units) once per call into panels
// that stay cache-resident, and per step computes its units' gate pre-activations with a register-blocked
// micro-kernel and applies the cell math (csrc/common/cell_math.h) while the tile is hot; the workers meet once per
// step at a spin barrier (twice with a projection). Each worker also computes the input projection of its own
// units, with the same micro-kernel, a block of steps at a time just before the sweep reaches them. The torch-side
// runner (fused_runner.cpp) allocates, starts the team, and after backward's sweep runs the big GEMMs (matmul, on a
// team too); the kernels here are compiled once per ISA (isa_avx512.cpp, isa_avx2.cpp, isa_portable.cpp) from the
// same source (kernel.inc).
//
// Torch-free. T is float or double (storage = arithmetic type; 16-bit dtypes take the step-wise path).
// Sizes: T steps, B batch, H hidden, G gates, S saved values per unit, H_out = proj_size with w_hr, else H.
#pragma once

#include <cstdint>

#include "../../common/step.h"  // starts_from_initial (torch-free)
#include "spin_barrier.h"

namespace rnnfused {
namespace cpu {
namespace fused {

enum class Isa { kPortable = 0, kAvx2 = 1, kAvx512 = 2 };

// The workers [first, last) of a team of `workers` that the calling thread runs.
struct Team {
  int64_t workers = 1;
  int64_t first = 0;
  int64_t last = 1;
  SpinBarrier* barrier = nullptr;

  void sync() const { barrier->arrive_and_wait(last - first); }
};

// ------------------------------------------------------------------------------------------------ panel geometry
// A GEMM of the recurrence, C[B, G×N] = A[B, K] · Wᵀ, is cut into panels of U = W·UB consecutive output units
// (W = vector width) with all G gate blocks of those units side by side, packed as [K][G][U] (zero beyond N), so a
// micro-kernel tile holds every gate of its units and the cell math can run on it directly.
constexpr int64_t unit_blocks(int64_t gates) { return gates == 1 ? 2 : 1; }  // UB: vectors per gate in a panel
constexpr int64_t panel_units(int64_t width, int64_t gates) { return width * unit_blocks(gates); }  // U
constexpr int64_t panel_count(int64_t n, int64_t units) { return (n + units - 1) / units; }
constexpr int64_t packed_elems(int64_t n, int64_t k, int64_t gates, int64_t width) {
  return panel_count(n, panel_units(width, gates)) * k * gates * panel_units(width, gates);
}
// Partial sums of one worker's current panel across K chunks: [B][G·U], G·U ≤ 4W for every GEMM here; a one-row
// batch computes up to 4 panels at once (kernel.inc, one_row_panels), so room for [3][4W] ≥ [4][2W], [3][3W], [2][4W].
constexpr int64_t scratch_elems_per_worker(int64_t batch, int64_t width) { return (batch < 3 ? 3 : batch) * 4 * width; }
// The input projection of M rows, panel-major as the recurrence reads it: [panels][M][G·U], i.e. the panel geometry
// of W_ih with the rows in place of K.
constexpr int64_t projection_elems(int64_t n, int64_t rows, int64_t gates, int64_t width) {
  return packed_elems(n, rows, gates, width);
}
// The sweep projects the input of a block of τ steps at a time (about kProjectionRows rows), just before their
// recurrence, so that the projection is still in L2 when the steps read it. Projecting all T·B rows first wrote a
// buffer that the steps then read back from memory, and the cell epilogue was ~30 % slower (LSTM, B = 32, H = 256,
// T = 128 against T = 8, 1 thread). Each block re-reads a worker's W_ih panels, so weights that do not fit L2 anyway
// (over kProjectionBlockWeightBytes of packed W_ih and W_hh per worker) keep one block of all T steps: blocks made an
// LSTM with H = I = 512 on 1 thread 2 % slower.
constexpr int64_t kProjectionRows = 192;
constexpr int64_t kProjectionBlockWeightBytes = int64_t(2) << 20;
constexpr int64_t projection_block_steps(int64_t steps, int64_t batch, int64_t weight_bytes_per_worker) {
  const int64_t tau = weight_bytes_per_worker > kProjectionBlockWeightBytes ? steps
                                                                           : (kProjectionRows + batch - 1) / batch;
  return tau < steps ? tau : steps;
}

// Rows per block of the big GEMMs (kernel.inc: a projection block's rows, matmul's M): a multiple of every tile height.
constexpr int64_t kGemmRowBlock = 48;

// Panels [begin, end) of `panels` owned by worker w of n: contiguous, sizes differing by at most one.
struct PanelRange {
  int64_t begin, end;
};
inline PanelRange worker_panels(int64_t panels, int64_t w, int64_t n) {
  return {panels * w / n, panels * (w + 1) / n};
}

// --------------------------------------------------------------------------------------------------- arguments
// The sweep both passes run: sizes, direction, per-row lengths or in-sequence resets (never both).
struct Sweep {
  int64_t steps = 0, batch = 0, hidden = 0, out_size = 0;  // T, B, H, H_out
  bool reverse = false;
  const int64_t* lengths = nullptr;  // [B] or nullptr
  const bool* resets = nullptr;      // [T, B] or nullptr: the ops' resets (starts_from_initial, common/step.h)
};

template <typename T>
struct ForwardArgs : Sweep {
  int64_t input_size = 0;    // I
  const T* x = nullptr;      // [T, B, I]    the layer's input
  const T* w_ih = nullptr;   // [G*H, I]
  const T* b_ih = nullptr;   // [G*H]        zeros when the layer has no bias
  const T* w_hh = nullptr;   // [G*H, H_out]
  const T* b_hh = nullptr;   // [G*H]        zeros when the layer has no bias
  const T* w_hr = nullptr;   // [H_out, H]   projection (LSTM proj_size) or nullptr
  const T* h0 = nullptr;     // [B, H_out]
  const T* c0 = nullptr;     // [B, H]       LSTM

  T* xg = nullptr;        // projection_elems(H, τ·B, G, W), τ = block_steps (projection_block_steps): x_t W_ihᵀ
                          //   (no bias) of a block of τ steps as [panel][(t - t_first)·B + b][G·U], t_first the
                          //   block's earliest time; each worker fills its own panels
  int64_t block_steps = 0;  // τ
  T* output = nullptr;    // [T, B, H_out]  zero on padded steps
  T* h_state = nullptr;   // [2, B, H_out]  running state, double-buffered; step s writes buffer s % 2
  T* c_state = nullptr;   // [2, B, H]      LSTM cell state when not training (cells == nullptr), same scheme
  T* cell_out = nullptr;  // [B, H]         σ(o)·tanh(c) before the projection (proj only)
  T* saved = nullptr;     // [T, B, S*H]    activations for backward; nullptr in inference
  T* cells = nullptr;     // [T, B, H]      c_t (LSTM); nullptr in inference

  T* packed_ih = nullptr;    // packed_elems(H, I, G, W)        W_ih panels
  T* packed = nullptr;       // packed_elems(H, H_out, G, W)    W_hh panels
  T* packed_proj = nullptr;  // packed_elems(H_out, H, 1, W)    W_hr panels (proj only)
  T* scratch = nullptr;      // [workers, scratch_elems_per_worker(B, W)]
};

template <typename T>
struct BackwardArgs : Sweep {
  const T* w_hh = nullptr;      // [G*H, H_out]
  const T* w_hr = nullptr;      // [H_out, H] or nullptr
  const T* grad_out = nullptr;  // [T, B, H_out]  zero on padded steps
  const T* grad_h_n = nullptr;  // [B, H_out]
  const T* saved = nullptr;     // [T, B, S*H]
  const T* cells = nullptr;     // [T, B, H]  c_t (LSTM)
  const T* c0 = nullptr;        // [B, H]     (LSTM)
  const T* h_prev = nullptr;    // [T, B, H_out]  the state each step started from (GRU)
  const T* output = nullptr;    // [T, B, H_out]  (Elman RNN)

  T* dgx = nullptr;        // [T, B, G*H]  dL/d(input-projection pre-activations)
  T* dgh = nullptr;        // [T, B, G*H]  dL/d(recurrent pre-activations); == dgx unless GRU
  T* dh_seq = nullptr;     // [T, B, H_out]  dL/dh_t (proj only; dW_hr needs it)
  T* dh_direct = nullptr;  // [B, H_out]  the part of dL/dh_{t-1} that skips W_hh (no proj)
  T* dc = nullptr;         // [B, H]  in: dL/dc_n; out: dL/dc_0 (LSTM)
  T* grad_h0 = nullptr;    // [B, H_out]  dL/dh_0 of the first step (the runner adds dh_to_h0)
  T* dh_to_h0 = nullptr;   // [B, H_out]  zeroed, with resets: Σ of what reached h0 at segment starts; else nullptr
  T* dc_to_c0 = nullptr;   // [B, H]      the same for c0 (LSTM with resets); the runner adds it to dc

  T* packed = nullptr;       // packed_elems(H_out, G*H, 1, W)  W_hh columns (K = G*H)
  T* packed_proj = nullptr;  // packed_elems(H, H_out, 1, W)    W_hr columns (proj only)
  T* scratch = nullptr;      // [workers, scratch_elems_per_worker(B, W)]
};

// matmul's B panels: kMatmulUnitBlocks vectors of columns each (kernel.inc).
constexpr int64_t kMatmulUnitBlocks = 4;
constexpr int64_t kMatmulDepthChunk = 256;  // rows of a per chunk when A = aᵀ (the weight gradients' Σ over T·B)
constexpr int64_t matmul_panel_units(int64_t width) { return width * kMatmulUnitBlocks; }
constexpr int64_t matmul_packed_elems(int64_t n, int64_t k, int64_t width) {
  return panel_count(n, matmul_panel_units(width)) * k * matmul_panel_units(width);
}

// out[M, N] = A · B (out += A · B with accumulate) with A = a [M, K] (row-major), or with a_transposed A = aᵀ for
// a [K, M]; B(k, n) = b[k·b_k_stride + n·b_n_stride]. Backward's dL/dx = dgates · W_ih and weight gradients
// Σ_t dgates_tᵀ · x_t; a cell step's backward GEMMs (csrc/cell/cell_ops.h).
template <typename T>
struct MatmulArgs {
  int64_t M = 0, K = 0, N = 0;
  const T* a = nullptr;
  bool a_transposed = false;
  const T* b = nullptr;
  int64_t b_k_stride = 0, b_n_stride = 0;
  T* out = nullptr;       // [M, N]
  bool accumulate = false;
  T* packed = nullptr;    // matmul_packed_elems(N, min(K, kMatmulDepthChunk) if a_transposed else K, W): B's panels
  T* packed_a = nullptr;  // [M, min(K, kMatmulDepthChunk)]  a chunk of aᵀ (a_transposed only)
};

// ------------------------------------------------------------------------------------------------ entry points
// One set per ISA, each in its own file compiled for that ISA. forward/backward run the workers team.first ..
// team.last - 1 over all steps (every thread of the team calls it); matmul likewise shares one product.
// vector_width: W for float (false) / double.
#define RNNF_DECLARE_FUSED_ISA(ns)                                       \
  namespace ns {                                                         \
  bool compiled();                                                       \
  int64_t vector_width(bool is_double);                                  \
  template <typename Cell, typename T>                                   \
  void forward(const ForwardArgs<T>& args, const Team& team);           \
  template <typename Cell, typename T>                                   \
  void backward(const BackwardArgs<T>& args, const Team& team);         \
  template <typename T>                                                  \
  void matmul(const MatmulArgs<T>& args, const Team& team);             \
  }

RNNF_DECLARE_FUSED_ISA(avx512)
RNNF_DECLARE_FUSED_ISA(avx2)
RNNF_DECLARE_FUSED_ISA(portable)

#undef RNNF_DECLARE_FUSED_ISA

}  // namespace fused
}  // namespace cpu
}  // namespace rnnfused
