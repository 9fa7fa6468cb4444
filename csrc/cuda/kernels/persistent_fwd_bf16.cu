// Persistent forward kernels for __nv_bfloat16 storage, every cell and synchronisation variant (persistent_kernel.cuh).
#include "../../common/cells.h"
#include "persistent_kernel.cuh"

namespace rnnfused {
namespace persistent {
#define RNNF_INSTANTIATE_CELL(CELL) RNNF_PERSISTENT_INSTANTIATE(forward, __nv_bfloat16, CELL)
RNNF_FOR_EACH_CELL(RNNF_INSTANTIATE_CELL)
#undef RNNF_INSTANTIATE_CELL
}  // namespace persistent
}  // namespace rnnfused
