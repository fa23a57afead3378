/* One place for OpenMP: the same sources build with and without it. */
#ifndef NDCONV_OMP_H
#define NDCONV_OMP_H
#ifdef _OPENMP
#include <omp.h>
#define NDCONV_HAVE_OPENMP 1
#else
#define NDCONV_HAVE_OPENMP 0
static inline int omp_get_max_threads(void) { return 1; }
static inline void omp_set_num_threads(int n) { (void)n; }
static inline int omp_get_thread_num(void) { return 0; }
static inline int omp_get_num_procs(void) { return 1; }
#endif
#endif
