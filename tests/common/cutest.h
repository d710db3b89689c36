/* Shared helpers for the test programs: checked driver calls, loading the built-in
 * kernels, and the exit codes meson understands (0 pass, 1 fail, 77 skip). */
#ifndef BS_CUTEST_H
#define BS_CUTEST_H

#include <cuda.h>
#include <stdio.h>
#include <stdlib.h>

#define TEST_SKIP 77

#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__,   \
                    #cond);                                                    \
            exit(1);                                                           \
        }                                                                      \
    } while (0)

#define CHECK_CU(call)                                                         \
    do {                                                                       \
        CUresult cu_res_ = (call);                                             \
        if (cu_res_ != CUDA_SUCCESS) {                                         \
            fprintf(stderr, "%s:%d: %s returned %d\n", __FILE__, __LINE__,     \
                    #call, (int)cu_res_);                                      \
            exit(1);                                                           \
        }                                                                      \
    } while (0)

#define CHECK_EQ_U64(a, b)                                                     \
    do {                                                                       \
        unsigned long long a_ = (unsigned long long)(a);                       \
        unsigned long long b_ = (unsigned long long)(b);                       \
        if (a_ != b_) {                                                        \
            fprintf(stderr, "%s:%d: %s == %s failed: %llu != %llu\n",          \
                    __FILE__, __LINE__, #a, #b, a_, b_);                       \
            exit(1);                                                           \
        }                                                                      \
    } while (0)

#endif
