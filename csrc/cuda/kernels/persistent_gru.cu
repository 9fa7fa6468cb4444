// Persistent forward/backward kernels of the GRU cell, every storage type (see persistent_kernel.cuh).
#include "persistent_kernel.cuh"

namespace rnnfused {
namespace persistent {
RNNF_PERSISTENT_INSTANTIATE(GruCell)
}  // namespace persistent
}  // namespace rnnfused
