#include "fused_runner.h"

#include <ATen/Parallel.h>

#include <algorithm>

#include "../common/cells.h"
#include "cpu_path.h"
#include "fixed_order.h"
#include "fused/kernel_api.h"
#include "scratch.h"

namespace rnnfused {
namespace cpu {
namespace {

using fused::Isa;
using fused::Team;

// A step's GEMM is shared only when each worker gets at least this many multiply-adds (about 2 µs of FMA work on
// one core), else the barrier costs more than the second thread saves. Measured: see cpu_path.cpp.
constexpr int64_t kMinFmasPerWorker = 32 * 1024;

int64_t vector_width(Isa isa, bool is_double) {
  switch (isa) {
    case Isa::kAvx512:
      return fused::avx512::vector_width(is_double);
    case Isa::kAvx2:
      return fused::avx2::vector_width(is_double);
    case Isa::kPortable:
      break;
  }
  return fused::portable::vector_width(is_double);
}

template <typename Cell, typename T>
void isa_forward(Isa isa, const fused::ForwardArgs<T>& args, const Team& team) {
  switch (isa) {
    case Isa::kAvx512:
      return fused::avx512::forward<Cell, T>(args, team);
    case Isa::kAvx2:
      return fused::avx2::forward<Cell, T>(args, team);
    case Isa::kPortable:
      break;
  }
  fused::portable::forward<Cell, T>(args, team);
}

template <typename Cell, typename T>
void isa_backward(Isa isa, const fused::BackwardArgs<T>& args, const Team& team) {
  switch (isa) {
    case Isa::kAvx512:
      return fused::avx512::backward<Cell, T>(args, team);
    case Isa::kAvx2:
      return fused::avx2::backward<Cell, T>(args, team);
    case Isa::kPortable:
      break;
  }
  fused::portable::backward<Cell, T>(args, team);
}

template <typename T>
void isa_matmul(Isa isa, const fused::MatmulArgs<T>& args, const Team& team) {
  switch (isa) {
    case Isa::kAvx512:
      return fused::avx512::matmul<T>(args, team);
    case Isa::kAvx2:
      return fused::avx2::matmul<T>(args, team);
    case Isa::kPortable:
      break;
  }
  fused::portable::matmul<T>(args, team);
}

// Runs fn(team) on every thread of a team of `workers` logical workers (see SpinBarrier for why any team size
// works). Nothing inside fn may throw: a thread leaving early would strand the others at the barrier.
template <typename Fn>
void run_team(int64_t workers, const Fn& fn) {
  fused::SpinBarrier barrier(workers);
  if (workers <= 1) {
    fn(Team{1, 0, 1, &barrier});
    return;
  }
  at::parallel_for(0, workers, 1, [&](int64_t begin, int64_t end) { fn(Team{workers, begin, end, &barrier}); });
}

// The sweep of a layer-direction's arguments.
fused::Sweep sweep_of(const LayerArgs& a) {
  fused::Sweep s;
  s.steps = a.T;
  s.batch = a.B;
  s.hidden = a.H;
  s.out_size = a.H_out;
  s.reverse = a.reverse;
  s.lengths = a.lengths.defined() ? a.lengths.data_ptr<int64_t>() : nullptr;
  s.resets = a.resets.defined() ? a.resets.data_ptr<bool>() : nullptr;  // contiguous (make_layer_args)
  return s;
}

// The packed W_hh (and W_hr) panels of a pass and the workers' partial sums: reused scratch (scratch.h).
struct Workspace {
  at::Tensor packed, packed_proj, sums;
};
Workspace workspace(int64_t packed_elems, int64_t proj_elems, int64_t workers, int64_t batch, int64_t width,
                    const at::TensorOptions& opts) {
  Workspace w;
  w.packed = scratch(ScratchSlot::kPackedWeights, {packed_elems}, opts);
  if (proj_elems > 0) w.packed_proj = scratch(ScratchSlot::kPackedProjection, {proj_elems}, opts);
  w.sums = scratch(ScratchSlot::kWorkerSums, {workers * fused::scratch_elems_per_worker(batch, width)}, opts);
  return w;
}

template <typename T>
T* ptr(const at::Tensor& t) {
  return t.defined() && t.numel() > 0 ? t.data_ptr<T>() : nullptr;
}

}  // namespace

int64_t team_workers(int64_t batch, int64_t outputs, int64_t depth, int64_t panels) {
  if (const int64_t forced = forced_workers()) return forced;
  if (at::in_parallel_region()) return 1;
  const int64_t threads = at::get_num_threads();
  const int64_t by_work = std::max<int64_t>(1, batch * outputs * depth / kMinFmasPerWorker);
  return std::max<int64_t>(1, std::min({threads, panels, by_work}));
}

at::Tensor fused_matmul(const at::Tensor& a, bool a_transposed, const at::Tensor& b) {
  TORCH_CHECK(a.dim() == 2 && b.dim() == 2, "rnnfused: matmul takes 2-D a and b, got ", a.dim(), "-D and ", b.dim(),
              "-D");
  at::Tensor out = at::empty({a.size(a_transposed ? 1 : 0), b.size(1)}, a.options());
  fused_matmul_into(a, a_transposed, b, out, false);
  return out;
}

void fused_matmul_into(const at::Tensor& a, bool a_transposed, const at::Tensor& b, const at::Tensor& out,
                       bool accumulate) {
  TORCH_CHECK(a.dim() == 2 && b.dim() == 2, "rnnfused: matmul takes 2-D a and b, got ", a.dim(), "-D and ", b.dim(),
              "-D");
  TORCH_CHECK(a.device().is_cpu() && b.device().is_cpu(), "rnnfused: matmul runs on the CPU");
  TORCH_CHECK(a.scalar_type() == b.scalar_type() && (a.scalar_type() == at::kFloat || a.scalar_type() == at::kDouble),
              "rnnfused: matmul takes float32 or float64 a and b of one dtype, got ", a.scalar_type(), " and ",
              b.scalar_type());
  TORCH_CHECK(a.is_contiguous(), "rnnfused: matmul's a must be contiguous");
  const int64_t M = a.size(a_transposed ? 1 : 0), K = a.size(a_transposed ? 0 : 1), N = b.size(1);
  TORCH_CHECK(K == b.size(0), "rnnfused: matmul's b must have ", K, " rows (the depth of a", a_transposed ? "ᵀ" : "",
              "), got ", b.size(0));
  TORCH_CHECK(out.dim() == 2 && out.size(0) == M && out.size(1) == N && out.is_contiguous() &&
                  out.scalar_type() == a.scalar_type() && out.device().is_cpu(),
              "rnnfused: matmul's out must be a contiguous CPU [", M, ", ", N, "] tensor of ", a.scalar_type(),
              ", got ", out.scalar_type(), " ", out.sizes());
  const Isa isa = active_isa();
  const bool is_double = a.scalar_type() == at::kDouble;
  const int64_t W = vector_width(isa, is_double);
  if (M == 0 || N == 0) return;
  const int64_t depth = a_transposed ? std::min(K, fused::kMatmulDepthChunk) : K;  // rows of B per chunk
  const at::Tensor packed = scratch(ScratchSlot::kPackedGemmOperand, {fused::matmul_packed_elems(N, depth, W)},
                                    a.options());
  const at::Tensor packed_a =
      a_transposed ? scratch(ScratchSlot::kPackedGemmRows, {M * depth}, a.options()) : at::Tensor();  // [M, depth]
  const int64_t pairs =
      fused::panel_count(M, fused::kGemmRowBlock) * fused::panel_count(N, fused::matmul_panel_units(W));
  const int64_t workers = team_workers(M, N, K, pairs);
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "rnnfused_fused_matmul", [&] {
    fused::MatmulArgs<scalar_t> args;
    args.M = M;
    args.K = K;
    args.N = N;
    args.a = a.data_ptr<scalar_t>();
    args.a_transposed = a_transposed;
    args.b = b.data_ptr<scalar_t>();
    args.b_k_stride = b.stride(0);
    args.b_n_stride = b.stride(1);
    args.out = out.data_ptr<scalar_t>();
    args.accumulate = accumulate;
    args.packed = ptr<scalar_t>(packed);
    args.packed_a = ptr<scalar_t>(packed_a);
    run_team(workers, [&](const Team& team) { isa_matmul<scalar_t>(isa, args, team); });
  });
}

template <typename Cell>
ForwardResult fused_forward(const LayerArgs& a) {
  constexpr int64_t G = Cell::kGates, S = Cell::kSaved;
  const int64_t T = a.T, B = a.B, H = a.H, H_out = a.H_out, GH = G * H;
  const auto opts = a.input.options();
  const bool proj = a.w_hr.defined();
  const bool lstm = Cell::kHasCellState;
  const Isa isa = active_isa();
  const int64_t W = vector_width(isa, a.input.scalar_type() == at::kDouble);
  const int64_t panels = fused::panel_count(H, fused::panel_units(W, G));
  const int64_t workers = team_workers(B, GH, H_out, panels);

  const int64_t packed_ih_elems = fused::packed_elems(H, a.I, G, W);    // W_ih panels
  const int64_t packed_hh_elems = fused::packed_elems(H, H_out, G, W);  // W_hh panels
  // The input projection of a block of steps (the kernel's workers fill it, each its own panels; kernel_api.h).
  const int64_t weight_bytes = (packed_ih_elems + packed_hh_elems) * int64_t(a.input.element_size()) / workers;
  const int64_t block_steps = fused::projection_block_steps(T, B, weight_bytes);
  const at::Tensor xg = scratch(ScratchSlot::kInputGates, {fused::projection_elems(H, block_steps * B, G, W)}, opts);
  const at::Tensor b_ih = a.b_ih.defined() ? a.b_ih : at::zeros({GH}, opts);  // [G*H]
  const at::Tensor b_hh = a.b_hh.defined() ? a.b_hh : at::zeros({GH}, opts);  // [G*H]
  const at::Tensor packed_ih = scratch(ScratchSlot::kPackedInputWeights, {packed_ih_elems}, opts);

  ForwardResult r;
  r.output = at::empty({T, B, H_out}, opts);
  r.saved = a.train && S > 0 ? at::empty({T, B, S * H}, opts) : at::empty({0}, opts);
  r.cells = a.train && lstm ? at::empty({T, B, H}, opts) : at::empty({0}, opts);
  const at::Tensor h_state = at::empty({2, B, H_out}, opts);                                  // [2, B, H_out]
  const at::Tensor c_state = lstm && !a.train ? at::empty({2, B, H}, opts) : at::Tensor();   // [2, B, H]
  const at::Tensor cell_out = proj ? at::empty({B, H}, opts) : at::Tensor();                  // [B, H]
  const Workspace ws = workspace(packed_hh_elems, proj ? fused::packed_elems(H_out, H, 1, W) : 0, workers, B, W, opts);

  AT_DISPATCH_FLOATING_TYPES(a.input.scalar_type(), "rnnfused_fused_forward", [&] {
    using T_ = scalar_t;
    fused::ForwardArgs<T_> args;
    static_cast<fused::Sweep&>(args) = sweep_of(a);
    args.input_size = a.I;
    args.block_steps = block_steps;
    args.x = a.input.data_ptr<T_>();
    args.w_ih = a.w_ih.data_ptr<T_>();
    args.b_ih = b_ih.data_ptr<T_>();
    args.xg = xg.data_ptr<T_>();
    args.w_hh = a.w_hh.data_ptr<T_>();
    args.b_hh = b_hh.data_ptr<T_>();
    args.w_hr = proj ? a.w_hr.data_ptr<T_>() : nullptr;
    args.h0 = a.h0.data_ptr<T_>();
    args.c0 = lstm ? a.c0.data_ptr<T_>() : nullptr;
    args.output = r.output.data_ptr<T_>();
    args.h_state = h_state.data_ptr<T_>();
    args.c_state = ptr<T_>(c_state);
    args.cell_out = ptr<T_>(cell_out);
    args.saved = ptr<T_>(r.saved);
    args.cells = ptr<T_>(r.cells);
    args.packed_ih = ptr<T_>(packed_ih);
    args.packed = ws.packed.data_ptr<T_>();
    args.packed_proj = ptr<T_>(ws.packed_proj);
    args.scratch = ws.sums.data_ptr<T_>();
    run_team(workers, [&](const Team& team) { isa_forward<Cell, T_>(isa, args, team); });
  });

  const int64_t last = (T - 1) & 1;  // the state buffer of the last step
  r.h_n = h_state.select(0, last).clone();
  if (lstm) {
    r.c_n = a.train ? r.cells.select(0, a.reverse ? 0 : T - 1).clone() : c_state.select(0, last).clone();
  }
  return r;
}

template <typename Cell>
BackwardResult fused_backward(const LayerArgs& a, const at::Tensor& grad_output, const at::Tensor& grad_h_n,
                              const at::Tensor& grad_c_n, const ForwardResult& fwd) {
  constexpr int64_t G = Cell::kGates;
  const int64_t T = a.T, B = a.B, H = a.H, H_out = a.H_out, GH = G * H;
  const auto opts = a.input.options();
  const bool proj = a.w_hr.defined();
  const bool lstm = Cell::kHasCellState;
  const Isa isa = active_isa();
  const int64_t W = vector_width(isa, a.input.scalar_type() == at::kDouble);
  const int64_t U1 = fused::panel_units(W, 1);
  const int64_t panels = std::min(fused::panel_count(H_out, U1), proj ? fused::panel_count(H, U1) : INT64_MAX);
  const int64_t workers = team_workers(B, H_out, GH, panels);

  const at::Tensor grad_out = masked_grad_output(a, grad_output);  // [T, B, H_out]
  const at::Tensor h_prev = previous_states(a, fwd.output, a.h0);  // [T, B, H_out]
  const at::Tensor dgx = scratch(ScratchSlot::kGateGrads, {T, B, GH}, opts);  // [T, B, G*H]
  const at::Tensor dgh =
      Cell::kSplitRecurrentGrad ? scratch(ScratchSlot::kRecurrentGateGrads, {T, B, GH}, opts) : dgx;  // [T, B, G*H]
  const at::Tensor dh_seq = proj ? at::empty({T, B, H_out}, opts) : at::Tensor();             // [T, B, H_out]
  const at::Tensor dh_direct = proj ? at::Tensor() : at::empty({B, H_out}, opts);            // [B, H_out]
  const at::Tensor dc = lstm ? grad_c_n.to(opts.dtype()).clone(at::MemoryFormat::Contiguous) : at::Tensor();  // [B, H]
  const at::Tensor grad_h = grad_h_n.to(opts.dtype()).contiguous();                          // [B, H_out]
  const at::Tensor grad_h0 = at::empty({B, H_out}, opts);                                    // [B, H_out]
  // Resets: what reached h0/c0 at segment starts, summed over each row's segments (move_reset_grad in driver.h).
  const bool resets = a.resets.defined();
  const at::Tensor dh_to_h0 = resets ? at::zeros({B, H_out}, opts) : at::Tensor();          // [B, H_out]
  const at::Tensor dc_to_c0 = resets && lstm ? at::zeros({B, H}, opts) : at::Tensor();      // [B, H]
  const Workspace ws = workspace(fused::packed_elems(H_out, GH, 1, W), proj ? fused::packed_elems(H, H_out, 1, W) : 0,
                                 workers, B, W, opts);

  AT_DISPATCH_FLOATING_TYPES(a.input.scalar_type(), "rnnfused_fused_backward", [&] {
    using T_ = scalar_t;
    fused::BackwardArgs<T_> args;
    static_cast<fused::Sweep&>(args) = sweep_of(a);
    args.w_hh = a.w_hh.data_ptr<T_>();
    args.w_hr = proj ? a.w_hr.data_ptr<T_>() : nullptr;
    args.grad_out = grad_out.data_ptr<T_>();
    args.grad_h_n = grad_h.data_ptr<T_>();
    args.saved = ptr<T_>(fwd.saved);
    args.cells = lstm ? fwd.cells.data_ptr<T_>() : nullptr;
    args.c0 = lstm ? a.c0.data_ptr<T_>() : nullptr;
    args.h_prev = h_prev.data_ptr<T_>();
    args.output = fwd.output.data_ptr<T_>();
    args.dgx = dgx.data_ptr<T_>();
    args.dgh = dgh.data_ptr<T_>();
    args.dh_seq = ptr<T_>(dh_seq);
    args.dh_direct = ptr<T_>(dh_direct);
    args.dc = ptr<T_>(dc);
    args.grad_h0 = grad_h0.data_ptr<T_>();
    args.dh_to_h0 = ptr<T_>(dh_to_h0);
    args.dc_to_c0 = ptr<T_>(dc_to_c0);
    args.packed = ws.packed.data_ptr<T_>();
    args.packed_proj = ptr<T_>(ws.packed_proj);
    args.scratch = ws.sums.data_ptr<T_>();
    run_team(workers, [&](const Team& team) { isa_backward<Cell, T_>(isa, args, team); });
  });
  if (resets) {
    grad_h0.add_(dh_to_h0);
    if (lstm) dc.add_(dc_to_c0);
  }

  // The non-sequential part of BPTT (as backward_gemms in driver.h), in thread-count-independent order.
  const at::Tensor dgx2d = dgx.view({T * B, GH});
  const at::Tensor dgh2d = dgh.view({T * B, GH});
  BackwardResult g;
  g.grad_input = fused_matmul(dgx2d, false, a.w_ih).view({T, B, a.I});
  g.grad_h0 = grad_h0;
  g.grad_c0 = lstm ? dc : at::Tensor();
  g.grad_w_ih = fused_matmul(dgx2d, true, a.input.view({T * B, a.I}));
  g.grad_w_hh = fused_matmul(dgh2d, true, h_prev.view({T * B, H_out}));
  g.grad_b_ih = fixed_order_column_sum(dgx2d);
  g.grad_b_hh = Cell::kSplitRecurrentGrad ? fixed_order_column_sum(dgh2d) : g.grad_b_ih.clone();
  if (proj) {
    // r_t = σ(o)·tanh(c_t), recomputed; zero on padded rows, so their dh_t does not count (as the step-wise path).
    const at::Tensor sigma_o = fwd.saved.view({T * B, 4 * H}).narrow(1, 3 * H, H);  // [T*B, H]
    const at::Tensor cells = fwd.cells.view({T * B, H});                             // [T*B, H]
    const at::Tensor cell_outputs = at::empty({T * B, H}, opts);                     // [T*B, H]
    for_each_row_chunk(T * B, [&](int64_t r0, int64_t rows) {
      at::Tensor out = cell_outputs.narrow(0, r0, rows);
      at::mul_out(out, sigma_o.narrow(0, r0, rows), cells.narrow(0, r0, rows).tanh());
    });
    g.grad_w_hr = fused_matmul(dh_seq.view({T * B, H_out}), true, cell_outputs);
  }
  return g;
}

#define RNNF_INSTANTIATE_FUSED(CellT)                                                                           \
  template ForwardResult fused_forward<CellT>(const LayerArgs&);                                                \
  template BackwardResult fused_backward<CellT>(const LayerArgs&, const at::Tensor&, const at::Tensor&,         \
                                                const at::Tensor&, const ForwardResult&);

RNNF_FOR_EACH_CELL(RNNF_INSTANTIATE_FUSED)

#undef RNNF_INSTANTIATE_FUSED

}  // namespace cpu
}  // namespace rnnfused
