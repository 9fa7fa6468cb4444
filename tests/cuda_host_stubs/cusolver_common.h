// Stand-in (declarations only) for syntax checks of the CUDA host code; see README.md.
#pragma once
typedef enum { CUSOLVER_STATUS_SUCCESS = 0 } cusolverStatus_t;
