/* sim: dlopen("libcuda.so.1") + dlsym/dlvsym returns the shim's wrapper for every
 * hooked name (plain, _v2, _ptsz, _ptds) and the driver's own function otherwise. */
#include "kit.h"

static void *sym(void *h, const char *name)
{
    void *p = dlsym(h, name);
    CHECK(p != NULL);
    return p;
}

int main(void)
{
    void *h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    CHECK(h != NULL);
    const char *hooked[] = { "cuMemAlloc_v2", "cuMemAllocAsync_ptsz", "cuLaunchKernel",
                             "cuLaunchKernel_ptsz", "cuLaunchKernelEx", "cuMemcpyHtoD_v2_ptds",
                             "cuMemsetD32Async_ptsz", "cuGetProcAddress", "cuGetProcAddress_v2",
                             "cuGraphLaunch", "cuTensorMapEncodeTiled", "cuMemMap" };
    for (unsigned i = 0; i < sizeof(hooked) / sizeof(hooked[0]); i++) {
        void *p = sym(h, hooked[i]);
        if (strcmp(kit_owner(p), "blockswap") != 0) {
            fprintf(stderr, "dlsym(libcuda, %s) was not intercepted\n", hooked[i]);
            return 1;
        }
        /* The wrapper handed out is the shim's exported function of that name. */
        CHECK(p == dlsym(RTLD_DEFAULT, hooked[i]));
    }
    const char *plain[] = { "cuInit", "cuCtxSynchronize", "cuStreamCreate", "cuModuleLoadData" };
    for (unsigned i = 0; i < sizeof(plain) / sizeof(plain[0]); i++)
        CHECK(strcmp(kit_owner(sym(h, plain[i])), "cuda") == 0);
    CHECK(dlsym(h, "cuNoSuchFunction") == NULL);
    /* A hooked name in a library that does not define it: NULL, as without the shim
     * (a wrapper there would call a driver function that may not exist). */
    void *libm = dlopen("libm.so.6", RTLD_NOW | RTLD_LOCAL);
    CHECK(libm != NULL);
    CHECK(dlsym(libm, "cuMemAlloc_v2") == NULL && dlsym(libm, "cuLaunchKernel") == NULL);

    /* dlvsym: the driver's symbols are unversioned, and glibc finds none of them by a
     * version name (NULL, with or without the shim); a C library that does find one
     * must get the wrapper. */
    void *pv = dlvsym(h, "cuMemFree_v2", "GLIBC_2.2.5");
    if (pv)
        CHECK(strcmp(kit_owner(pv), "blockswap") == 0);

    /* Calls through the looked-up pointers are counted. */
    CUresult (*init)(unsigned) = (CUresult (*)(unsigned))sym(h, "cuInit");
    CUresult (*alloc)(CUdeviceptr *, size_t) = (CUresult (*)(CUdeviceptr *, size_t))sym(h, "cuMemAlloc_v2");
    CUresult (*get)(CUdevice *, int) = (CUresult (*)(CUdevice *, int))sym(h, "cuDeviceGet");
    CUresult (*retain)(CUcontext *, CUdevice) = (CUresult (*)(CUcontext *, CUdevice))sym(h, "cuDevicePrimaryCtxRetain");
    CUresult (*setcur)(CUcontext) = (CUresult (*)(CUcontext))sym(h, "cuCtxSetCurrent");
    CUdevice d;
    CUcontext c;
    CHECK_CU(init(0));
    CHECK_CU(get(&d, 0));
    CHECK_CU(retain(&c, d));
    CHECK_CU(setcur(c));
    int64_t before = kit_calls("cuMemAlloc_v2");
    CUdeviceptr p;
    CHECK_CU(alloc(&p, 4096));
    CHECK(kit_calls("cuMemAlloc_v2") == before + 1);
    struct blockswap_alloc_info info;
    CHECK(BS_API_FN(blockswap_find_allocation)(p + 100, &info) == 0 && info.base == p);
    return 0;
}
