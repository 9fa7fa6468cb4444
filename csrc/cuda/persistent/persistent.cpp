// ATen side of the persistent path: the fit rule, weight packing, workspace, the launch, and the post-loop GEMMs.
#include "persistent.h"

#include <ATen/Context.h>
#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/util/Exception.h>

#include <cstdlib>
#include <cstring>
#include <mutex>

#include "../device_type.h"
#include "../kernels/launch_status.h"

namespace rnnfused {
namespace persistent {
namespace {

template <typename K, typename S>
K* kernel_ptr(const at::Tensor& t) {
  return t.defined() && t.numel() > 0 ? reinterpret_cast<K*>(t.data_ptr<S>()) : nullptr;
}

// The watchdog's record: one pinned, mapped host allocation for the process (portable: any device writes it).
struct StallMemory {
  std::mutex mutex;
  StallRecord* host = nullptr;    // what the host reads
  StallRecord* device = nullptr;  // the same memory as the kernels address it
  bool failed = false;            // the allocation failed once: launches run without a record (abort still works)
};

StallMemory& stall_memory() {
  static StallMemory* m = new StallMemory();  // never freed: kernels may hold the pointer until process exit
  return *m;
}

// The device pointer of the record, allocating it on first use (also inside a stream capture: the allocation is
// not a stream operation, and the relaxed capture mode lets it through).
StallRecord* stall_record_device() {
  StallMemory& m = stall_memory();
  const std::lock_guard<std::mutex> lock(m.mutex);
  if (m.device != nullptr || m.failed) return m.device;
  cudaStreamCaptureMode mode = cudaStreamCaptureModeRelaxed;
  cuda::cleared(cudaThreadExchangeStreamCaptureMode(&mode));
  void* host = nullptr;
  void* device = nullptr;
  cudaError_t err = cuda::cleared(cudaHostAlloc(&host, sizeof(StallRecord), cudaHostAllocMapped | cudaHostAllocPortable));
  if (err == cudaSuccess) {
    std::memset(host, 0, sizeof(StallRecord));
    err = cuda::cleared(cudaHostGetDevicePointer(&device, host, 0));
  }
  cuda::cleared(cudaThreadExchangeStreamCaptureMode(&mode));
  if (err != cudaSuccess) {
    m.failed = true;
    TORCH_WARN_ONCE("rnnfused persistent: no pinned host memory for the stall record (", cudaGetErrorString(err),
                    "); a stalled launch is still abandoned, but without the record of where it stalled");
    return nullptr;
  }
  m.host = static_cast<StallRecord*>(host);
  m.device = static_cast<StallRecord*>(device);
  return m.device;
}

// Raises the record of an earlier abandoned launch (and clears it, so the error is reported once).
void check_previous_stall() {
  const StallRecord r = take_stall();
  TORCH_CHECK(!r.stalled, "rnnfused persistent: an earlier launch was abandoned by the watchdog: ", describe_stall(r),
              ". Its results were invalid; this call did not run. (Read such records with "
              "rnnfused.persistent_stall() after torch.cuda.synchronize().)");
}

DeviceLimits device_limits(const cudaDeviceProp& prop) {
  DeviceLimits d;
  d.sm_count = prop.multiProcessorCount;
  d.smem_per_block_optin = static_cast<int>(prop.sharedMemPerBlockOptin);
  d.cooperative_launch = prop.cooperativeLaunch != 0;
  d.cc_major = prop.major;
  return d;
}

void check_layer(const LayerArgs& a, const char* what) {
  TORCH_CHECK(a.input.is_cuda(), "rnnfused persistent ", what, ": input must be a CUDA tensor, got ", a.input.device());
  TORCH_CHECK(!a.w_hr.defined(), "rnnfused persistent ", what,
              ": proj_size (w_hr) is not supported by the persistent kernels; use the step-wise path");
}

// What a launch of either direction needs besides its tensors: the plan, the math mode and the workspace (the
// exchange buffer and the per-CTA flags).
struct Launch {
  at::ScalarType dtype;
  MathMode mode;
  Plan plan;
  at::TensorOptions opts, cell_opts;
  at::Tensor ring;   // [ring_bytes(geo)] uint8: [2, ring_rows, k_padded] elements, or LL words (zeroed)
  at::Tensor flags;  // [flag_words(geo)] int32, zero: the flags, then the abort word
  StallRecord* stall;
  DebugOptions debug;

