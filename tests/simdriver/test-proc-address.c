/* cuGetProcAddress (4-argument ABI) and cuGetProcAddress_v2 pick the symbol for the
 * requested CUDA version and stream flag, return the exported function itself (the
 * address dlsym gives), and report unknown names and too-old versions. */
#define _GNU_SOURCE
#include <dlfcn.h>

#include "simtest.h"

typedef CUresult (*gpa_v1_t)(const char *, void **, int, cuuint64_t);
typedef CUresult (*gpa_v2_t)(const char *, void **, int, cuuint64_t, CUdriverProcAddressQueryResult *);

static void *handle;
static gpa_v2_t gpa;

static void expect(const char *name, int version, cuuint64_t flags, const char *sym)
{
    void *fn = NULL;
    CUdriverProcAddressQueryResult st = -1;
    CUresult r = gpa(name, &fn, version, flags, &st);
    void *want = dlsym(handle, sym);
    if (r != CUDA_SUCCESS || st != CU_GET_PROC_ADDRESS_SUCCESS || !want || fn != want) {
        fprintf(stderr, "%s @%d flags %llu: got %p (r=%d st=%d), want %s = %p\n", name, version,
                (unsigned long long)flags, fn, r, (int)st, sym, want);
        exit(1);
    }
}

int main(void)
{
    handle = dlopen("libcuda.so.1", RTLD_NOW | RTLD_NOLOAD);
    CHECK(handle);
    gpa = (gpa_v2_t)dlsym(handle, "cuGetProcAddress_v2");
    gpa_v1_t gpa1 = (gpa_v1_t)dlsym(handle, "cuGetProcAddress");
    CHECK(gpa && gpa1);

    /* Works before cuInit: cudart fetches cuInit itself this way. */
    expect("cuInit", 12000, CU_GET_PROC_ADDRESS_DEFAULT, "cuInit");
    st_setup();

    expect("cuMemAlloc", 12000, CU_GET_PROC_ADDRESS_DEFAULT, "cuMemAlloc_v2");
    expect("cuMemAlloc", 3020, CU_GET_PROC_ADDRESS_DEFAULT, "cuMemAlloc_v2");
    expect("cuMemAlloc", 3010, CU_GET_PROC_ADDRESS_DEFAULT, "cuMemAlloc");
    expect("cuMemGetInfo", 2000, CU_GET_PROC_ADDRESS_LEGACY_STREAM, "cuMemGetInfo");
    expect("cuMemGetInfo", 13000, CU_GET_PROC_ADDRESS_LEGACY_STREAM, "cuMemGetInfo_v2");
    expect("cuGetProcAddress", 11030, 0, "cuGetProcAddress");
    expect("cuGetProcAddress", 12000, 0, "cuGetProcAddress_v2");
    expect("cuEventElapsedTime", 12000, 0, "cuEventElapsedTime");
    expect("cuEventElapsedTime", 12080, 0, "cuEventElapsedTime_v2");
    expect("cuCtxCreate", 12000, 0, "cuCtxCreate_v2");
    expect("cuCtxCreate", 12050, 0, "cuCtxCreate_v4");

    /* Per-thread default stream variants, where they exist. */
    expect("cuLaunchKernel", 12000, CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM, "cuLaunchKernel_ptsz");
    expect("cuLaunchKernel", 12000, CU_GET_PROC_ADDRESS_LEGACY_STREAM, "cuLaunchKernel");
    expect("cuLaunchKernel", 12000, CU_GET_PROC_ADDRESS_DEFAULT, "cuLaunchKernel");
    expect("cuLaunchKernelEx", 12000, CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM, "cuLaunchKernelEx_ptsz");
    expect("cuMemcpyHtoD", 12000, CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM, "cuMemcpyHtoD_v2_ptds");
    expect("cuMemcpyHtoD", 12000, CU_GET_PROC_ADDRESS_LEGACY_STREAM, "cuMemcpyHtoD_v2");
    expect("cuMemcpyHtoDAsync", 12000, CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM, "cuMemcpyHtoDAsync_v2_ptsz");
    expect("cuMemcpyHtoD", 6000, CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM, "cuMemcpyHtoD_v2");
    expect("cuStreamBeginCapture", 12000, CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM,
           "cuStreamBeginCapture_v2_ptsz");
    expect("cuMemAllocAsync", 12000, CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM, "cuMemAllocAsync_ptsz");
    /* No per-thread variant: the ordinary symbol. */
    expect("cuMemAlloc", 12000, CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM, "cuMemAlloc_v2");

    void *fn = (void *)1;
    CUdriverProcAddressQueryResult st;
    CHECK(gpa("cuNoSuchFunction", &fn, 12000, 0, &st) == CUDA_ERROR_NOT_FOUND);
    CHECK(st == CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND && fn == NULL);
    CHECK(gpa("cuMemAllocAsync", &fn, 11000, 0, &st) == CUDA_ERROR_NOT_FOUND);
    CHECK(st == CU_GET_PROC_ADDRESS_VERSION_NOT_SUFFICIENT && fn == NULL);
    CHECK(gpa("cuInit", NULL, 12000, 0, &st) == CUDA_ERROR_INVALID_VALUE);

    /* The 4-argument ABI resolves the same way. */
    CHECK(gpa1("cuLaunchKernel", &fn, 12000, CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM) == CUDA_SUCCESS);
    CHECK(fn == dlsym(handle, "cuLaunchKernel_ptsz"));

    /* The resolved legacy function works: 32-bit cuMemGetInfo saturates. */
    CHECK(gpa("cuMemGetInfo", &fn, 2000, 0, &st) == CUDA_SUCCESS);
    unsigned fr = 0, tot = 0;
    CHECK_CU(((CUresult(*)(unsigned *, unsigned *))fn)(&fr, &tot));
    CHECK(tot == 0xffffffffu);
    return 0;
}
