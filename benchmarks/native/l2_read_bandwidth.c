// Read bandwidth of a buffer of N KB per thread with 512-bit loads: how fast a core streams a cache-resident weight
// (the B = 1 recurrence reads all of its W_hh panels every step like this). Best of 7 trials, threads in lockstep.
// Build and run: gcc -O2 -mavx512f -fopenmp l2_read_bandwidth.c -o /tmp/l2bw && OMP_NUM_THREADS=2 /tmp/l2bw 128 1500
// (args: KB per thread, passes per trial). Quoted in benchmarks/results/cpu_grid.md.
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char** argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s KB_PER_THREAD PASSES\n", argv[0]);
    return 2;
  }
  const size_t kb = (size_t)atol(argv[1]);
  const int passes = atoi(argv[2]);
  double best = 1e30;
  float sink = 0;
#pragma omp parallel reduction(+ : sink)
  {
    const size_t n = kb * 1024 / sizeof(float);  // a multiple of 64 floats for any whole KB
    float* a = aligned_alloc(64, n * sizeof(float));
    for (size_t i = 0; i < n; i++) a[i] = i * 1e-9f;
    for (int trial = 0; trial < 7; trial++) {
#pragma omp barrier
      const double t0 = now();
      __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
      for (int r = 0; r < passes; r++) {
        for (size_t i = 0; i < n; i += 64) {  // one 256-byte block per iteration, 4 independent sums
          s0 = _mm512_add_ps(s0, _mm512_load_ps(a + i));
          s1 = _mm512_add_ps(s1, _mm512_load_ps(a + i + 16));
          s2 = _mm512_add_ps(s2, _mm512_load_ps(a + i + 32));
          s3 = _mm512_add_ps(s3, _mm512_load_ps(a + i + 48));
        }
      }
#pragma omp barrier
      const double seconds = now() - t0;
#pragma omp master
      if (seconds < best) best = seconds;
      sink += _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
    }
    free(a);
  }
  printf("%zu KB per thread x %d threads: %.1f GB/s per thread, %.1f ns per pass (sink %g)\n", kb,
         omp_get_max_threads(), kb * 1024.0 * passes / best / 1e9, best / passes * 1e9, sink);
  return 0;
}
