// The one place that decides how the `cuda` backend runs a layer-direction.
//
// Every CUDA op (csrc/cuda/ops_cuda.cpp) asks choose_path() first: the persistent kernels (one cooperative launch
// for all T steps, W_hh resident in shared memory; csrc/cuda/persistent) when their fit rule accepts the layer AND
// the measured crossover table (crossover.h; rnnfused/persistent_crossover.txt) allows its batch size, else the
// step-wise path (per step one cuBLAS GEMM + one fused pointwise kernel; csrc/cuda/kernels), which serves every
// shape and dtype. Both paths save the same tensors, so either backward can follow either forward.
// RNNFUSED_CUDA_PATH=stepwise|persistent forces a path (persistent: the fit rule only, not the table). Python asks
// which path a configuration takes, and why, with rnnfused.cuda_path(..., explain=True) (query_path below).
#pragma once

#include <cstdint>
#include <string>
#include <utility>

#include "../common/cell_math.h"
#include "../sequence/layer_args.h"

namespace rnnfused {
namespace cuda {

enum class CudaPath { kStepwise, kPersistent };

constexpr const char* kPathEnvVar = "RNNFUSED_CUDA_PATH";


// The path that runs layer-direction `a` (forward and backward ask separately; both must agree on the saved
// tensors' format, which the op schemas fix). `cell` is the cell's name (Cell::kName, as the crossover table spells
// it). *why (optional) gets the reason in one sentence.
CudaPath choose_path(const char* cell, const LayerArgs& a, std::string* why = nullptr);

const char* path_name(CudaPath path);

// Replaces the crossover table the rule reads (text in crossover.h's format; `origin` names the file, used when the
// text has no `# source:` line). A malformed table is an error and leaves the current one in place. Until the first
// call the built-in default (kDefaultCrossover) applies.
void set_crossover_table(const std::string& text, const std::string& origin);
// The table in force, as "source" + its rows (for rnnfused.info and logs).
std::string crossover_table_summary();

// rnnfused._C.cuda_path: the path a layer of this configuration would take ("stepwise" or "persistent").
// cell: a Cell::kName of csrc/common/cells.h (lstm, gru, rnn_tanh, rnn_relu); dtype: float64, float32, float16, bfloat16; device: a CUDA device index
// (-1: the current device). The query builds a LayerArgs of placeholder tensors (one element each, expanded to the
// shapes) on that device, or on the meta device when no GPU is visible.
// Returns (path, why).
std::pair<std::string, std::string> query_path(const std::string& cell, int64_t seq_len, int64_t batch,
                                               int64_t input_size, int64_t hidden_size, int64_t proj_size,
                                               const std::string& dtype, bool bias, bool lengths, bool reverse,
                                               int64_t device);

}  // namespace cuda
}  // namespace rnnfused
