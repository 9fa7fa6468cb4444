// Stand-in for torch's generated header (absent from CPU wheels), for syntax checks of the CUDA host code.
#pragma once
#define C10_CUDA_BUILD_SHARED_LIBS
