// The one place that decides how the `cpu` backend runs a layer-direction, and which instruction set the fused
// kernels use.
//
//   fused     one parallel region for the whole sequence: threads own slices of hidden units, W_hh packed once per
//             call and cache-resident, a register-blocked micro-kernel with the cell math in its epilogue, one spin
//             barrier per step (csrc/cpu/fused/)
//   stepwise  per step one BLAS GEMM (h W_hhᵀ) and one fused pointwise pass (csrc/sequence/driver.h +
//             pointwise_cpu.h); serves every dtype
//
// Both paths save the same tensors, so either backward follows either forward. Python asks with
// rnnfused.cpu_path(...) and rnnfused.cpu_isa(); tests force a path or an ISA with the private hooks
// rnnfused._C._cpu_force_path / _cpu_force_isa (no environment variable: the rule is the product).
#pragma once

#include <cstdint>
#include <string>

#include "../sequence/layer_args.h"
#include "fused/kernel_api.h"

namespace rnnfused {
namespace cpu {

enum class CpuPath { kStepwise, kFused };

// THE rule (plus the test override).
CpuPath choose_path(const LayerArgs& a);
const char* path_name(CpuPath path);

// The ISA the fused kernels run with here: the best one compiled in and supported by this CPU (or the override).
fused::Isa active_isa();
const char* isa_name(fused::Isa isa);

// rnnfused._C.cpu_path: the path of a layer of this configuration ("fused" or "stepwise"); dtype as in
// rnnfused.cuda_path (float64, float32, float16, bfloat16).
std::string query_path(const std::string& cell, int64_t seq_len, int64_t batch, int64_t input_size,
                       int64_t hidden_size, int64_t proj_size, const std::string& dtype, bool bias, bool lengths,
                       bool reverse);

// Test hooks: force a path ("auto", "stepwise", "fused") or an ISA ("auto", "portable", "avx2", "avx512");
// return the previous setting. Forcing an ISA this CPU lacks is an error.
std::string force_path(const std::string& path);
std::string force_isa(const std::string& isa);
// Test hook: the fused kernels' team of logical workers (0: automatic, fused_runner.cpp's team_workers). Any count
// gives the same bits; more workers than threads or than panels exercises the barrier's weights and empty workers.
int64_t force_workers(int64_t workers);
int64_t forced_workers();

}  // namespace cpu
}  // namespace rnnfused
