// FMA peak of this CPU with zmm registers: each of N threads runs 12 independent 16-wide float FMA chains (enough to
// cover the FMA latency on current x86 cores) and reports its GFLOP/s (2 flops per lane per FMA).
// Build and run: gcc -O2 -pthread fma_peak.c -o /tmp/fma_peak && /tmp/fma_peak 2   (x86-64 with AVX-512F)
// Quoted in benchmarks/results/cpu_grid.md (the limits of the fused CPU path).
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

enum { kChains = 12, kMaxThreads = 64 };
static const long kIterations = 100000000;

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

__attribute__((target("avx512f"))) static float chains(long n) {
  __m512 c[kChains];
  for (int i = 0; i < kChains; i++) c[i] = _mm512_set1_ps((float)i);
  const __m512 a = _mm512_set1_ps(0.999f), b = _mm512_set1_ps(0.001f);
  for (long k = 0; k < n; k++) {
#pragma GCC unroll 12
    for (int i = 0; i < kChains; i++) c[i] = _mm512_fmadd_ps(a, c[i], b);
  }
  float sum = 0;
  for (int i = 0; i < kChains; i++) sum += _mm512_reduce_add_ps(c[i]);
  return sum;
}

static void* thread_main(void* unused) {
  (void)unused;
  const double t0 = now();
  const float sink = chains(kIterations);
  const double seconds = now() - t0;
  printf("zmm %.1f GFLOP/s (%g)\n", kChains * 16.0 * 2.0 * kIterations / seconds / 1e9, sink);
  return NULL;
}

int main(int argc, char** argv) {
  int threads = argc > 1 ? atoi(argv[1]) : 1;
  if (threads < 1 || threads > kMaxThreads) threads = 1;
  pthread_t t[kMaxThreads];
  for (int i = 0; i < threads; i++) pthread_create(&t[i], NULL, thread_main, NULL);
  for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
  return 0;
}
