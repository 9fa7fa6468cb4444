// Persistent backward kernels of the LSTM cell, every storage type and synchronisation variant
// (see persistent_kernel.cuh; one translation unit per cell and direction keeps parallel builds short).
#include "persistent_kernel.cuh"

namespace rnnfused {
namespace persistent {
RNNF_PERSISTENT_INSTANTIATE_BACKWARD(LstmCell)
}  // namespace persistent
}  // namespace rnnfused
