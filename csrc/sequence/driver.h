// The step-wise recurrence of one layer-direction, forward and BPTT backward, written once against ATen.
//
// Per step: one GEMM for the recurrence (h W_hhᵀ, through ATen/BLAS/cuBLAS) and ONE fused pointwise pass supplied by
// a `Pointwise` policy (the CPU loops, or a CUDA kernel launch). Everything that is not sequential is one big GEMM
// outside the loop: the input projection of all T steps before it, and dX, dW_ih, dW_hh, dW_hr and the bias
// gradients after the reverse sweep.
//
// A Pointwise policy provides
//   template <typename Cell, typename T, typename C> static void forward(const ForwardStep<T, C>&);
//   template <typename Cell, typename T, typename C> static void backward(const BackwardStep<T, C>&);
#pragma once

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>

#include "../common/cell_math.h"
#include "../common/step.h"
#include "layer_args.h"

namespace rnnfused {

struct ForwardResult {
  at::Tensor output;  // [T, B, H_out]  zero on padded steps
  at::Tensor h_n;     // [B, H_out]
  at::Tensor c_n;     // [B, H] (LSTM)
  at::Tensor saved;   // [T, B, S*H]    activations for backward (Cell::kSaved per unit)
  at::Tensor cells;   // [T, B, H] in cell_dtype (LSTM): c_t, carried unchanged through padded steps
};

struct BackwardResult {
  at::Tensor grad_input, grad_h0, grad_c0, grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh, grad_w_hr;
};

// Time index of step s (0-based in processing order) of a direction, and of the step before it.
inline int64_t time_of_step(const LayerArgs& a, int64_t s) { return a.reverse ? a.T - 1 - s : s; }
inline int64_t previous_time(const LayerArgs& a, int64_t t) { return a.reverse ? t + 1 : t - 1; }

// [T, B] bool: step t of row b is a real (not padded) step.
inline at::Tensor valid_steps(const LayerArgs& a) {
  return at::arange(a.T, a.lengths.options()).unsqueeze(1) < a.lengths.unsqueeze(0);
}

// [T, B, X]: the state each step started from. `seq` holds the states each step produced (the layer output);
// `init` [B, X] is the initial state. In reverse with lengths, row b starts at t = lengths[b]-1, from init; with
// resets, every step that starts a segment (reset_starts) starts from init.
at::Tensor previous_states(const LayerArgs& a, const at::Tensor& seq, const at::Tensor& init);

// [T, B] bool: step t of row b starts from the initial state because a reset splits the sequence there
// (starts_from_initial in common/step.h, as a tensor); undefined without resets.
at::Tensor reset_starts(const LayerArgs& a);

// Resets in BPTT: at the steps that started from the initial state, the gradient of the entering state (`carry`,
// [B, X], dL/d(state entering step t)) belongs to the initial state: it moves into `to_init` [B, X] and the carry
// into the neighbour step becomes zero. `starts_t` [B, 1] is reset_starts(a)[t].
inline void move_reset_grad(const at::Tensor& starts_t, at::Tensor& carry, at::Tensor& to_init) {
  to_init.add_(carry * starts_t);
  carry.masked_fill_(starts_t, 0);
}

// Zoneout (LayerArgs::zoneout) on one state of one step: `state` [B, X] holds the cell's candidate and becomes
// candidate + keep·(previous − candidate), keep [B, X] the step's mask. Rows of padded steps (state == previous)
// stay as they are for any mask.
inline void zone_out(const at::Tensor& keep, const at::Tensor& previous, at::Tensor& state) {
  state.add_(keep * (previous - state));
}

// Zoneout in BPTT: of `grad` [B, X], the gradient of a zoned-out state, keep·grad reaches the previous state directly
// (moved into `kept`) and the rest, (1 − keep)·grad, the candidate (left in `grad`).
inline void split_zoneout_grad(const at::Tensor& keep, at::Tensor& grad, at::Tensor& kept) {
  kept.copy_(grad * keep);
  grad.sub_(kept);
}

// The LSTM's candidate cell state c̃_t = σ(f)·c_{t-1} + σ(i)·tanh(g) from its saved activations `saved_t`
// [B, 4*H] (σ(i), σ(f), tanh(g), σ(o)) and c_prev [B, H], into `out` [B, H] (cell dtype): backward of zoneout
// needs it where the forward kept only the zoned-out c_t.
inline void lstm_candidate_cells(const at::Tensor& saved_t, const at::Tensor& c_prev, at::Tensor& out) {
  const int64_t H = c_prev.size(1);
  const at::Tensor sv = saved_t.to(out.scalar_type());
  out.copy_(sv.narrow(1, H, H) * c_prev + sv.narrow(1, 0, H) * sv.narrow(1, 2 * H, H));
}

// [T, B, H_out] dL/doutput, contiguous and zero where the output is padding (a constant that no parameter reaches).
inline at::Tensor masked_grad_output(const LayerArgs& a, const at::Tensor& grad_output) {
  at::Tensor grad_out = grad_output.contiguous();
  if (a.lengths.defined()) grad_out = grad_out * valid_steps(a).unsqueeze(2).to(grad_out.scalar_type());
  return grad_out;
}

// The non-sequential part of BPTT, shared by every path that runs the reverse sweep: dX, dW_ih, dW_hh and the bias
// gradients as big GEMMs/reductions over all steps. dgx, dgh [T, B, G*H] gate gradients of the sweep (dgh may be
// dgx); h_prev [T, B, H_out] the state each step started from; dh [B, H_out] and dc [B, H] (cell dtype, undefined
// without a cell state) the gradients that reached h0 and c0. grad_w_hr is left to the caller.
inline BackwardResult backward_gemms(const LayerArgs& a, const at::Tensor& dgx, const at::Tensor& dgh,
                                     const at::Tensor& h_prev, const at::Tensor& dh, const at::Tensor& dc) {
  const int64_t TB = a.T * a.B, GH = a.G * a.H;
  BackwardResult g;
  const at::Tensor dgx2d = dgx.view({TB, GH});
  const at::Tensor dgh2d = dgh.view({TB, GH});
  g.grad_input = at::mm(dgx2d, a.w_ih).view({a.T, a.B, a.I});
  g.grad_h0 = dh;
  g.grad_c0 = dc.defined() ? dc.to(a.input.scalar_type()) : at::Tensor();
  g.grad_w_ih = at::mm(dgx2d.t(), a.input.view({TB, a.I}));
  g.grad_w_hh = at::mm(dgh2d.t(), h_prev.view({TB, a.H_out}));
  g.grad_b_ih = dgx2d.sum(0);
  g.grad_b_hh = dgh2d.sum(0);
  return g;
}

template <typename Cell, typename Pointwise>
ForwardResult sequence_forward(const LayerArgs& a) {
  constexpr int64_t G = Cell::kGates, S = Cell::kSaved;
  const int64_t T = a.T, B = a.B, H = a.H, H_out = a.H_out, GH = G * a.H;
  const auto opts = a.input.options();
  const auto cell_opts = opts.dtype(cell_dtype(a.input.scalar_type()));
  const bool proj = a.w_hr.defined();

  // [T, B, G*H]  input projection of every step: one GEMM (the biases are added in the pointwise pass).
  const at::Tensor xg = at::mm(a.input.view({T * B, a.I}), a.w_ih.t());
  const at::Tensor b_ih = a.b_ih.defined() ? a.b_ih : at::zeros({GH}, opts);  // [G*H]
  const at::Tensor b_hh = a.b_hh.defined() ? a.b_hh : at::zeros({GH}, opts);  // [G*H]
  const at::Tensor w_hh_t = a.w_hh.t();                                         // [H_out, G*H] view
  const at::Tensor c0 = Cell::kHasCellState ? a.c0.to(cell_opts.dtype()).contiguous() : at::Tensor();  // [B, H]

  ForwardResult r;
  r.output = at::empty({T, B, H_out}, opts);
  // Training keeps every step's activations and cell states for backward; inference (!a.train) reuses one step's
  // scratch (saved) and two cell-state buffers (c_{t-1}, c_t), and returns saved/cells empty.
  const int64_t kept = a.train ? T : 1;
  const at::Tensor saved = at::empty({kept, B, S * H}, opts);                                            // [T|1, B, S*H]
  const at::Tensor cells = at::empty({Cell::kHasCellState ? (a.train ? T : 2) : 0, B, H}, cell_opts);  // [T|2, B, H]
  at::Tensor h_state = a.h0.clone(at::MemoryFormat::Contiguous);  // [B, H_out] running hidden state
  at::Tensor hg = at::empty({B, GH}, opts);                        // [B, G*H]  h W_hhᵀ of this step
  at::Tensor cell_out = proj ? at::empty({B, H}, opts) : at::Tensor();  // [B, H]  r before the projection
  const at::Tensor starts = reset_starts(a);                              // [T, B] bool, or undefined
  at::Tensor c_in = starts.defined() && Cell::kHasCellState ? at::empty({B, H}, cell_opts) : at::Tensor();  // [B, H]
  const bool zoneout = a.zoneout.defined();  // never with a projection (make_layer_args)
  at::Tensor h_before = zoneout ? at::empty({B, H}, opts) : at::Tensor();  // [B, H]  h_{t-1} of this step
  const at::Tensor active = zoneout && a.lengths.defined() ? valid_steps(a) : at::Tensor();  // [T, B] bool

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, a.input.scalar_type(), "rnnfused_forward", [&] {
    using T_ = scalar_t;
    using C_ = at::opmath_type<scalar_t>;
    for (int64_t s = 0; s < T; ++s) {
      const int64_t t = time_of_step(a, s);
      const at::Tensor fresh = starts.defined() && s > 0 ? starts.select(0, t).unsqueeze(1) : at::Tensor();  // [B, 1]
      if (fresh.defined()) h_state.copy_(at::where(fresh, a.h0, h_state));  // a new segment starts from h0
      if (zoneout) h_before.copy_(h_state);
      at::mm_out(hg, h_state, w_hh_t);
      ForwardStep<T_, C_> st;
      st.batch = B;
      st.hidden = H;
      st.t = t;
      st.lengths = a.lengths.defined() ? a.lengths.data_ptr<int64_t>() : nullptr;
      st.xg = xg.data_ptr<T_>() + t * B * GH;
      st.hg = hg.data_ptr<T_>();
      st.b_ih = b_ih.data_ptr<T_>();
      st.b_hh = b_hh.data_ptr<T_>();
      st.h_prev = h_state.data_ptr<T_>();
      at::Tensor c_prev, c_new;  // [B, H] (cell state)
      if (Cell::kHasCellState) {
        const int64_t slot = a.train ? t : s & 1, prev_slot = a.train ? previous_time(a, t) : (s - 1) & 1;
        c_prev = s == 0 ? c0 : cells.select(0, prev_slot);
        if (fresh.defined()) {  // ... and from c0
          c_in.copy_(at::where(fresh, c0, c_prev));
          c_prev = c_in;
        }
        c_new = cells.select(0, slot);
        st.c_prev = c_prev.data_ptr<C_>();
        st.c_new = c_new.data_ptr<C_>();
      }
      st.saved = saved.data_ptr<T_>() + (a.train ? t : 0) * B * S * H;
      st.out = proj ? cell_out.data_ptr<T_>() : r.output.data_ptr<T_>() + t * B * H;
      st.h_state = proj ? nullptr : h_state.data_ptr<T_>();
      Pointwise::template forward<Cell>(st);
      if (zoneout) {  // the step's state is candidate + m·(previous − candidate); the output is that state
        const at::Tensor keep = a.zoneout.select(1, t);  // [S, B, H]
        zone_out(keep.select(0, 0), h_before, h_state);
        at::Tensor out_t = r.output.select(0, t);  // [B, H]
        out_t.copy_(active.defined() ? at::where(active.select(0, t).unsqueeze(1), h_state, 0) : h_state);
        if (Cell::kHasCellState) zone_out(keep.select(0, 1), c_prev, c_new);
      }
      if (proj) {
        at::Tensor out_t = r.output.select(0, t);  // [B, H_out]
        at::mm_out(out_t, cell_out, a.w_hr.t());   // padded rows: cell_out is 0, so out_t is 0
        if (a.lengths.defined()) {
          h_state.copy_(at::where((a.lengths > t).unsqueeze(1), out_t, h_state));
        } else {
          h_state.copy_(out_t);
        }
      }
    }
  });

