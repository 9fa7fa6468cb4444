// Read bandwidth of a buffer of N KB per thread with 512-bit loads (the B = 1 recurrence streams W_hh like this).
// Build and run: gcc -O2 -mavx512f -fopenmp l2_read_bandwidth.c -o /tmp/l2bw && OMP_NUM_THREADS=2 /tmp/l2bw 128 1500
// (args: KB per thread, passes per trial). Quoted in benchmarks/results/cpu_grid.md.
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <omp.h>
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
int main(int argc,char**argv){
  size_t kb=atoi(argv[1]); int reps=atoi(argv[2]);
  double best=1e9; float sink=0;
  #pragma omp parallel reduction(+:sink)
  {
    size_t n=kb*1024/4; float*a=aligned_alloc(64,n*4); for(size_t i=0;i<n;i++)a[i]=i*1e-9f;
    for(int trial=0;trial<7;trial++){
      #pragma omp barrier
      double t0=now();
      __m512 s0=_mm512_setzero_ps(),s1=s0,s2=s0,s3=s0;
      for(int r=0;r<reps;r++) for(size_t i=0;i<n;i+=64){
        s0=_mm512_add_ps(s0,_mm512_load_ps(a+i)); s1=_mm512_add_ps(s1,_mm512_load_ps(a+i+16));
        s2=_mm512_add_ps(s2,_mm512_load_ps(a+i+32)); s3=_mm512_add_ps(s3,_mm512_load_ps(a+i+48));}
      #pragma omp barrier
      double dt=now()-t0;
      #pragma omp master
      { if(dt<best)best=dt; }
      sink+=_mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0,s1),_mm512_add_ps(s2,s3)));
    }
  }
  int th=omp_get_max_threads();
  printf("%zu KB per thread x %d threads: %.1f GB/s per thread, %.1f ns per pass (sink %g)\n",kb,th,kb*1024.0*reps/best/1e9,best/reps*1e9,sink);
}
