/* Benchmark (not a test): host time per cuLaunchKernel on the simulated driver, for a
 * kernel whose pointer argument is a managed (paged) allocation that is resident, and
 * one whose argument is unmanaged. Run it with and without LD_PRELOAD=libblockswap.so
 * (bench-launch-sim.py does both); the difference is what the shim adds. CPU time of
 * this machine, not GPU time. */
#include "kit.h"

#include <time.h>

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static double per_launch(CUfunction f, CUdeviceptr p, long iters)
{
    uint32_t v = 0;
    uint64_t n = 0; /* touches nothing: measures the launch path, not the kernel */
    void *params[] = { &p, &v, &n };
    double t0 = now_ns();
    for (long i = 0; i < iters; i++)
        CHECK_CU(kit_launch(f, NULL, params));
    return (now_ns() - t0) / iters;
}

int main(int argc, char **argv)
{
    long iters = argc > 1 ? atol(argv[1]) : 200000;
    struct kit k;
    kit_init(&k);
    CUfunction fill = kit_fn(&k, "bs_fill_u32");
    CUdeviceptr big, small;
    CHECK_CU(cuMemAlloc(&big, 4 << 20));  /* managed under blockswap */
    CHECK_CU(cuMemAlloc(&small, 4096));   /* never managed */
    per_launch(fill, big, 1000);          /* first launch pages it in */
    printf("%-34s %8.0f ns per launch\n", "pointer into a resident managed", per_launch(fill, big, iters));
    printf("%-34s %8.0f ns per launch\n", "pointer into unmanaged memory", per_launch(fill, small, iters));
    return 0;
}
