#include "cpu_path.h"

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <atomic>

#include "../sequence/layer_query.h"

namespace rnnfused {
namespace cpu {
namespace {

// -1: automatic; otherwise the forced CpuPath / Isa.
std::atomic<int> g_forced_path{-1};
std::atomic<int> g_forced_isa{-1};
std::atomic<int64_t> g_forced_workers{0};

bool cpu_supports(fused::Isa isa) {
  switch (isa) {
    case fused::Isa::kPortable:
      return fused::portable::compiled();
    case fused::Isa::kAvx2:
#if defined(__x86_64__) && defined(__GNUC__)
      return fused::avx2::compiled() && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
      return false;
#endif
    case fused::Isa::kAvx512:
#if defined(__x86_64__) && defined(__GNUC__)
      // libgcc's check includes the OS's support for the zmm state (XGETBV).
      return fused::avx512::compiled() && __builtin_cpu_supports("avx512f");
#else
      return false;
#endif
  }
  return false;
}

fused::Isa best_isa() {
  static const fused::Isa best = [] {
    if (cpu_supports(fused::Isa::kAvx512)) return fused::Isa::kAvx512;
    if (cpu_supports(fused::Isa::kAvx2)) return fused::Isa::kAvx2;
    return fused::Isa::kPortable;
  }();
  return best;
}

}  // namespace

CpuPath choose_path(const LayerArgs& a) {
  const int forced = g_forced_path.load(std::memory_order_relaxed);
  const at::ScalarType dtype = a.input.scalar_type();
  const bool fused_dtype = dtype == at::kFloat || dtype == at::kDouble;
  const bool fused_features = !a.zoneout.defined();
  if (forced >= 0) {
    TORCH_CHECK(forced == int(CpuPath::kStepwise) || fused_dtype,
                "rnnfused: the fused CPU path was forced, but it runs float32 and float64 only, got ", dtype);
    TORCH_CHECK(forced == int(CpuPath::kStepwise) || fused_features,
                "rnnfused: the fused CPU path was forced, but it does not run zoneout (the step-wise path does)");
    return static_cast<CpuPath>(forced);
  }
  // The rule: the fused kernels for float32/float64 (the CPU's native FMA dtypes); 16-bit dtypes take the step-wise
  // path (no native bf16/fp16 arithmetic is assumed; its GEMM converts), and so do layers with zoneout. So does a
  // call of one step of one row (streaming, step-by-step decoding): the fused path packs W_ih and W_hh at every
  // call, which one matrix-vector step cannot repay, while the step-wise path's BLAS GEMVs read them in place
  // (stepwise / fused time at T = B = 1, 2 threads, float32, LSTM and GRU: 0.73-0.96x up to H = 128, 0.30-0.41x at
  // H = 1024. One-step calls with B >= 4: 0.92-1.40x up to H = 256, down to 0.73x from H = 512; table in the README,
  // 2026-12-01).
  const bool one_vector_step = a.T == 1 && a.B == 1;
  return fused_dtype && fused_features && !one_vector_step ? CpuPath::kFused : CpuPath::kStepwise;
}

const char* path_name(CpuPath path) { return path == CpuPath::kFused ? "fused" : "stepwise"; }

fused::Isa active_isa() {
  const int forced = g_forced_isa.load(std::memory_order_relaxed);
  return forced >= 0 ? static_cast<fused::Isa>(forced) : best_isa();
}

const char* isa_name(fused::Isa isa) {
  switch (isa) {
    case fused::Isa::kAvx512:
      return "avx512";
    case fused::Isa::kAvx2:
      return "avx2";
    case fused::Isa::kPortable:
      return "portable";
  }
  return "unknown";
}

std::string query_path(const std::string& cell, int64_t seq_len, int64_t batch, int64_t input_size,
                       int64_t hidden_size, int64_t proj_size, const std::string& dtype, bool bias, bool lengths,
                       bool reverse) {
  const LayerQuery q = make_layer_query("rnnfused.cpu_path", cell, seq_len, batch, input_size, hidden_size, proj_size,
                                        dtype, bias, lengths, reverse, at::Device(at::kMeta));
  return path_name(choose_path(q.args));
}

std::string force_path(const std::string& path) {
  int value = -1;
  if (path == "stepwise") {
    value = int(CpuPath::kStepwise);
  } else if (path == "fused") {
    value = int(CpuPath::kFused);
  } else {
    TORCH_CHECK(path == "auto", "rnnfused: the CPU path must be auto, stepwise or fused, got '", path, "'");
  }
  const int old = g_forced_path.exchange(value);
  return old < 0 ? "auto" : path_name(static_cast<CpuPath>(old));
}

std::string force_isa(const std::string& isa) {
  int value = -1;
  if (isa != "auto") {
    fused::Isa wanted = fused::Isa::kPortable;
    if (isa == "avx2") {
      wanted = fused::Isa::kAvx2;
    } else if (isa == "avx512") {
      wanted = fused::Isa::kAvx512;
    } else {
      TORCH_CHECK(isa == "portable", "rnnfused: the CPU ISA must be auto, portable, avx2 or avx512, got '", isa, "'");
    }
    TORCH_CHECK(cpu_supports(wanted), "rnnfused: this CPU (or build) cannot run the ", isa, " kernels");
    value = int(wanted);
  }
  const int old = g_forced_isa.exchange(value);
  return old < 0 ? "auto" : isa_name(static_cast<fused::Isa>(old));
}

int64_t force_workers(int64_t workers) {
  TORCH_CHECK(workers >= 0, "rnnfused: the forced worker count must be >= 0 (0: automatic), got ", workers);
  return g_forced_workers.exchange(workers);
}

int64_t forced_workers() { return g_forced_workers.load(std::memory_order_relaxed); }

}  // namespace cpu
}  // namespace rnnfused
