// The C++ cell registry: THE list of cell types.
//
// Every per-cell table of the C++/CUDA code is derived from RNNF_FOR_EACH_CELL: the op schemas (csrc/ops.cpp),
// their registrations per backend (csrc/sequence/layer_ops.h), the CUDA kernel instantiations (pointwise and
// persistent), the name lookups of the debug and query functions. A new cell is its struct in cell_math.h (math +
// traits: kName, kGates, kSaved, …) and one entry here — plus its Python registry entry (rnnfused/_cells.py, which
// the tests compare with this list through the registered ops).
//
// Torch-free (plain nvcc -c includes it).
#pragma once

#include <string>
#include <string_view>
#include <type_traits>

#include "cell_math.h"

// X(Cell) for every cell.
#define RNNF_FOR_EACH_CELL(X) \
  X(::rnnfused::LstmCell)     \
  X(::rnnfused::GruCell)      \
  X(::rnnfused::RnnTanhCell)  \
  X(::rnnfused::RnnReluCell)

namespace rnnfused {

// fn(Cell{}) for every cell, in list order.
template <typename Fn>
void for_each_cell(Fn&& fn) {
#define RNNF_CALL_WITH_CELL(C) fn(C{});
  RNNF_FOR_EACH_CELL(RNNF_CALL_WITH_CELL)
#undef RNNF_CALL_WITH_CELL
}

// The position of Cell in the list: a small integer id (cache keys, tags). -1 for a type that is not a cell.
template <typename Cell>
constexpr int cell_index() {
  int index = 0, found = -1;
#define RNNF_MATCH_CELL(C)                          \
  if (std::is_same<Cell, C>::value) found = index; \
  ++index;
  RNNF_FOR_EACH_CELL(RNNF_MATCH_CELL)
#undef RNNF_MATCH_CELL
  return found;
}

// fn(Cell{}) for the cell whose kName is `name`; false (fn not called) when no cell has that name. The string -> type
// step of every entry point that takes a cell by name (persistent debug ops, the dispatch query).
template <typename Fn>
bool visit_cell(std::string_view name, Fn&& fn) {
  bool found = false;
  for_each_cell([&](auto cell) {
    if (!found && name == decltype(cell)::kName) {
      found = true;
      fn(cell);
    }
  });
  return found;
}

// "lstm, gru, ..." for error messages.
inline std::string cell_names() {
  std::string names;
  for_each_cell([&](auto cell) { names += (names.empty() ? "" : ", ") + std::string(decltype(cell)::kName); });
  return names;
}

}  // namespace rnnfused
