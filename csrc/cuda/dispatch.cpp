#include "dispatch.h"

#include <ATen/ATen.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/util/Exception.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>

#include "../common/cells.h"
#include "crossover.h"
#include "persistent/persistent.h"

namespace rnnfused {
namespace cuda {

namespace {

struct TableHolder {
  std::mutex mutex;
  std::shared_ptr<const CrossoverTable> table;
};

TableHolder& table_holder() {
  static TableHolder* h = [] {
    auto* holder = new TableHolder();
    auto table = std::make_shared<CrossoverTable>();
    std::string error;
    TORCH_CHECK(parse_crossover(kDefaultCrossover, table.get(), &error), "rnnfused: built-in crossover table: ",
                error);
    holder->table = table;
    return holder;
  }();
  return *h;
}

std::shared_ptr<const CrossoverTable> current_table() {
  TableHolder& h = table_holder();
  const std::lock_guard<std::mutex> lock(h.mutex);
  return h.table;
}

const char* dtype_name(at::ScalarType t) {
  switch (t) {
    case at::kBFloat16:
      return "bfloat16";
    case at::kHalf:
      return "float16";
    case at::kFloat:
      return "float32";
    case at::kDouble:
      return "float64";
    default:
      return "other";
  }
}

}  // namespace

void set_crossover_table(const std::string& text, const std::string& origin) {
  auto table = std::make_shared<CrossoverTable>();
  std::string error;
  TORCH_CHECK(parse_crossover(text, table.get(), &error), "rnnfused: ", origin, ": ", error);
  if (table->source.empty()) table->source = origin;
  TableHolder& h = table_holder();
  const std::lock_guard<std::mutex> lock(h.mutex);
  h.table = table;
}

std::string crossover_table_summary() {
  const auto t = current_table();
  std::string s = "source: " + t->source;
  for (const CrossoverRow& r : t->rows) s += "; " + describe_row(r);
  return s;
}

CudaPath choose_path(const char* cell, const LayerArgs& a, std::string* why) {
  std::string local;
  std::string& reason = why ? *why : local;
  // RNNFUSED_CUDA_PATH=stepwise|persistent forces a path (benchmarks, debugging); unset or "auto": the rule below.
  const char* forced = std::getenv(kPathEnvVar);
  if (forced != nullptr && std::strcmp(forced, "stepwise") == 0) {
    reason = std::string(kPathEnvVar) + "=stepwise";
    return CudaPath::kStepwise;
  }
  std::string why_not;
  const bool fits = persistent::persistent_supported(a, &why_not);
  if (forced != nullptr && std::strcmp(forced, "persistent") == 0) {
    TORCH_CHECK(fits, kPathEnvVar, "=persistent, but this layer cannot run on the persistent path: ", why_not);
    reason = std::string(kPathEnvVar) + "=persistent (the crossover table is not consulted)";
    return CudaPath::kPersistent;
  }
  TORCH_CHECK(forced == nullptr || forced[0] == '\0' || std::strcmp(forced, "auto") == 0, kPathEnvVar,
              " must be stepwise, persistent or auto, got '", forced, "'");
  // The rule: the persistent kernels when they fit (weights on chip, a tensor-core math mode, cooperative launch)
  // and the measured crossover table chooses them for this batch size; else the step-wise path, which serves every
  // shape and dtype.
  const bool persistent = decide_persistent(*current_table(), cell, dtype_name(a.input.scalar_type()),
                                            a.H, a.B, fits, why_not, &reason);
  return persistent ? CudaPath::kPersistent : CudaPath::kStepwise;
}

const char* path_name(CudaPath path) {
  switch (path) {
    case CudaPath::kStepwise:
      return "stepwise";
    case CudaPath::kPersistent:
      return "persistent";
  }
  return "unknown";
}

namespace {

// What the query needs of a cell, looked up by name in the registry (csrc/common/cells.h).
struct CellTraits {
  const char* name = nullptr;
  int64_t gates = 0;
  bool has_cell_state = false;
  bool has_projection = false;
};

CellTraits parse_cell(const std::string& cell) {
  CellTraits found;
  visit_cell(cell, [&](auto c) {
    using Cell = decltype(c);
    found = CellTraits{Cell::kName, Cell::kGates, Cell::kHasCellState, Cell::kHasProjection};
  });
  TORCH_CHECK(found.name != nullptr, "rnnfused.cuda_path: cell must be one of ", cell_names(), ", got '", cell, "'");
  return found;
}

at::ScalarType parse_dtype(const std::string& dtype) {
  if (dtype == "float64" || dtype == "double") return at::kDouble;
  if (dtype == "float32" || dtype == "float") return at::kFloat;
  if (dtype == "float16" || dtype == "half") return at::kHalf;
  if (dtype == "bfloat16") return at::kBFloat16;
  TORCH_CHECK(false, "rnnfused.cuda_path: dtype must be one of float64, float32, float16, bfloat16, got '", dtype,
              "'");
}

}  // namespace

std::pair<std::string, std::string> query_path(const std::string& cell, int64_t seq_len, int64_t batch,
                                               int64_t input_size, int64_t hidden_size, int64_t proj_size,
                                               const std::string& dtype, bool bias, bool lengths, bool reverse,
                                               int64_t device) {
  const CellTraits type = parse_cell(cell);
  TORCH_CHECK(seq_len > 0 && batch > 0 && input_size > 0 && hidden_size > 0 && proj_size >= 0,
              "rnnfused.cuda_path: sizes must be positive (proj_size >= 0), got seq_len=", seq_len, ", batch=", batch,
              ", input_size=", input_size, ", hidden_size=", hidden_size, ", proj_size=", proj_size);
  TORCH_CHECK(proj_size == 0 || type.has_projection, "rnnfused.cuda_path: proj_size is not a feature of cell '",
              cell, "'");
  at::TensorOptions opts = at::TensorOptions().dtype(parse_dtype(dtype));
  if (c10::cuda::device_count() > 0) {
    opts = opts.device(at::Device(at::kCUDA, device < 0 ? c10::cuda::current_device()
                                                        : static_cast<c10::DeviceIndex>(device)));
  } else {
    opts = opts.device(at::kMeta);
  }
  // One element, expanded: the sizes, dtype and device of a real layer without its memory.
  const auto placeholder = [&](at::IntArrayRef sizes, at::ScalarType st) {
    return at::empty({1}, opts.dtype(st)).expand(sizes);
  };
  const int64_t G = type.gates, H_out = proj_size > 0 ? proj_size : hidden_size;
  const at::ScalarType st = parse_dtype(dtype);
  LayerArgs a;
  a.G = G;
  a.T = seq_len;
  a.B = batch;
  a.I = input_size;
  a.H = hidden_size;
  a.H_out = H_out;
  a.reverse = reverse;
  a.input = placeholder({seq_len, batch, input_size}, st);
  a.h0 = placeholder({batch, H_out}, st);
  if (type.has_cell_state) a.c0 = placeholder({batch, hidden_size}, st);
  a.w_ih = placeholder({G * hidden_size, input_size}, st);
  a.w_hh = placeholder({G * hidden_size, H_out}, st);
  if (bias) {
    a.b_ih = placeholder({G * hidden_size}, st);
    a.b_hh = placeholder({G * hidden_size}, st);
  }
  if (proj_size > 0) a.w_hr = placeholder({H_out, hidden_size}, st);
  if (lengths) a.lengths = placeholder({batch}, at::kLong);
  std::string why;
  const CudaPath path = choose_path(type.name, a, &why);
  return {path_name(path), why};
}

}  // namespace cuda
}  // namespace rnnfused
