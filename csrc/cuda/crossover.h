// The measured crossover between the cuda backend's two paths: up to which batch size the persistent kernels beat
// the step-wise path, per cell, dtype and hidden size. Torch-free plain C++ (host-tested with g++:
// tests/test_cuda_dispatch_rule.py); dispatch.cpp holds the loaded table and applies decide().
//
// The table is a small text file shipped in the package (rnnfused/persistent_crossover.txt), handed to the
// extension when rnnfused is imported, and rewritten from a benchmark CSV by `python -m benchmarks.crossover` after
// a GPU run. A data file, not a generated header: a GPU session can measure, rewrite and reload it
// (rnnfused.load_crossover_table) without rebuilding the extension, which costs minutes of device time.
//
// Format: one row per line, `#` starts a comment, `# source: <text>` names where the numbers come from.
//   cell   dtype   max_hidden   max_batch
//   cell:       lstm | gru | rnn_tanh | rnn_relu | rnn (both Elman cells) | *
//   dtype:      bfloat16 | float16 | float32 | * (float64 never runs persistently by itself)
//   max_hidden: the row covers hidden sizes <= this (* : any)
//   max_batch:  the persistent path runs for batch <= this (0: never)
// The first row (in file order) whose cell, dtype and max_hidden match decides; no match: the step-wise path.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

namespace rnnfused {
namespace cuda {

constexpr int64_t kAnyHidden = -1;

struct CrossoverRow {
  std::string cell, dtype;  // "*" matches any
  int64_t max_hidden = kAnyHidden;
  int64_t max_batch = 0;
  int line = 0;             // 1-based line in the text
};

struct CrossoverTable {
  std::vector<CrossoverRow> rows;
  std::string source;  // the `# source:` comment, or who loaded it
};

// Until a GPU run measured the crossover: the persistent path only up to batch 64, where one CTA's
// re-read of all of h per step (ctas x B x H x elem bytes from L2) is estimated to stay below the step-wise path's
// ~10 us per step.
constexpr const char* kDefaultCrossover =
    "# source: built-in default, not measured (persistent path bounded to batch <= 64)\n"
    "*  *  *  64\n";

inline bool parse_crossover(const std::string& text, CrossoverTable* out, std::string* error) {
  static const char* const kCells[] = {"lstm", "gru", "rnn_tanh", "rnn_relu", "rnn", "*"};
  static const char* const kDtypes[] = {"bfloat16", "float16", "float32", "*"};
  CrossoverTable t;
  std::istringstream lines(text);
  std::string raw;
  int number = 0;
  auto fail = [&](const std::string& why) {
    if (error) *error = "crossover table line " + std::to_string(number) + ": " + why + " (got '" + raw + "')";
    return false;
  };
  auto one_of = [](const std::string& v, const char* const* names, int n) {
    for (int i = 0; i < n; ++i) {
      if (v == names[i]) return true;
    }
    return false;
  };
  auto integer = [](const std::string& v, int64_t* x) {
    char* end = nullptr;
    const long long n = std::strtoll(v.c_str(), &end, 10);
    if (v.empty() || *end != '\0' || n < 0) return false;
    *x = n;
    return true;
  };
  while (std::getline(lines, raw)) {
    ++number;
    std::string body = raw;
    const size_t hash = body.find('#');
    if (hash != std::string::npos) {
      const std::string comment = body.substr(hash + 1);
      const size_t key = comment.find("source:");
      if (key != std::string::npos && comment.find_first_not_of(" \t") == key) {
        const size_t b = comment.find_first_not_of(" \t", key + 7);
        t.source = b == std::string::npos ? "" : comment.substr(b);
      }
      body = body.substr(0, hash);
    }
    std::istringstream fields(body);
    std::vector<std::string> f;
    for (std::string x; fields >> x;) f.push_back(x);
    if (f.empty()) continue;
    if (f.size() != 4) return fail("expected 4 fields: cell dtype max_hidden max_batch");
    CrossoverRow r;
    r.line = number;
    r.cell = f[0];
    r.dtype = f[1];
    if (!one_of(r.cell, kCells, 6)) return fail("cell must be lstm, gru, rnn_tanh, rnn_relu, rnn or *");
    if (!one_of(r.dtype, kDtypes, 4)) return fail("dtype must be bfloat16, float16, float32 or *");
    if (f[2] != "*" && (!integer(f[2], &r.max_hidden) || r.max_hidden < 1)) {
      return fail("max_hidden must be a positive integer or *");
    }
    if (!integer(f[3], &r.max_batch)) return fail("max_batch must be an integer >= 0");
    t.rows.push_back(r);
  }
  if (t.rows.empty()) {
    number = 0;
    raw = "";
    return fail("no rows");
  }
  *out = t;
  return true;
}

inline bool cell_matches(const std::string& pattern, const std::string& cell) {
  return pattern == "*" || pattern == cell || (pattern == "rnn" && (cell == "rnn_tanh" || cell == "rnn_relu"));
}

// The deciding row for (cell, dtype, hidden), or nullptr.
inline const CrossoverRow* find_row(const CrossoverTable& t, const std::string& cell, const std::string& dtype,
                                    int64_t hidden) {
  for (const CrossoverRow& r : t.rows) {
    if (cell_matches(r.cell, cell) && (r.dtype == "*" || r.dtype == dtype) &&
        (r.max_hidden == kAnyHidden || hidden <= r.max_hidden)) {
      return &r;
    }
  }
  return nullptr;
}

inline std::string describe_row(const CrossoverRow& r) {
  return "line " + std::to_string(r.line) + ": " + r.cell + " " + r.dtype + " " +
         (r.max_hidden == kAnyHidden ? std::string("*") : std::to_string(r.max_hidden)) + " " +
         std::to_string(r.max_batch);
}

// The automatic rule: the persistent path when its kernels fit (fits / why_not_fit from persistent_supported) and
// the table's row allows this batch. *why says which and why, in one sentence.
inline bool decide_persistent(const CrossoverTable& t, const std::string& cell, const std::string& dtype,
                              int64_t hidden, int64_t batch, bool fits, const std::string& why_not_fit,
                              std::string* why) {
  const std::string source = " (crossover table: " + (t.source.empty() ? std::string("unnamed") : t.source) + ")";
  if (!fits) {
    *why = "the persistent kernels cannot run this layer: " + why_not_fit;
    return false;
  }
  const CrossoverRow* r = find_row(t, cell, dtype, hidden);
  const std::string what = cell + " " + dtype + " hidden_size=" + std::to_string(hidden);
  if (r == nullptr) {
    *why = "no row of the crossover table covers " + what + source;
    return false;
  }
  if (batch <= r->max_batch) {
    *why = "the persistent kernels fit, and batch " + std::to_string(batch) + " <= " + std::to_string(r->max_batch) +
           " for " + what + " [" + describe_row(*r) + "]" + source;
    return true;
  }
  *why = "batch " + std::to_string(batch) + " > " + std::to_string(r->max_batch) +
         ", the largest batch the persistent path is chosen for with " + what + " [" + describe_row(*r) + "]" +
         source;
  return false;
}

}  // namespace cuda
}  // namespace rnnfused
