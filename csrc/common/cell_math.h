// Per-element math of one recurrent step, for one (batch row, hidden unit) pair.
//
// Torch-free and usable from host and device code: the C++ CPU loops (csrc/cpu) and the CUDA kernels
// (csrc/cuda/kernels) both call these functions, so the equations live in exactly one place.
//
// Conventions (PyTorch's gate order, see DESIGN.md):
//   xg[g]  gate pre-activation from the input projection  x W_ihᵀ + b_ih          (block g of G)
//   hg[g]  gate pre-activation from the recurrence        h W_hhᵀ + b_hh          (block g of G)
//   saved  what backward needs, kSaved values per unit (activations after the nonlinearity)
//   A      the arithmetic type: float for float/half/bfloat16 storage, double for double.
#pragma once

#include <cmath>

#include "host_math.h"

#if defined(__CUDACC__) || defined(__HIPCC__)
#define RNNF_HD __host__ __device__ __forceinline__
#elif defined(__GNUC__)
#define RNNF_HD inline __attribute__((always_inline))
#else
#define RNNF_HD inline
#endif

namespace rnnfused {

// Explicit float/double overloads: the unqualified C names would promote float to double on some hosts.
// Host float uses host_math (vectorizable; glibc's expf/tanhf are scalar calls that would dominate the CPU loops).
RNNF_HD float exp_(float x) {
#if defined(__CUDA_ARCH__)
  return expf(x);
#else
  return host_math::exp(x);
#endif
}
RNNF_HD float tanh_(float x) {
#if defined(__CUDA_ARCH__)
  return tanhf(x);
#else
  return host_math::tanh(x);
#endif
}
RNNF_HD double exp_(double x) { return exp(x); }
RNNF_HD double tanh_(double x) { return tanh(x); }

template <typename A>
RNNF_HD A sigmoid(A x) {
  return A(1) / (A(1) + exp_(-x));
}

// LSTM: gates i, f, g, o.   c' = σ(f)c + σ(i)tanh(g),   r = σ(o)tanh(c')   (h' = r, or r W_hrᵀ with proj_size)
struct LstmCell {
  static constexpr const char* kName = "lstm";  // the op name (torch.ops.rnnfused.lstm) and rnnfused/_cells.py's key
  static constexpr int kGates = 4;
  static constexpr int kSaved = 4;  // σ(i), σ(f), tanh(g), σ(o)
  static constexpr bool kHasCellState = true;
  static constexpr bool kHasProjection = true;        // proj_size: h' = r W_hrᵀ (applied by the sequence code)
  static constexpr bool kSplitRecurrentGrad = false;  // dgh == dgx
  static constexpr bool kReadsPrevHidden = false;     // forward/backward read h_{t-1} per element
  static constexpr bool kReadsOutput = false;         // backward reads h_t per element

  template <typename A>
  RNNF_HD static void forward(const A* xg, const A* hg, A c_prev, A /*h_prev*/, A* saved, A& c_new,
                              A& out) {
    const A i = sigmoid(xg[0] + hg[0]);
    const A f = sigmoid(xg[1] + hg[1]);
    const A g = tanh_(xg[2] + hg[2]);
    const A o = sigmoid(xg[3] + hg[3]);
    c_new = f * c_prev + i * g;
    out = o * tanh_(c_new);
    saved[0] = i;
    saved[1] = f;
    saved[2] = g;
    saved[3] = o;
  }

