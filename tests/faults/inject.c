/* faults: CUDASIM_FAIL makes exactly the named uses fail, with the error a driver
 * gives for that kind of call, and nothing else. Run by meson with
 * CUDASIM_FAIL=cuMemAlloc_v2:2,cuMemHostAlloc:1,cuMemcpyHtoD_v2:1,cuLaunchKernel:1,cuMemCreate:2+
 * (see meson.build); with "bad" as argument, CUDASIM_FAIL holds an invalid spec and
 * nothing may fail. */
#include "kit.h"

int main(int argc, char **argv)
{
    bool bad = argc > 1 && strcmp(argv[1], "bad") == 0;
    struct kit k;
    kit_init(&k);
    CUdeviceptr a, b, c;
    CHECK_CU(cuMemAlloc(&a, 4096));
    /* The second use fails as out of memory, without allocating; the third works. */
    CHECK(cuMemAlloc(&b, 4096) == (bad ? CUDA_SUCCESS : CUDA_ERROR_OUT_OF_MEMORY));
    CHECK_CU(cuMemAlloc(&c, 4096));
    if (bad)
        CHECK_CU(cuMemFree(b));

    void *pinned = NULL;
    CHECK(cuMemHostAlloc(&pinned, 4096, 0) == (bad ? CUDA_SUCCESS : CUDA_ERROR_OUT_OF_MEMORY));
    CHECK(bad || pinned == NULL);
    if (pinned)
        CHECK_CU(cuMemFreeHost(pinned));

    uint32_t words[1024];
    for (int i = 0; i < 1024; i++)
        words[i] = (uint32_t)i;
    /* A failed copy copies nothing and leaves the context usable. */
    CHECK_CU(cuMemsetD32(a, 7, 1024));
    CHECK(cuMemcpyHtoD(a, words, sizeof(words)) == (bad ? CUDA_SUCCESS : CUDA_ERROR_UNKNOWN));
    uint32_t back[1024];
    CHECK_CU(cuMemcpyDtoH(back, a, sizeof(back)));
    CHECK(back[5] == (bad ? 5u : 7u));

    CUfunction fill = kit_fn(&k, "bs_fill_u32");
    uint32_t v = 9;
    uint64_t n = 1024;
    void *p[] = { &c, &v, &n };
    CHECK(kit_launch(fill, NULL, p) == (bad ? CUDA_SUCCESS : CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES));
    CHECK_CU(kit_launch(fill, NULL, p));
    CHECK_CU(cuCtxSynchronize());

    /* "n+": the n-th use and every later one. */
    CUmemAllocationProp prop;
    memset(&prop, 0, sizeof(prop));
    prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
    prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    CUmemGenericAllocationHandle h[3];
    CHECK_CU(cuMemCreate(&h[0], 2 << 20, &prop, 0));
    for (int i = 1; i < 3; i++)
        CHECK(cuMemCreate(&h[i], 2 << 20, &prop, 0) == (bad ? CUDA_SUCCESS : CUDA_ERROR_OUT_OF_MEMORY));
    for (int i = 0; i < (bad ? 3 : 1); i++)
        CHECK_CU(cuMemRelease(h[i]));

    CHECK_CU(cuMemFree(a));
    CHECK_CU(cuMemFree(c));
    printf("ok\n");
    return 0;
}
