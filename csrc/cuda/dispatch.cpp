#include "dispatch.h"

#include <ATen/ATen.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/util/Exception.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>

#include "../common/cells.h"
#include "../sequence/layer_query.h"
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
  // RNNFUSED_PATH=stepwise|persistent forces a path (benchmarks, debugging); unset or "auto": the rule below.
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

std::pair<std::string, std::string> query_path(const std::string& cell, int64_t seq_len, int64_t batch,
                                               int64_t input_size, int64_t hidden_size, int64_t proj_size,
                                               const std::string& dtype, bool bias, bool lengths, bool reverse,
                                               int64_t device) {
  // A placeholder layer on the GPU it would run on; on the meta device when no GPU is visible.
  const at::Device where = c10::cuda::device_count() > 0
                               ? at::Device(at::kCUDA, device < 0 ? c10::cuda::current_device()
                                                                  : static_cast<c10::DeviceIndex>(device))
                               : at::Device(at::kMeta);
  const LayerQuery q = make_layer_query("rnnfused.cuda_path", cell, seq_len, batch, input_size, hidden_size,
                                        proj_size, dtype, bias, lengths, reverse, where);
  std::string why;
  const CudaPath path = choose_path(q.cell, q.args, &why);
  return {path_name(path), why};
}

}  // namespace cuda
}  // namespace rnnfused
