// The single-step cell ops (csrc/cell/cell_ops.h) for the CUDA dispatch key: the two GEMMs through cuBLAS and one
// launch of the step-wise path's pointwise kernels (kernels/pointwise.h) per forward or backward step.
#include <torch/library.h>

#include "../cell/cell_ops.h"
#include "pointwise_cuda.h"

namespace rnnfused {

TORCH_LIBRARY_IMPL(rnnfused, CUDA, m) { register_cell_ops<cuda::CudaPointwise>(m); }

}  // namespace rnnfused