  r.h_n = h_state;
  // A copy, never a view of `cells`: op outputs must not alias each other.
  const int64_t last = a.train ? (a.reverse ? 0 : T - 1) : (T - 1) & 1;
  if (Cell::kHasCellState) r.c_n = cells.select(0, last).to(a.input.scalar_type(), false, true);
  r.saved = a.train ? saved : at::empty({0}, opts);
  r.cells = a.train ? cells : at::empty({0}, cell_opts);
  return r;
}

template <typename Cell, typename Pointwise>
BackwardResult sequence_backward(const LayerArgs& a, const at::Tensor& grad_output, const at::Tensor& grad_h_n,
                                 const at::Tensor& grad_c_n, const ForwardResult& fwd) {
  constexpr int64_t G = Cell::kGates, S = Cell::kSaved;
  const int64_t T = a.T, B = a.B, H = a.H, H_out = a.H_out, GH = G * a.H;
  const auto opts = a.input.options();
  const auto cell_opts = opts.dtype(cell_dtype(a.input.scalar_type()));
  const bool proj = a.w_hr.defined();

  const at::Tensor grad_out = masked_grad_output(a, grad_output);  // [T, B, H_out]
  const at::Tensor h_prev = previous_states(a, fwd.output, a.h0);  // [T, B, H_out]
  const at::Tensor c0 = Cell::kHasCellState ? a.c0.to(cell_opts.dtype()).contiguous() : at::Tensor();

  at::Tensor dgx = at::empty({T, B, GH}, opts);                                  // [T, B, G*H]
  at::Tensor dgh = Cell::kSplitRecurrentGrad ? at::empty({T, B, GH}, opts) : dgx;  // [T, B, G*H]
  at::Tensor dh = grad_h_n.to(opts.dtype()).clone(at::MemoryFormat::Contiguous);   // [B, H_out] carry
  at::Tensor dc = Cell::kHasCellState ? grad_c_n.to(cell_opts.dtype()).clone(at::MemoryFormat::Contiguous)
                                      : at::Tensor();                              // [B, H] carry
  at::Tensor dh_direct = at::empty({B, H_out}, opts);                             // [B, H_out]
  at::Tensor dh_seq = proj ? at::empty({T, B, H_out}, opts) : at::Tensor();       // [T, B, H_out] dL/dh_t
  at::Tensor dr = proj ? at::empty({B, H}, opts) : at::Tensor();                  // [B, H]
  const at::Tensor starts = reset_starts(a);                                       // [T, B] bool, or undefined
  // With resets: the gradients that reached h0/c0 at segment starts, and c_{t-1} or c0 per step.
  at::Tensor dh_to_h0 = starts.defined() ? at::zeros_like(dh) : at::Tensor();      // [B, H_out]
  at::Tensor dc_to_c0 = starts.defined() && Cell::kHasCellState ? at::zeros_like(dc) : at::Tensor();  // [B, H]
  at::Tensor c_in = dc_to_c0.defined() ? at::empty({B, H}, cell_opts) : at::Tensor();                  // [B, H]
  // With zoneout (never with a projection): the parts of dh/dc that skip the cell, the candidate c̃_t, and a zero
  // grad_output for the pointwise pass (grad_output is folded into dh first).
  const bool zoneout = a.zoneout.defined();
  at::Tensor dh_kept = zoneout ? at::empty_like(dh) : at::Tensor();                                     // [B, H]
  at::Tensor dc_kept = zoneout && Cell::kHasCellState ? at::empty_like(dc) : at::Tensor();              // [B, H]
  at::Tensor c_candidate = dc_kept.defined() ? at::empty({B, H}, cell_opts) : at::Tensor();            // [B, H]
  const at::Tensor no_grad_out = zoneout ? at::zeros({B, H_out}, opts) : at::Tensor();                // [B, H]

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, a.input.scalar_type(), "rnnfused_backward", [&] {
    using T_ = scalar_t;
    using C_ = at::opmath_type<scalar_t>;
    for (int64_t s = T - 1; s >= 0; --s) {
      const int64_t t = time_of_step(a, s);
      BackwardStep<T_, C_> st;
      st.batch = B;
      st.hidden = H;
      st.out_size = H_out;
      st.t = t;
      st.lengths = a.lengths.defined() ? a.lengths.data_ptr<int64_t>() : nullptr;
      if (proj) {
        at::Tensor dh_t = dh_seq.select(0, t);
        at::add_out(dh_t, dh, grad_out.select(0, t));
        at::mm_out(dr, dh_t, a.w_hr);
        st.dh_in = dh_t.data_ptr<T_>();
        st.dr = dr.data_ptr<T_>();
      } else {
        st.dh_in = dh.data_ptr<T_>();
        st.grad_out = grad_out.data_ptr<T_>() + t * B * H_out;
      }
      const at::Tensor keep = zoneout ? a.zoneout.select(1, t) : at::Tensor();  // [S, B, H]
      if (zoneout) {
        dh.add_(grad_out.select(0, t));  // dL/dh_t (zoned out) ...
        split_zoneout_grad(keep.select(0, 0), dh, dh_kept);  // ... of which (1 − m) reaches the candidate
        st.grad_out = no_grad_out.data_ptr<T_>();
      }
      st.saved = fwd.saved.data_ptr<T_>() + t * B * S * H;
      if (Cell::kHasCellState) {
        at::Tensor c_prev = s == 0 ? c0 : fwd.cells.select(0, previous_time(a, t));  // [B, H]
        if (c_in.defined() && s > 0) {
          c_in.copy_(at::where(starts.select(0, t).unsqueeze(1), c0, c_prev));
          c_prev = c_in;
        }
        st.c = fwd.cells.data_ptr<C_>() + t * B * H;
        if (zoneout) {  // the cell math ran on c̃_t, not on the zoned-out c_t that was kept
          split_zoneout_grad(keep.select(0, 1), dc, dc_kept);
          lstm_candidate_cells(fwd.saved.select(0, t), c_prev, c_candidate);
          st.c = c_candidate.data_ptr<C_>();
        }
        st.c_prev = c_prev.data_ptr<C_>();
        st.dc = dc.data_ptr<C_>();
      }
      st.h_prev = h_prev.data_ptr<T_>() + t * B * H_out;
      st.out = fwd.output.data_ptr<T_>() + t * B * H_out;
      st.dgx = dgx.data_ptr<T_>() + t * B * GH;
      st.dgh = dgh.data_ptr<T_>() + t * B * GH;
      st.dh_direct = dh_direct.data_ptr<T_>();
      Pointwise::template backward<Cell>(st);
      at::addmm_out(dh, dh_direct, dgh.select(0, t), a.w_hh);  // dL/dh_{t-1}
      if (zoneout) {
        dh.add_(dh_kept);
        if (Cell::kHasCellState) dc.add_(dc_kept);
      }
      if (starts.defined() && s > 0) {
        const at::Tensor starts_t = starts.select(0, t).unsqueeze(1);  // [B, 1]
        move_reset_grad(starts_t, dh, dh_to_h0);
        if (Cell::kHasCellState) move_reset_grad(starts_t, dc, dc_to_c0);
      }
    }
  });
  if (starts.defined()) {
    dh.add_(dh_to_h0);
    if (Cell::kHasCellState) dc.add_(dc_to_c0);
  }

  BackwardResult g = backward_gemms(a, dgx, dgh, h_prev, dh, Cell::kHasCellState ? dc : at::Tensor());
  if (proj) {
    // r_t = σ(o)·tanh(c_t), recomputed; it is zero on padded rows, so their dh_t does not count.
    const at::Tensor cell_outputs = (fwd.saved.narrow(2, 3 * H, H).to(cell_opts.dtype()) * fwd.cells.tanh())
                                        .to(opts.dtype()).view({T * B, H});
    g.grad_w_hr = at::mm(dh_seq.view({T * B, H_out}).t(), cell_outputs);
  }
  return g;
}

}  // namespace rnnfused
