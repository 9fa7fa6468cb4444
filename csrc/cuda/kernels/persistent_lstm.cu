// Persistent forward/backward kernels of the LSTM cell, every storage type (see persistent_kernel.cuh).
#include "persistent_kernel.cuh"

namespace rnnfused {
namespace persistent {
RNNF_PERSISTENT_INSTANTIATE(LstmCell)
}  // namespace persistent
}  // namespace rnnfused
