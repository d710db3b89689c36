/* Calls before cuInit return CUDA_ERROR_NOT_INITIALIZED; calls that need a context
 * return CUDA_ERROR_INVALID_CONTEXT on a thread without one; the primary context,
 * created contexts and the per-thread current stack behave as documented; device
 * queries answer for one compute capability 9.0 GPU. */
#include <pthread.h>

#include "simtest.h"

static void *no_ctx_thread(void *arg)
{
    CUdeviceptr p;
    CUcontext c = (CUcontext)1;
    CHECK_CU(cuCtxGetCurrent(&c));
    CHECK(c == NULL);
    CHECK(cuMemAlloc(&p, 16) == CUDA_ERROR_INVALID_CONTEXT);
    CHECK(cuStreamSynchronize(NULL) == CUDA_ERROR_INVALID_CONTEXT);
    CHECK_CU(cuCtxSetCurrent((CUcontext)arg));
    CHECK_CU(cuMemAlloc(&p, 16));
    CHECK_CU(cuMemFree(p));
    return NULL;
}

int main(void)
{
    int v;
    CUdevice dev;
    CUdeviceptr p;
    CHECK_CU(cuDriverGetVersion(&v));
    CHECK(v == 13000);
    CHECK(cuDeviceGet(&dev, 0) == CUDA_ERROR_NOT_INITIALIZED);
    CHECK(cuMemAlloc(&p, 16) == CUDA_ERROR_NOT_INITIALIZED);
    const char *s;
    CHECK_CU(cuGetErrorName(CUDA_ERROR_ILLEGAL_ADDRESS, &s));
    CHECK(strcmp(s, "CUDA_ERROR_ILLEGAL_ADDRESS") == 0);
    CHECK_CU(cuGetErrorString(CUDA_ERROR_OUT_OF_MEMORY, &s));
    CHECK(strcmp(s, "out of memory") == 0);
    CHECK(cuGetErrorName((CUresult)123456, &s) == CUDA_ERROR_INVALID_VALUE);

    CHECK_CU(cuInit(0));
    CHECK(cuMemAlloc(&p, 16) == CUDA_ERROR_INVALID_CONTEXT);
    int n;
    CHECK_CU(cuDeviceGetCount(&n));
    CHECK(n == 1);
    CHECK_CU(cuDeviceGet(&dev, 0));
    CHECK(cuDeviceGet(&dev, 1) == CUDA_ERROR_INVALID_DEVICE);
    char name[64];
    CHECK_CU(cuDeviceGetName(name, sizeof(name), dev));
    CHECK(strcmp(name, "blockswap simulated GPU") == 0);
    int major, minor, uva, pools, vmm;
    CHECK_CU(cuDeviceGetAttribute(&major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev));
    CHECK_CU(cuDeviceGetAttribute(&minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev));
    CHECK_CU(cuDeviceGetAttribute(&uva, CU_DEVICE_ATTRIBUTE_UNIFIED_ADDRESSING, dev));
    CHECK_CU(cuDeviceGetAttribute(&pools, CU_DEVICE_ATTRIBUTE_MEMORY_POOLS_SUPPORTED, dev));
    CHECK_CU(cuDeviceGetAttribute(&vmm, CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED, dev));
    CHECK(major == 9 && minor == 0 && uva == 1 && pools == 1 && vmm == 1);
    size_t total;
    CHECK_CU(cuDeviceTotalMem(&total, dev));
    CHECK(total == 8ull << 30);

    unsigned flags;
    int active;
    CHECK_CU(cuDevicePrimaryCtxGetState(dev, &flags, &active));
    CHECK(!active);
    CUcontext prim, cur, created, popped;
    CHECK_CU(cuDevicePrimaryCtxRetain(&prim, dev));
    CHECK_CU(cuDevicePrimaryCtxGetState(dev, &flags, &active));
    CHECK(active);
    CHECK(cuMemAlloc(&p, 16) == CUDA_ERROR_INVALID_CONTEXT); /* retained, not current */
    CHECK_CU(cuCtxSetCurrent(prim));
    CHECK_CU(cuCtxGetCurrent(&cur));
    CHECK(cur == prim);
    CHECK_CU(cuMemAlloc(&p, 16));

    CHECK_CU(cuCtxCreate(&created, NULL, 0, dev)); /* becomes current */
    CHECK_CU(cuCtxGetCurrent(&cur));
    CHECK(cur == created);
    CHECK_CU(cuCtxPopCurrent(&popped));
    CHECK(popped == created);
    CHECK_CU(cuCtxGetCurrent(&cur));
    CHECK(cur == prim);
    CHECK_CU(cuCtxPushCurrent(created));
    CHECK_CU(cuCtxDestroy(created));
    CHECK_CU(cuCtxGetCurrent(&cur));
    CHECK(cur == prim);
    CHECK(cuCtxPushCurrent(created) == CUDA_ERROR_INVALID_CONTEXT);
    CUdevice d2;
    CHECK_CU(cuCtxGetDevice(&d2));
    CHECK(d2 == 0);

    pthread_t t;
    CHECK(pthread_create(&t, NULL, no_ctx_thread, prim) == 0);
    CHECK(pthread_join(t, NULL) == 0);
    CHECK_CU(cuMemFree(p));
    CHECK_CU(cuDevicePrimaryCtxRelease(dev));
    return 0;
}
