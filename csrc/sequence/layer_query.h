// The layer a path query describes (rnnfused.cpu_path, rnnfused.cuda_path): a LayerArgs with the sizes, dtype and
// device of a real layer-direction but no memory (one element each, expanded to the shapes), so the backends' path
// rules read it exactly as they read a real call's arguments.
#pragma once

#include <cstdint>
#include <string>

#include "layer_args.h"

namespace rnnfused {

struct LayerQuery {
  const char* cell = nullptr;  // the registry's name of the cell (Cell::kName)
  LayerArgs args;              // placeholder tensors on `device`
};

// Checks the query's arguments (`api` names the Python function in errors: cell from the registry, positive sizes,
// proj_size only for cells with a projection, dtype one of float64/float32/float16/bfloat16) and builds the layer.
LayerQuery make_layer_query(const char* api, const std::string& cell, int64_t seq_len, int64_t batch,
                            int64_t input_size, int64_t hidden_size, int64_t proj_size, const std::string& dtype,
                            bool bias, bool lengths, bool reverse, at::Device device);

// "float64", "float32", "float16", "bfloat16" (or "double", "float", "half") -> the ScalarType; `api` for the error.
at::ScalarType parse_dtype(const char* api, const std::string& dtype);

}  // namespace rnnfused