  Launch(const LayerArgs& a, Direction dir, const char* what, const DebugOptions& dbg = DebugOptions())
      : dtype(a.input.scalar_type()),
        mode(math_mode(dtype)),
        plan(plan_layer(a.G, a.H, a.B, dtype, dir, *at::cuda::getCurrentDeviceProperties())),
        opts(a.input.options()),
        cell_opts(opts.dtype(cell_dtype(dtype))),
        debug(dbg) {
    TORCH_CHECK(plan.ok, "rnnfused persistent ", what, ": this layer does not fit the persistent kernels: ",
                plan.why_not, " (use the step-wise path)");
    const Variant variant = Variant(plan.geo.variant);
    TORCH_CHECK(variant_supported(mode, variant), "rnnfused persistent ", what, ": ", kTuningEnvVar, " variant ",
                variant_name(variant), " runs on the tensor-core math modes only (bf16, fp16, TF32); ",
                at::toString(dtype), " runs the FMA engine, which has the baseline variant only");
    check_previous_stall();
    stall = stall_record_device();
    const at::TensorOptions bytes = opts.dtype(at::kByte);
    ring = is_ll(plan.geo) ? at::zeros({ring_bytes(plan.geo)}, bytes) : at::empty({ring_bytes(plan.geo)}, bytes);
    flags = at::zeros({flag_words(plan.geo)}, opts.dtype(at::kInt));
  }

  const Geometry& geo() const { return plan.geo; }

  // Fills the fields both directions share; K: the kernels' storage type.
  template <typename K>
  void fill(SequenceArgs& args, const LayerArgs& a, K** ring_ptr) const {
    args.steps = static_cast<int>(a.T);
    args.reverse = a.reverse;
    args.lengths = a.lengths.defined() ? a.lengths.data_ptr<int64_t>() : nullptr;
    args.resets = a.resets.defined() ? a.resets.data_ptr<bool>() : nullptr;  // [T, B], contiguous (make_layer_args)
    args.flags = reinterpret_cast<unsigned*>(flags.data_ptr<int>());
    args.abort_word = args.flags + abort_word_index(plan.geo);
    args.stall = stall;
    args.spin_limit = debug.spin_limit;
    args.debug_stall_phase = debug.stall_phase;
    *ring_ptr = reinterpret_cast<K*>(ring.data_ptr());
  }

