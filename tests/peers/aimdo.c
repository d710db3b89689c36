/* peers: comfy-aimdo loaded half-way through, as ComfyUI loads it (ctypes, RTLD_NOW |
 * RTLD_GLOBAL). blockswap keeps paging what it already managed and leaves every new
 * allocation and the free-memory figures to the driver: results stay exact, and the
 * output is the same with and without the shim. Run with BLOCKSWAP_VRAM_LIMIT=40M,
 * where the two 24 MiB weights loaded before cannot both be resident.
 * usage: peers-aimdo PATH/aimdo.so */
#include "kit.h"

#define MiB (1024ull * 1024)
#define N (24 * MiB / sizeof(float))

static CUdeviceptr upload(float value, size_t n)
{
    CUdeviceptr d;
    float *h = malloc(n * sizeof(float));
    CHECK(h != NULL);
    for (size_t i = 0; i < n; i++)
        h[i] = value;
    CHECK_CU(cuMemAlloc(&d, n * sizeof(float)));
    CHECK_CU(cuMemcpyHtoD(d, h, n * sizeof(float)));
    free(h);
    return d;
}

static void axpy(CUfunction f, CUdeviceptr y, CUdeviceptr x, float a, uint64_t n)
{
    void *params[] = { &y, &x, &a, &n };
    CHECK_CU(cuLaunchKernel(f, 64, 1, 1, 128, 1, 1, 0, NULL, params, NULL));
}

int main(int argc, char **argv)
{
    CHECK(argc > 1);
    struct kit k;
    kit_init(&k);
    CUfunction f = kit_fn(&k, "bs_axpy_f32");
    __typeof__(&blockswap_get_stats) stats = (__typeof__(&blockswap_get_stats))dlsym(
        RTLD_DEFAULT, "blockswap_get_stats");
    __typeof__(&blockswap_find_allocation) find = (__typeof__(&blockswap_find_allocation))
        dlsym(RTLD_DEFAULT, "blockswap_find_allocation");
    struct blockswap_stats st;
    struct blockswap_alloc_info info;

    CUdeviceptr a = upload(1.0f, N), b = upload(2.0f, N);
    if (stats) {
        CHECK(stats(&st) == 0 && st.managed_allocations == 2);
    }

    void *aimdo = dlopen(argv[1], RTLD_NOW | RTLD_GLOBAL);
    if (!aimdo) {
        fprintf(stderr, "cannot load %s: %s\n", argv[1], dlerror());
        return 1;
    }

    /* After: the driver's own allocations, not tracked, not charged. */
    CUdeviceptr y = upload(0.0f, N);
    CUdeviceptr z;
    CHECK_CU(cuMemAllocAsync(&z, 4 * MiB, NULL));
    size_t free_b, total;
    CHECK_CU(cuMemGetInfo(&free_b, &total));
    if (stats) {
        CHECK(stats(&st) == 0 && st.managed_allocations == 2);
        CHECK(find(y, &info) == -ENOENT && find(z, &info) == -ENOENT);
        CHECK(find(a, &info) == 0);
        CHECK(total == 8192 * MiB); /* the simulator's 8 GiB: the driver's figure */
    }

    /* The weights managed before still page in and out under the 40M limit. */
    for (int step = 0; step < 3; step++) {
        axpy(f, y, a, 1.0f, N);
        axpy(f, y, b, 0.5f, N);
    }
    float *out = malloc(N * sizeof(float));
    CHECK(out != NULL);
    CHECK_CU(cuMemcpyDtoH(out, y, N * sizeof(float)));
    for (size_t i = 0; i < N; i++)
        CHECK(out[i] == 6.0f);
    free(out);

    CHECK_CU(cuMemFreeAsync(z, NULL));
    CHECK_CU(cuCtxSynchronize());
    CHECK_CU(cuMemFree(y));
    CHECK_CU(cuMemFree(b));
    CHECK_CU(cuMemFree(a));
    printf("y = 3 x (1.0 + 0.5 x 2.0) = 6.0 everywhere; all freed\n");
    return 0;
}
