// Stand-in (declarations only) for syntax checks of the CUDA host code; see README.md.
#pragma once
typedef struct cusparseContext* cusparseHandle_t;
typedef enum { CUSPARSE_STATUS_SUCCESS = 0 } cusparseStatus_t;