  void check(cudaError_t err, const char* what) const {
    TORCH_CHECK(err == cudaSuccess, "rnnfused persistent ", what, " launch failed: ", cudaGetErrorString(err), " (",
                describe(plan.geo), ")");
  }
};

}  // namespace

StallRecord take_stall(bool clear) {
  StallMemory& m = stall_memory();
  const std::lock_guard<std::mutex> lock(m.mutex);
  StallRecord r;
  std::memset(static_cast<void*>(&r), 0, sizeof(r));
  if (m.host == nullptr || m.host->stalled == 0u) return r;
  std::memcpy(static_cast<void*>(&r), static_cast<const void*>(m.host), sizeof(r));
  if (clear) std::memset(static_cast<void*>(m.host), 0, sizeof(StallRecord));
  return r;
}

MathMode math_mode(at::ScalarType dtype) {
  if (dtype == at::kHalf || dtype == at::kBFloat16) return MathMode::kTensorCore;
  if (dtype == at::kFloat && at::globalContext().allowTF32CuBLAS()) return MathMode::kTensorCore;
  return MathMode::kFma;
}

Tuning tuning_from_env() {
  Tuning t;
  std::string error;
  TORCH_CHECK(parse_tuning(std::getenv(kTuningEnvVar), &t, &error), "rnnfused persistent: ", error);
  return t;
}

Plan plan_layer(int64_t gates, int64_t hidden, int64_t batch, at::ScalarType dtype, Direction dir,
                const cudaDeviceProp& prop) {
  PlanRequest r;
  r.dir = dir;
  r.gates = static_cast<int>(gates);
  r.hidden = hidden;
  r.batch = batch;
  r.elem_bytes = static_cast<int>(c10::elementSize(dtype));
  r.acc_bytes = dtype == at::kDouble ? 8 : 4;
  r.max_ntiles = max_ntiles_for(r.elem_bytes, math_mode(dtype));
  r.state_arrays = gates == LstmCell::kGates ? 2 : 1;  // (h or dh) + (c or dc) for the LSTM
  const Tuning tuning = tuning_from_env();
  r.units_override = tuning.units;
  r.n_chunk_override = tuning.n_chunk;
  r.variant = tuning.variant;
  return make_plan(r, device_limits(prop));
}

bool persistent_supported(const LayerArgs& a, const cudaDeviceProp& prop, std::string* why_not, Pass pass) {
  auto no = [why_not](const std::string& why) {
    if (why_not) *why_not = why;
    return false;
  };
  if (!a.input.is_cuda()) return no("the persistent kernels run CUDA tensors");
  if (a.w_hr.defined()) return no("proj_size (w_hr) is not supported by the persistent kernels");
  if (a.zoneout.defined()) return no("zoneout is not supported by the persistent kernels");
  const at::ScalarType dtype = a.input.scalar_type();
  if (dtype == at::kDouble) return no("float64 runs on the step-wise path (the persistent FMA mode is for tests)");
  if (math_mode(dtype) != MathMode::kTensorCore) {
    return no("float32 without TF32 (torch.backends.cuda.matmul.allow_tf32 is False) runs on the step-wise path");
  }
  for (Direction dir : {Direction::kForward, Direction::kBackward}) {
    if (pass == Pass::kForward && dir == Direction::kBackward) continue;
    if (pass == Pass::kBackward && dir == Direction::kForward) continue;
    const Plan plan = plan_layer(a.G, a.H, a.B, dtype, dir, prop);
    if (!plan.ok) return no(plan.why_not);
  }
  if (why_not) why_not->clear();
  return true;
}

bool persistent_supported(const LayerArgs& a, std::string* why_not, Pass pass) {
  if (!a.input.is_cuda()) {
    if (why_not) *why_not = "the persistent kernels run CUDA tensors";
    return false;
  }
  return persistent_supported(a, *at::cuda::getDeviceProperties(a.input.device().index()), why_not, pass);
}

template <typename Cell>
ForwardResult persistent_forward(const LayerArgs& a, const DebugOptions& debug) {
  constexpr int64_t S = Cell::kSaved;
  check_layer(a, "forward");
  const c10::cuda::CUDAGuard guard(a.input.device());
  const int64_t T = a.T, B = a.B, H = a.H;
  const Launch launch(a, Direction::kForward, "forward", debug);
  const auto& opts = launch.opts;

  // [T*B, G*H]  input projection of every step: one GEMM (biases are added in the kernel), as the step-wise driver.
  const at::Tensor xg = at::mm(a.input.view({T * B, a.I}), a.w_ih.t());
  const at::Tensor c0 = Cell::kHasCellState ? a.c0.to(launch.cell_opts).contiguous() : at::Tensor();  // [B, H]
  const at::Tensor w_packed = pack_weights(a.w_hh, a.G, launch.geo());  // [ctas, G*units, k_padded]

  ForwardResult r;
  r.output = at::empty({T, B, H}, opts);
  r.h_n = at::empty({B, H}, opts);
  r.saved = at::empty({T, B, S * H}, opts);
  r.cells = at::empty({Cell::kHasCellState ? T : 0, B, H}, launch.cell_opts);

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, launch.dtype, "rnnfused_persistent_forward", [&] {
    using K = cuda::device_type_t<scalar_t>;
    using A = typename AccOf<K>::type;
    ForwardArgs<K> args;
    launch.fill(args, a, &args.ring);
    args.xg = kernel_ptr<K, scalar_t>(xg);
    args.b_ih = kernel_ptr<K, scalar_t>(a.b_ih);
    args.b_hh = kernel_ptr<K, scalar_t>(a.b_hh);
    args.h0 = kernel_ptr<K, scalar_t>(a.h0);
    args.c0 = kernel_ptr<A, A>(c0);
    args.w_packed = kernel_ptr<K, scalar_t>(w_packed);
    args.output = kernel_ptr<K, scalar_t>(r.output);
    args.h_n = kernel_ptr<K, scalar_t>(r.h_n);
    args.saved = kernel_ptr<K, scalar_t>(r.saved);
    args.cells = kernel_ptr<A, A>(r.cells);
    launch.check(launch_persistent_forward<Cell, K>(args, launch.geo(), launch.mode,
                                                    at::cuda::getCurrentCUDAStream()),
                 "forward");
  });

