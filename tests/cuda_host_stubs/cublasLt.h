// Stand-in (declarations only) for syntax checks of the CUDA host code; see README.md.
#pragma once
typedef struct cublasLtContext* cublasLtHandle_t;
