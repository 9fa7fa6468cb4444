// The fused pointwise pass of one step on the CPU: one sweep over the batch (parallel over rows) that applies
// the gate nonlinearities, updates the state and saves what backward needs. The math is in cell_math.h.
//
// The per-row loops are written to vectorize (no data-dependent branches inside; compile-time cell traits; float
// exp/tanh from host_math.h) and are compiled three times: for the baseline ISA, for AVX2+FMA and for AVX-512 (zmm,
// whose masks also let GCC if-convert the math's selects), run with the fused kernels' ISA (cpu_path.h: active_isa,
// so the test hook that forces an ISA reaches these loops too). The LSTM forward math alone, float64 / float32 on
// the dev machine's Zen 4: 13.0 / 5.8 ns per unit with AVX2, 6.7 / 2.8 with AVX-512.
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>

#include "../common/cell_math.h"
#include "../common/step.h"
#include "cpu_path.h"

namespace rnnfused {
namespace cpu {

inline bool row_active(const int64_t* lengths, int64_t t, int64_t b) {
  return lengths == nullptr || t < lengths[b];
}

// Rows per parallel chunk: about 16K values of work per chunk, so small batches stay on one thread.
inline int64_t grain_rows(int64_t values_per_row) {
  return std::max<int64_t>(1, 16384 / std::max<int64_t>(1, values_per_row));
}

#if defined(__x86_64__) && defined(__GNUC__)
#define RNNF_TARGET_AVX2 __attribute__((target("avx2,fma")))
#define RNNF_TARGET_AVX512 __attribute__((target("avx512f,avx2,fma,prefer-vector-width=512")))
#define RNNF_HAVE_ISA_CLONES 1
#else
#define RNNF_TARGET_AVX2
#define RNNF_TARGET_AVX512
#define RNNF_HAVE_ISA_CLONES 0
#endif

// A copy of a step's row loop: rows [b_begin, b_end) of step s.
template <typename Step>
using RowLoop = void (*)(const Step& s, int64_t b_begin, int64_t b_end);

// Runs the copy of the row loop for this ISA over chunks of the batch's rows in parallel.
template <typename Step>
void run_row_loop(const Step& s, int64_t values_per_row, RowLoop<Step> avx512, RowLoop<Step> avx2,
                  RowLoop<Step> generic) {
  const fused::Isa isa = RNNF_HAVE_ISA_CLONES ? active_isa() : fused::Isa::kPortable;
  const RowLoop<Step> rows = isa == fused::Isa::kAvx512 ? avx512 : isa == fused::Isa::kAvx2 ? avx2 : generic;
  at::parallel_for(0, s.batch, grain_rows(values_per_row),
                   [&](int64_t b_begin, int64_t b_end) { rows(s, b_begin, b_end); });
}

// ------------------------------------------------------------------------------------------------------- forward
// One active row. The pointers are restrict-qualified parameters (GCC honours restrict on parameters, not on
// locals), so the loop over units vectorizes without run-time alias checks.
template <typename Cell, typename T, typename C>
RNNF_ALWAYS_INLINE void forward_units(int64_t H, const T* __restrict__ xg, const T* __restrict__ hg,
                                      const T* __restrict__ b_ih, const T* __restrict__ b_hh,
                                      const T* __restrict__ h_prev,
                                      const C* __restrict__ c_prev, T* __restrict__ saved, C* __restrict__ c_new,
                                      T* __restrict__ out) {
  constexpr int G = Cell::kGates;
  constexpr int S = Cell::kSaved;
  for (int64_t j = 0; j < H; ++j) {
    C x[G], h[G], sv[S > 0 ? S : 1];
    for (int g = 0; g < G; ++g) {
      x[g] = C(xg[g * H + j]) + C(b_ih[g * H + j]);
      h[g] = C(hg[g * H + j]) + C(b_hh[g * H + j]);
    }
    const C cp = Cell::kHasCellState ? c_prev[j] : C(0);
    const C hp = Cell::kReadsPrevHidden ? C(h_prev[j]) : C(0);
    C cn = C(0), o = C(0);
    Cell::forward(x, h, cp, hp, sv, cn, o);
    for (int k = 0; k < S; ++k) saved[k * H + j] = T(sv[k]);
    if (Cell::kHasCellState) c_new[j] = cn;
    out[j] = T(o);
  }
}

template <typename Cell, typename T, typename C>
RNNF_ALWAYS_INLINE void forward_rows(const ForwardStep<T, C>& s, int64_t b_begin, int64_t b_end) {
  constexpr int G = Cell::kGates;
  constexpr int S = Cell::kSaved;
  const int64_t H = s.hidden;
  for (int64_t b = b_begin; b < b_end; ++b) {
    T* saved = s.saved + b * S * H;  // [S*H]
    T* out = s.out + b * H;          // [H]
    if (!row_active(s.lengths, s.t, b)) {
      std::fill(out, out + H, T(0));
      std::fill(saved, saved + S * H, T(0));
      if (Cell::kHasCellState) std::copy(s.c_prev + b * H, s.c_prev + (b + 1) * H, s.c_new + b * H);
      continue;
    }
    forward_units<Cell>(H, s.xg + b * G * H, s.hg + b * G * H, s.b_ih, s.b_hh,
                        Cell::kReadsPrevHidden ? s.h_prev + b * H : nullptr,
                        Cell::kHasCellState ? s.c_prev + b * H : nullptr, saved,
                        Cell::kHasCellState ? s.c_new + b * H : nullptr, out);
    // After the unit loop: h_prev may alias h_state (GRU reads it above).
    if (s.h_state) std::copy(out, out + H, s.h_state + b * H);
  }
}

template <typename Cell, typename T, typename C>
RNNF_TARGET_AVX512 void forward_rows_avx512(const ForwardStep<T, C>& s, int64_t b_begin, int64_t b_end) {
  forward_rows<Cell>(s, b_begin, b_end);
}

template <typename Cell, typename T, typename C>
RNNF_TARGET_AVX2 void forward_rows_avx2(const ForwardStep<T, C>& s, int64_t b_begin, int64_t b_end) {
  forward_rows<Cell>(s, b_begin, b_end);
}

template <typename Cell, typename T, typename C>
void forward_rows_generic(const ForwardStep<T, C>& s, int64_t b_begin, int64_t b_end) {
  forward_rows<Cell>(s, b_begin, b_end);
}

template <typename Cell, typename T, typename C>
void forward_step(const ForwardStep<T, C>& s) {
  run_row_loop<ForwardStep<T, C>>(s, Cell::kGates * s.hidden, &forward_rows_avx512<Cell, T, C>,
                                  &forward_rows_avx2<Cell, T, C>, &forward_rows_generic<Cell, T, C>);
}

// ------------------------------------------------------------------------------------------------------ backward
// One active row (restrict parameters, as forward_units). kFromDr: the gradient into the cell output is dr (after
// a projection) instead of dh_in + grad_out. dgh may equal dgx, so it is only written for split-gradient cells.
template <typename Cell, bool kFromDr, typename T, typename C>
RNNF_ALWAYS_INLINE void backward_units(int64_t H, const T* __restrict__ dh_in, const T* __restrict__ grad_out,
                                       const T* __restrict__ dr, const T* __restrict__ saved, const C* __restrict__ c,
                                       const C* __restrict__ c_prev, const T* __restrict__ h_prev,
                                       const T* __restrict__ out, C* __restrict__ dc, T* __restrict__ dgx,
                                       T* __restrict__ dgh, T* __restrict__ dh_direct) {
  constexpr int G = Cell::kGates;
  constexpr int S = Cell::kSaved;
  for (int64_t j = 0; j < H; ++j) {
    const C dout = kFromDr ? C(dr[j]) : C(dh_in[j]) + C(grad_out[j]);
    C sv[S > 0 ? S : 1], gx[G], gh[G];
    for (int k = 0; k < S; ++k) sv[k] = C(saved[k * H + j]);
    C dc_prev = C(0), dd = C(0);
    Cell::backward(dout, Cell::kHasCellState ? dc[j] : C(0), sv, Cell::kHasCellState ? c[j] : C(0),
                   Cell::kHasCellState ? c_prev[j] : C(0), Cell::kReadsPrevHidden ? C(h_prev[j]) : C(0),
                   Cell::kReadsOutput ? C(out[j]) : C(0), gx, gh, dc_prev, dd);
    for (int g = 0; g < G; ++g) {
      dgx[g * H + j] = T(gx[g]);
      if (Cell::kSplitRecurrentGrad) dgh[g * H + j] = T(gh[g]);
    }
    if (Cell::kHasCellState) dc[j] = dc_prev;
    if (!kFromDr) dh_direct[j] = T(dd);
  }
}

template <typename Cell, bool kFromDr, typename T, typename C>
RNNF_ALWAYS_INLINE void backward_rows(const BackwardStep<T, C>& s, int64_t b_begin, int64_t b_end) {
  constexpr int G = Cell::kGates;
  constexpr int S = Cell::kSaved;
  const int64_t H = s.hidden;
  const int64_t H_out = s.out_size;
  for (int64_t b = b_begin; b < b_end; ++b) {
    const T* dh_in = s.dh_in + b * H_out;                          // [H_out]
    const T* grad_out = kFromDr ? nullptr : s.grad_out + b * H_out;  // [H_out]
    T* dgx = s.dgx + b * G * H;                                      // [G*H]
    T* dgh = s.dgh + b * G * H;                                      // [G*H] (may equal dgx)
    T* dh_direct = s.dh_direct + b * H_out;                          // [H_out]
    if (!row_active(s.lengths, s.t, b)) {
      // The state passed through this step untouched: so does its gradient (dc stays in place).
      for (int64_t j = 0; j < H_out; ++j) dh_direct[j] = kFromDr ? dh_in[j] : T(C(dh_in[j]) + C(grad_out[j]));
      std::fill(dgx, dgx + G * H, T(0));
      std::fill(dgh, dgh + G * H, T(0));
      continue;
    }
    backward_units<Cell, kFromDr>(H, dh_in, grad_out, kFromDr ? s.dr + b * H : nullptr, s.saved + b * S * H,
                                  Cell::kHasCellState ? s.c + b * H : nullptr,
                                  Cell::kHasCellState ? s.c_prev + b * H : nullptr,
                                  Cell::kReadsPrevHidden ? s.h_prev + b * H : nullptr,
                                  Cell::kReadsOutput ? s.out + b * H : nullptr,
                                  Cell::kHasCellState ? s.dc + b * H : nullptr, dgx,
                                  Cell::kSplitRecurrentGrad ? dgh : nullptr, dh_direct);
    // With a projection (LSTM only) no part of dL/dh_{t-1} skips W_hh.
    if (kFromDr) std::fill(dh_direct, dh_direct + H_out, T(0));
  }
}

template <typename Cell, bool kFromDr, typename T, typename C>
RNNF_TARGET_AVX512 void backward_rows_avx512(const BackwardStep<T, C>& s, int64_t b_begin, int64_t b_end) {
  backward_rows<Cell, kFromDr>(s, b_begin, b_end);
}

template <typename Cell, bool kFromDr, typename T, typename C>
RNNF_TARGET_AVX2 void backward_rows_avx2(const BackwardStep<T, C>& s, int64_t b_begin, int64_t b_end) {
  backward_rows<Cell, kFromDr>(s, b_begin, b_end);
}

template <typename Cell, bool kFromDr, typename T, typename C>
void backward_rows_generic(const BackwardStep<T, C>& s, int64_t b_begin, int64_t b_end) {
  backward_rows<Cell, kFromDr>(s, b_begin, b_end);
}

template <typename Cell, bool kFromDr, typename T, typename C>
void backward_step_impl(const BackwardStep<T, C>& s) {
  run_row_loop<BackwardStep<T, C>>(s, Cell::kGates * s.hidden, &backward_rows_avx512<Cell, kFromDr, T, C>,
                                   &backward_rows_avx2<Cell, kFromDr, T, C>,
                                   &backward_rows_generic<Cell, kFromDr, T, C>);
}

template <typename Cell, typename T, typename C>
void backward_step(const BackwardStep<T, C>& s) {
  if (s.dr) {
    backward_step_impl<Cell, true>(s);
  } else {
    backward_step_impl<Cell, false>(s);
  }
}

}  // namespace cpu
}  // namespace rnnfused
