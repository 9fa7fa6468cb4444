// Persistent forward kernels of the Elman RNN (tanh) cell, every storage type and synchronisation variant
// (see persistent_kernel.cuh; one translation unit per cell and direction keeps parallel builds short).
#include "persistent_kernel.cuh"

namespace rnnfused {
namespace persistent {
RNNF_PERSISTENT_INSTANTIATE_FORWARD(RnnTanhCell)
}  // namespace persistent
}  // namespace rnnfused
