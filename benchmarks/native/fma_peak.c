// FMA peak of this CPU: 12 independent FMA chains per thread, zmm (arg 2 = 1) or ymm (0), N threads (arg 1).
// Build and run: gcc -O2 -pthread fma_peak.c -o /tmp/fma_peak && /tmp/fma_peak 2 1   (x86-64, GCC or Clang)
// Quoted in benchmarks/results/cpu_grid.md (the limits of the fused CPU path).
#include <immintrin.h>
#include <stdio.h>
#include <time.h>
#include <pthread.h>
#include <stdlib.h>
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
__attribute__((target("avx512f"))) static float run512(long n){
  __m512 c[12]; for(int i=0;i<12;i++) c[i]=_mm512_set1_ps(i);
  __m512 a=_mm512_set1_ps(0.999f), b=_mm512_set1_ps(0.001f);
  for(long k=0;k<n;k++){
#pragma GCC unroll 12
    for(int i=0;i<12;i++) c[i]=_mm512_fmadd_ps(a,c[i],b);
  }
  float s=0; for(int i=0;i<12;i++) s+=_mm512_reduce_add_ps(c[i]); return s;}
__attribute__((target("avx2,fma"))) static float run256(long n){
  __m256 c[12]; for(int i=0;i<12;i++) c[i]=_mm256_set1_ps(i);
  __m256 a=_mm256_set1_ps(0.999f), b=_mm256_set1_ps(0.001f);
  for(long k=0;k<n;k++){
#pragma GCC unroll 12
    for(int i=0;i<12;i++) c[i]=_mm256_fmadd_ps(a,c[i],b);
  }
  float s=0; float t[8]; for(int i=0;i<12;i++){_mm256_storeu_ps(t,c[i]); for(int j=0;j<8;j++) s+=t[j];} return s;}
long N=100000000; int w512=1;
void* th(void*p){ double t0=now(); float s= w512?run512(N):run256(N); double t=now()-t0;
  double flops = 12.0*N*(w512?16:8)*2; printf("%s %.1f GFLOP/s (%g)\n", w512?"zmm":"ymm", flops/t/1e9, s); return 0;}
int main(int argc,char**argv){ int nt=atoi(argv[1]); w512=atoi(argv[2]); pthread_t t[4];
  for(int i=0;i<nt;i++) pthread_create(&t[i],0,th,0); for(int i=0;i<nt;i++) pthread_join(t[i],0);}
