// Persistent forward/backward kernels of the Elman RNN cells (tanh, relu), every storage type
// (see persistent_kernel.cuh).
#include "persistent_kernel.cuh"

namespace rnnfused {
namespace persistent {
RNNF_PERSISTENT_INSTANTIATE(RnnTanhCell)
RNNF_PERSISTENT_INSTANTIATE(RnnReluCell)
}  // namespace persistent
}  // namespace rnnfused
