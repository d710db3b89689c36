/* sim: cuGetProcAddress(_v2) returns the wrapper matching exactly what the driver
 * resolved (requested version, per-thread default stream flag), and the driver's
 * own pointer for functions blockswap does not hook. */
#include "kit.h"

typedef CUresult (*gpa2_t)(const char *, void **, int, cuuint64_t, CUdriverProcAddressQueryResult *);
typedef CUresult (*gpa1_t)(const char *, void **, int, cuuint64_t);

static void *get(gpa2_t gpa, const char *name, int version, cuuint64_t flags)
{
    void *p = NULL;
    CUdriverProcAddressQueryResult st;
    CUresult r = gpa(name, &p, version, flags, &st);
    if (r != CUDA_SUCCESS || !p) {
        fprintf(stderr, "cuGetProcAddress_v2(%s, %d, %llu) = %d\n", name, version,
                (unsigned long long)flags, (int)r);
        exit(1);
    }
    return p;
}

int main(void)
{
    void *h = dlopen("libcuda.so.1", RTLD_NOW);
    CHECK(h != NULL);
    /* What libcudart does first. */
    gpa2_t gpa = (gpa2_t)dlsym(h, "cuGetProcAddress_v2");
    CHECK(gpa != NULL && strcmp(kit_owner((void *)gpa), "blockswap") == 0);
    CHECK_CU(((CUresult (*)(unsigned))get(gpa, "cuInit", 13000, 0))(0));

    const cuuint64_t PTDS = CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM;
    struct { const char *name; int version; cuuint64_t flags; const char *expect; } cases[] = {
        { "cuMemAlloc", 13000, 0, "cuMemAlloc_v2" },
        { "cuLaunchKernel", 13000, 0, "cuLaunchKernel" },
        { "cuLaunchKernel", 13000, PTDS, "cuLaunchKernel_ptsz" },
        { "cuMemcpyHtoDAsync", 13000, PTDS, "cuMemcpyHtoDAsync_v2_ptsz" },
        { "cuMemcpyHtoD", 13000, PTDS, "cuMemcpyHtoD_v2_ptds" },
        { "cuMemcpyHtoD", 13000, 0, "cuMemcpyHtoD_v2" },
        { "cuMemAllocAsync", 13000, PTDS, "cuMemAllocAsync_ptsz" },
        { "cuGetProcAddress", 13000, 0, "cuGetProcAddress_v2" },
        { "cuStreamBeginCapture", 13000, 0, "cuStreamBeginCapture_v2" },
    };
    for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        void *p = get(gpa, cases[i].name, cases[i].version, cases[i].flags);
        void *want = dlsym(RTLD_DEFAULT, cases[i].expect);
        if (p != want) {
            fprintf(stderr, "%s (v%d, flags %llu): got %p (%s), want the shim's %s\n",
                    cases[i].name, cases[i].version, (unsigned long long)cases[i].flags,
                    p, kit_owner(p), cases[i].expect);
            return 1;
        }
    }
    /* An old version resolves to the legacy function, which is not hooked. */
    void *legacy = get(gpa, "cuMemGetInfo", 2000, 0);
    CHECK(strcmp(kit_owner(legacy), "cuda") == 0);
    CHECK(legacy == dlsym(h, "cuMemGetInfo"));
    /* Unhooked functions pass through untouched. */
    CHECK(get(gpa, "cuCtxSynchronize", 13000, 0) == dlsym(h, "cuCtxSynchronize"));
    CHECK(strcmp(kit_owner(get(gpa, "cuStreamCreate", 13000, 0)), "cuda") == 0);
    /* Unknown names fail as the driver says. */
    void *p = (void *)1;
    CUdriverProcAddressQueryResult st;
    CHECK(gpa("cuNoSuchFunction", &p, 13000, 0, &st) != CUDA_SUCCESS ||
          st != CU_GET_PROC_ADDRESS_SUCCESS);

    /* The CUDA 11.3 ABI (4 arguments) under its own name. */
    gpa1_t gpa1 = (gpa1_t)dlsym(h, "cuGetProcAddress");
    CHECK(gpa1 && strcmp(kit_owner((void *)gpa1), "blockswap") == 0);
    void *q = NULL;
    CHECK_CU(gpa1("cuLaunchKernelEx", &q, 13000, PTDS));
    CHECK(q == dlsym(RTLD_DEFAULT, "cuLaunchKernelEx_ptsz"));

    /* Calls through resolved pointers are counted per exact variant. */
    CUdevice d;
    CUcontext c;
    CHECK_CU(((CUresult (*)(CUdevice *, int))get(gpa, "cuDeviceGet", 13000, 0))(&d, 0));
    CHECK_CU(((CUresult (*)(CUcontext *, CUdevice))get(gpa, "cuDevicePrimaryCtxRetain", 13000, 0))(&c, d));
    CHECK_CU(((CUresult (*)(CUcontext))get(gpa, "cuCtxSetCurrent", 13000, 0))(c));
    int64_t n = kit_calls("cuMemAllocAsync_ptsz");
    CUdeviceptr dp;
    CHECK_CU(((CUresult (*)(CUdeviceptr *, size_t, CUstream))get(gpa, "cuMemAllocAsync", 13000, PTDS))(&dp, 8192, NULL));
    CHECK(kit_calls("cuMemAllocAsync_ptsz") == n + 1);
    struct blockswap_alloc_info info;
    CHECK(BS_API_FN(blockswap_find_allocation)(dp, &info) == 0);
    CHECK(info.api == BLOCKSWAP_API_MEM_ALLOC_ASYNC);
    return 0;
}