  // A copy, never a view of `cells`: op outputs must not alias each other.
  if (Cell::kHasCellState) r.c_n = r.cells.select(0, a.reverse ? 0 : T - 1).to(launch.dtype, false, true);
  return r;
}

template <typename Cell>
BackwardResult persistent_backward(const LayerArgs& a, const at::Tensor& grad_output, const at::Tensor& grad_h_n,
                                   const at::Tensor& grad_c_n, const ForwardResult& fwd) {
  constexpr int64_t G = Cell::kGates;
  check_layer(a, "backward");
  const c10::cuda::CUDAGuard guard(a.input.device());
  const int64_t T = a.T, B = a.B, H = a.H, GH = G * H;
  const Launch launch(a, Direction::kBackward, "backward");
  const auto& opts = launch.opts;
  const at::ScalarType dtype = launch.dtype;

  const bool lstm = Cell::kHasCellState;
  const at::Tensor grad_out = masked_grad_output(a, grad_output);                         // [T, B, H]
  const at::Tensor h_prev = previous_states(a, fwd.output, a.h0);                          // [T, B, H]
  const at::Tensor c0 = lstm ? a.c0.to(launch.cell_opts).contiguous() : at::Tensor();      // [B, H]
  const at::Tensor gh = grad_h_n.to(dtype).contiguous();                                    // [B, H]
  const at::Tensor gc = lstm ? grad_c_n.to(dtype).contiguous() : at::Tensor();             // [B, H]
  const at::Tensor saved = fwd.saved.defined() ? fwd.saved.contiguous() : at::Tensor();    // [T, B, S*H]
  const at::Tensor cells = lstm ? fwd.cells.contiguous() : at::Tensor();                   // [T, B, H]
  const at::Tensor output = fwd.output.contiguous();                                       // [T, B, H]
  const at::Tensor w_packed = pack_weights(a.w_hh, a.G, launch.geo());                   // [ctas, units, k_padded]

  at::Tensor dgx = at::empty({T, B, GH}, opts);                                            // [T, B, G*H]
  at::Tensor dgh = Cell::kSplitRecurrentGrad ? at::empty({T, B, GH}, opts) : dgx;          // [T, B, G*H]
  at::Tensor grad_h0 = at::empty({B, H}, opts);                                            // [B, H]
  at::Tensor grad_c0 = lstm ? at::empty({B, H}, opts) : at::Tensor();                      // [B, H]
  // With resets: the kernel's per-row sums of the gradients entering the segment starts, in the cell dtype.
  const bool resets = a.resets.defined();
  const at::Tensor reset_grad_h0 = resets ? at::zeros({B, H}, launch.cell_opts) : at::Tensor();           // [B, H]
  const at::Tensor reset_grad_c0 = resets && lstm ? at::zeros({B, H}, launch.cell_opts) : at::Tensor();  // [B, H]

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dtype, "rnnfused_persistent_backward", [&] {
    using K = cuda::device_type_t<scalar_t>;
    using A = typename AccOf<K>::type;
    BackwardArgs<K> args;
    launch.fill(args, a, &args.ring);
    args.grad_out = kernel_ptr<K, scalar_t>(grad_out);
    args.grad_h_n = kernel_ptr<K, scalar_t>(gh);
    args.grad_c_n = kernel_ptr<K, scalar_t>(gc);
    args.saved = kernel_ptr<K, scalar_t>(saved);
    args.cells = kernel_ptr<A, A>(cells);
    args.c0 = kernel_ptr<A, A>(c0);
    args.h_prev = kernel_ptr<K, scalar_t>(h_prev);
    args.output = kernel_ptr<K, scalar_t>(output);
    args.w_packed = kernel_ptr<K, scalar_t>(w_packed);
    args.dgx = kernel_ptr<K, scalar_t>(dgx);
    args.dgh = kernel_ptr<K, scalar_t>(dgh);
    args.grad_h0 = kernel_ptr<K, scalar_t>(grad_h0);
    args.grad_c0 = kernel_ptr<K, scalar_t>(grad_c0);
    args.reset_grad_h0 = kernel_ptr<A, A>(reset_grad_h0);
    args.reset_grad_c0 = kernel_ptr<A, A>(reset_grad_c0);
    launch.check(launch_persistent_backward<Cell, K>(args, launch.geo(), launch.mode,
                                                     at::cuda::getCurrentCUDAStream()),
                 "backward");
  });

  return backward_gemms(a, dgx, dgh, h_prev, grad_h0, grad_c0);
}

#define RNNF_PERSISTENT_INSTANTIATE_HOST(CELL)                                                                  \
  template ForwardResult persistent_forward<CELL>(const LayerArgs&, const DebugOptions&);                       \
  template BackwardResult persistent_backward<CELL>(const LayerArgs&, const at::Tensor&, const at::Tensor&,     \
                                                    const at::Tensor&, const ForwardResult&);
RNNF_PERSISTENT_INSTANTIATE_HOST(LstmCell)
RNNF_PERSISTENT_INSTANTIATE_HOST(GruCell)
RNNF_PERSISTENT_INSTANTIATE_HOST(RnnTanhCell)
RNNF_PERSISTENT_INSTANTIATE_HOST(RnnReluCell)

}  // namespace persistent
}  // namespace rnnfused
