/* Benchmark (not a test): the shim's launch-path cost, measured on this CPU with no
 * driver: parameter scanning plus allocation lookups for a gemv-like launch, as the
 * number of live tracked allocations grows (it should not matter), and with several
 * threads launching at once (no lock, no shared writes but one sharded counter).
 * Prints figures; asserts nothing about them. */
#define _GNU_SOURCE
#include "bs.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

struct args {
    uint64_t y, w, x;
    uint32_t rows, cols;
    uint64_t scalars[4]; /* non-pointer words, as real kernels carry sizes and strides */
};

static struct args launch_args;
static const long ITERS = 2000000;

static void *scan_loop(void *out)
{
    struct bs_launch_set set;
    size_t len = sizeof(launch_args);
    void *extra[] = { CU_LAUNCH_PARAM_BUFFER_POINTER, &launch_args,
                      CU_LAUNCH_PARAM_BUFFER_SIZE, &len, CU_LAUNCH_PARAM_END };
    double t0 = now_ns();
    for (long i = 0; i < ITERS; i++) {
        bs_launch_scan((CUfunction)0x1000, NULL, extra, 32768, &set);
        bs_stat_add(BS_STAT_LAUNCHES, 1);
        if (set.n != 3)
            abort();
    }
    *(double *)out = (now_ns() - t0) / ITERS;
    return NULL;
}

int main(void)
{
    bs_log_set_level(BS_LOG_ERROR);
    printf("blockswap launch path, CPU only (no driver): scan of a 72-byte parameter "
           "buffer with 3 device pointers\n");
    printf("%12s %10s %14s\n", "allocations", "threads", "ns per launch");
    const uint64_t base = 0x7f0000000000ull;
    uint64_t live = 0;
    uint64_t sizes[] = { 16, 1024, 65536, 1 << 20 };
    for (unsigned s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
        /* Allocations of 4 KiB to 64 MiB, spread over the address space. */
        for (; live < sizes[s]; live++) {
            struct bs_alloc_rec r = { .base = base + live * (8ull << 20),
                                      .size = 4096ull << (live % 15), .api = 1 };
            if (bs_alloc_map_insert(&r) < 0)
                abort();
        }
        launch_args = (struct args){ base + 100, base + (live / 2) * (8ull << 20) + 64,
                                     base + (live - 1) * (8ull << 20), 64, 64, { 1, 2, 3, 4 } };
        for (int threads = 1; threads <= 4; threads *= 2) {
            pthread_t t[4];
            double r[4];
            for (int i = 0; i < threads; i++)
                pthread_create(&t[i], NULL, scan_loop, &r[i]);
            double worst = 0;
            for (int i = 0; i < threads; i++) {
                pthread_join(t[i], NULL);
                if (r[i] > worst)
                    worst = r[i];
            }
            printf("%12llu %10d %14.1f\n", (unsigned long long)live, threads, worst);
        }
    }
    return 0;
}