  // dout: gradient w.r.t. r = σ(o)tanh(c') (w.r.t. h' when there is no projection).
  // dc:   gradient w.r.t. c' arriving from step t+1 (and from c_n).
  // dgx = dgh: gradient w.r.t. the gate pre-activations.  dh_direct: none (the whole dh_prev comes from dgh W_hh).
  template <typename A>
  RNNF_HD static void backward(A dout, A dc, const A* saved, A c, A c_prev, A /*h_prev*/, A /*out*/,
                               A* dgx, A* dgh, A& dc_prev, A& dh_direct) {
    const A i = saved[0], f = saved[1], g = saved[2], o = saved[3];
    const A tc = tanh_(c);
    const A dc_total = dc + dout * o * (A(1) - tc * tc);
    const A di = dc_total * g * i * (A(1) - i);
    const A df = dc_total * c_prev * f * (A(1) - f);
    const A dg = dc_total * i * (A(1) - g * g);
    const A d_o = dout * tc * o * (A(1) - o);
    dgx[0] = dgh[0] = di;
    dgx[1] = dgh[1] = df;
    dgx[2] = dgh[2] = dg;
    dgx[3] = dgh[3] = d_o;
    dc_prev = dc_total * f;
    dh_direct = A(0);
  }
};

// GRU: gates r, z, n.   n = tanh(xn + r·hn) with hn = W_hn h + b_hn kept apart,   h' = (1−z)n + z h.
struct GruCell {
  static constexpr const char* kName = "gru";
  static constexpr int kGates = 3;
  static constexpr int kSaved = 4;  // σ(r), σ(z), n, hn
  static constexpr bool kHasCellState = false;
  static constexpr bool kHasProjection = false;
  static constexpr bool kSplitRecurrentGrad = true;  // the n block of dgh is r·(that of dgx)
  static constexpr bool kReadsPrevHidden = true;
  static constexpr bool kReadsOutput = false;

  template <typename A>
  RNNF_HD static void forward(const A* xg, const A* hg, A /*c_prev*/, A h_prev, A* saved, A& /*c_new*/,
                              A& out) {
    const A r = sigmoid(xg[0] + hg[0]);
    const A z = sigmoid(xg[1] + hg[1]);
    const A n = tanh_(xg[2] + r * hg[2]);
    out = (A(1) - z) * n + z * h_prev;
    saved[0] = r;
    saved[1] = z;
    saved[2] = n;
    saved[3] = hg[2];
  }

  // dgx: gradient w.r.t. the input-projection pre-activations; dgh: w.r.t. the recurrent ones (they differ in
  // the n block, where the recurrent part is scaled by r).  dh_direct: z·dh', the path that skips W_hh.
  template <typename A>
  RNNF_HD static void backward(A dout, A /*dc*/, const A* saved, A /*c*/, A /*c_prev*/, A h_prev,
                               A /*out*/, A* dgx, A* dgh, A& /*dc_prev*/, A& dh_direct) {
    const A r = saved[0], z = saved[1], n = saved[2], hn = saved[3];
    const A dn_pre = dout * (A(1) - z) * (A(1) - n * n);
    const A dz_pre = dout * (h_prev - n) * z * (A(1) - z);
    const A dr_pre = dn_pre * hn * r * (A(1) - r);
    dgx[0] = dgh[0] = dr_pre;
    dgx[1] = dgh[1] = dz_pre;
    dgx[2] = dn_pre;
    dgh[2] = dn_pre * r;
    dh_direct = dout * z;
  }
};

// Elman RNN: h' = act(x W_ihᵀ + b_ih + h W_hhᵀ + b_hh), act = tanh or relu.  Backward reads h' (the output).
template <bool kRelu>
struct ElmanCell {
  static constexpr const char* kName = kRelu ? "rnn_relu" : "rnn_tanh";
  static constexpr int kGates = 1;
  static constexpr int kSaved = 0;
  static constexpr bool kHasCellState = false;
  static constexpr bool kHasProjection = false;
  static constexpr bool kSplitRecurrentGrad = false;
  static constexpr bool kReadsPrevHidden = false;
  static constexpr bool kReadsOutput = true;

  template <typename A>
  RNNF_HD static void forward(const A* xg, const A* hg, A /*c_prev*/, A /*h_prev*/, A* /*saved*/,
                              A& /*c_new*/, A& out) {
    const A pre = xg[0] + hg[0];
    out = kRelu ? (pre > A(0) ? pre : A(0)) : tanh_(pre);
  }

  template <typename A>
  RNNF_HD static void backward(A dout, A /*dc*/, const A* /*saved*/, A /*c*/, A /*c_prev*/,
                               A /*h_prev*/, A out, A* dgx, A* dgh, A& /*dc_prev*/, A& dh_direct) {
    const A d = kRelu ? (out > A(0) ? dout : A(0)) : dout * (A(1) - out * out);
    dgx[0] = dgh[0] = d;
    dh_direct = A(0);
  }
};

using RnnTanhCell = ElmanCell<false>;
using RnnReluCell = ElmanCell<true>;

}  // namespace rnnfused
