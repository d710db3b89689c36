/* The exported driver API of the simulator: one thin definition per symbol in
 * exports.def, each taking the lock, checking init/context, and forwarding to a
 * cudasim_* implementation. Nothing in the simulator calls these names itself, so a
 * preloaded shim that defines the same names never sees the simulator's own work. */
#include "sim.h"

#include <string.h>

#include "exports.h"

/* FAULT: counts this use of the entry point (named by __func__, which is the exported
 * symbol) and returns early when CUDASIM_FAIL injects a failure here (fault.c). */
#define FAULT()                                                                \
    do {                                                                       \
        static int fault_id_ = -1;                                             \
        CUresult f_ = cudasim_fault(&fault_id_, __func__);                     \
        if (f_ != CUDA_SUCCESS)                                                \
            return f_;                                                         \
    } while (0)

#define CALL(need, expr)                                                       \
    do {                                                                       \
        static int fault_id_ = -1;                                             \
        CUresult r_ = cudasim_enter(need);                                     \
        if (r_ == CUDA_SUCCESS)                                                \
            r_ = cudasim_call(&fault_id_, __func__);                           \
        if (r_ == CUDA_SUCCESS)                                                \
            r_ = (expr);                                                       \
        cudasim_leave();                                                       \
        return r_;                                                             \
    } while (0)


/* ---- init, version, errors, entry points --------------------------------------- */

CUresult cuInit(unsigned int Flags) { CALL(SIM_NEED_NOTHING, cudasim_init(Flags)); }

CUresult cuDriverGetVersion(int *driverVersion)
{
    FAULT();
    if (!driverVersion)
        return CUDA_ERROR_INVALID_VALUE;
    *driverVersion = CUDA_VERSION;
    return CUDA_SUCCESS;
}

/* No lock: these read constant tables and must work in any state, even from a
 * signal handler or after a fault. */
CUresult cuGetErrorName(CUresult error, const char **pStr)
{
    FAULT();
    return cudasim_error_name(error, pStr);
}
CUresult cuGetErrorString(CUresult error, const char **pStr)
{
    FAULT();
    return cudasim_error_string(error, pStr);
}

CUresult cuGetProcAddress(const char *symbol, void **pfn, int cudaVersion, cuuint64_t flags)
{
    FAULT();
    return cudasim_get_proc_address(symbol, pfn, cudaVersion, flags, NULL);
}

CUresult cuGetProcAddress_v2(const char *symbol, void **pfn, int cudaVersion, cuuint64_t flags,
                             CUdriverProcAddressQueryResult *symbolStatus)
{
    FAULT();
    return cudasim_get_proc_address(symbol, pfn, cudaVersion, flags, symbolStatus);
}

/* ---- device -------------------------------------------------------------------- */

CUresult cuDeviceGet(CUdevice *device, int ordinal) { CALL(SIM_NEED_INIT, cudasim_device_get(device, ordinal)); }
CUresult cuDeviceGetCount(int *count) { CALL(SIM_NEED_INIT, cudasim_device_count(count)); }
CUresult cuDeviceGetName(char *name, int len, CUdevice dev) { CALL(SIM_NEED_INIT, cudasim_device_name(name, len, dev)); }
CUresult cuDeviceTotalMem_v2(size_t *bytes, CUdevice dev) { CALL(SIM_NEED_INIT, cudasim_device_total_mem(bytes, dev)); }
CUresult cuDeviceGetAttribute(int *pi, CUdevice_attribute attrib, CUdevice dev)
{
    CALL(SIM_NEED_INIT, cudasim_device_attribute(pi, attrib, dev));
}
CUresult cuDeviceGetUuid(CUuuid *uuid, CUdevice dev) { CALL(SIM_NEED_INIT, cudasim_device_uuid(uuid, dev)); }
CUresult cuDeviceGetUuid_v2(CUuuid *uuid, CUdevice dev) { CALL(SIM_NEED_INIT, cudasim_device_uuid(uuid, dev)); }
CUresult cuDeviceGetPCIBusId(char *pciBusId, int len, CUdevice dev)
{
    CALL(SIM_NEED_INIT, cudasim_device_pci_bus_id(pciBusId, len, dev));
}
CUresult cuDevicePrimaryCtxRetain(CUcontext *pctx, CUdevice dev) { CALL(SIM_NEED_INIT, cudasim_primary_retain(pctx, dev)); }
CUresult cuDevicePrimaryCtxRelease(CUdevice dev) { CALL(SIM_NEED_INIT, cudasim_primary_release(dev)); }
CUresult cuDevicePrimaryCtxRelease_v2(CUdevice dev) { CALL(SIM_NEED_INIT, cudasim_primary_release(dev)); }
CUresult cuDevicePrimaryCtxGetState(CUdevice dev, unsigned int *flags, int *active)
{
    CALL(SIM_NEED_INIT, cudasim_primary_state(dev, flags, active));
}
CUresult cuDevicePrimaryCtxReset(CUdevice dev) { CALL(SIM_NEED_INIT, cudasim_primary_reset(dev)); }
CUresult cuDevicePrimaryCtxReset_v2(CUdevice dev) { CALL(SIM_NEED_INIT, cudasim_primary_reset(dev)); }
CUresult cuDevicePrimaryCtxSetFlags(CUdevice dev, unsigned int flags) { CALL(SIM_NEED_INIT, cudasim_primary_set_flags(dev, flags)); }
CUresult cuDevicePrimaryCtxSetFlags_v2(CUdevice dev, unsigned int flags) { CALL(SIM_NEED_INIT, cudasim_primary_set_flags(dev, flags)); }

/* ---- context ------------------------------------------------------------------- */

CUresult cuCtxCreate_v2(CUcontext *pctx, unsigned int flags, CUdevice dev) { CALL(SIM_NEED_INIT, cudasim_ctx_create(pctx, flags, dev)); }
CUresult cuCtxCreate_v4(CUcontext *pctx, CUctxCreateParams *ctxCreateParams, unsigned int flags, CUdevice dev)
{
    /* Execution affinity and CIG parameters have no meaning on one simulated GPU. */
    (void)ctxCreateParams;
    CALL(SIM_NEED_INIT, cudasim_ctx_create(pctx, flags, dev));
}
CUresult cuCtxDestroy_v2(CUcontext ctx) { CALL(SIM_NEED_INIT, cudasim_ctx_destroy(ctx)); }
CUresult cuCtxSetCurrent(CUcontext ctx) { CALL(SIM_NEED_INIT, cudasim_ctx_set_current(ctx)); }
CUresult cuCtxGetCurrent(CUcontext *pctx) { CALL(SIM_NEED_INIT, cudasim_ctx_get_current(pctx)); }
CUresult cuCtxPushCurrent_v2(CUcontext ctx) { CALL(SIM_NEED_INIT, cudasim_ctx_push(ctx)); }
CUresult cuCtxPopCurrent_v2(CUcontext *pctx) { CALL(SIM_NEED_INIT, cudasim_ctx_pop(pctx)); }
CUresult cuCtxGetDevice(CUdevice *device) { CALL(SIM_NEED_CTX, cudasim_ctx_get_device(device)); }
CUresult cuCtxSynchronize(void) { CALL(SIM_NEED_CTX, cudasim_ctx_synchronize()); }
CUresult cuCtxGetFlags(unsigned int *flags) { CALL(SIM_NEED_CTX, cudasim_ctx_get_flags(flags)); }
CUresult cuCtxGetId(CUcontext ctx, unsigned long long *ctxId) { CALL(SIM_NEED_INIT, cudasim_ctx_get_id(ctx, ctxId)); }
CUresult cuCtxGetApiVersion(CUcontext ctx, unsigned int *version)
{
    FAULT();
    if (!version)
        return CUDA_ERROR_INVALID_VALUE;
    *version = 3020; /* what every context created through the v2+ API reports */
    (void)ctx;
    return CUDA_SUCCESS;
}
CUresult cuCtxGetStreamPriorityRange(int *leastPriority, int *greatestPriority)
{
    FAULT();
    if (leastPriority)
        *leastPriority = 0;
    if (greatestPriority)
        *greatestPriority = -5;
    return CUDA_SUCCESS;
}

/* ---- device memory ------------------------------------------------------------- */

CUresult cuMemAlloc(CUdeviceptr_v1 *dptr, unsigned int bytesize) { CALL(SIM_NEED_CTX, cudasim_mem_alloc_v1(dptr, bytesize)); }
CUresult cuMemAlloc_v2(CUdeviceptr *dptr, size_t bytesize) { CALL(SIM_NEED_CTX, cudasim_mem_alloc(dptr, bytesize)); }
CUresult cuMemAllocPitch_v2(CUdeviceptr *dptr, size_t *pPitch, size_t WidthInBytes, size_t Height,
                            unsigned int ElementSizeBytes)
{
    CALL(SIM_NEED_CTX, cudasim_mem_alloc_pitch(dptr, pPitch, WidthInBytes, Height, ElementSizeBytes));
}
CUresult cuMemFree_v2(CUdeviceptr dptr) { CALL(SIM_NEED_CTX, cudasim_mem_free(dptr, "cuMemFree_v2")); }

CUresult cuMemGetInfo(unsigned int *free, unsigned int *total)
{
    size_t f = 0, t = 0;
    static int fault_id_ = -1;
    CUresult r = cudasim_enter(SIM_NEED_CTX);
    if (r == CUDA_SUCCESS)
        r = cudasim_call(&fault_id_, __func__);
    if (r == CUDA_SUCCESS)
        r = cudasim_mem_get_info(&f, &t);
    cudasim_leave();
    if (r == CUDA_SUCCESS) {
        /* The 32-bit API saturates rather than wrapping. */
        if (free)
            *free = f > UINT32_MAX ? UINT32_MAX : (unsigned)f;
        if (total)
            *total = t > UINT32_MAX ? UINT32_MAX : (unsigned)t;
    }
    return r;
}
CUresult cuMemGetInfo_v2(size_t *free, size_t *total) { CALL(SIM_NEED_CTX, cudasim_mem_get_info(free, total)); }
CUresult cuMemGetAddressRange_v2(CUdeviceptr *pbase, size_t *psize, CUdeviceptr dptr)
{
    CALL(SIM_NEED_CTX, cudasim_mem_get_address_range(pbase, psize, dptr));
}
CUresult cuPointerGetAttribute(void *data, CUpointer_attribute attribute, CUdeviceptr ptr)
{
    CALL(SIM_NEED_INIT, cudasim_pointer_attribute(data, attribute, ptr));
}
CUresult cuPointerGetAttributes(unsigned int numAttributes, CUpointer_attribute *attributes, void **data,
                                CUdeviceptr ptr)
{
    CALL(SIM_NEED_INIT, cudasim_pointer_attributes(numAttributes, attributes, data, ptr));
}

/* ---- stream-ordered allocation and pools ------------------------------------- */

CUresult cuMemAllocAsync(CUdeviceptr *dptr, size_t bytesize, CUstream hStream)
{
    CALL(SIM_NEED_CTX, cudasim_mem_alloc_async(dptr, bytesize, NULL, hStream, false));
}
CUresult cuMemAllocAsync_ptsz(CUdeviceptr *dptr, size_t bytesize, CUstream hStream)
{
    CALL(SIM_NEED_CTX, cudasim_mem_alloc_async(dptr, bytesize, NULL, hStream, true));
}
CUresult cuMemFreeAsync(CUdeviceptr dptr, CUstream hStream) { CALL(SIM_NEED_CTX, cudasim_mem_free_async(dptr, hStream, false)); }
CUresult cuMemFreeAsync_ptsz(CUdeviceptr dptr, CUstream hStream) { CALL(SIM_NEED_CTX, cudasim_mem_free_async(dptr, hStream, true)); }
CUresult cuMemAllocFromPoolAsync(CUdeviceptr *dptr, size_t bytesize, CUmemoryPool pool, CUstream hStream)
{
    CALL(SIM_NEED_CTX, cudasim_mem_alloc_async(dptr, bytesize, pool, hStream, false));
}
CUresult cuMemAllocFromPoolAsync_ptsz(CUdeviceptr *dptr, size_t bytesize, CUmemoryPool pool, CUstream hStream)
{
    CALL(SIM_NEED_CTX, cudasim_mem_alloc_async(dptr, bytesize, pool, hStream, true));
}
CUresult cuDeviceGetDefaultMemPool(CUmemoryPool *pool_out, CUdevice dev) { CALL(SIM_NEED_INIT, cudasim_pool_default(pool_out, dev)); }
CUresult cuDeviceGetMemPool(CUmemoryPool *pool, CUdevice dev) { CALL(SIM_NEED_INIT, cudasim_pool_default(pool, dev)); }
CUresult cuDeviceSetMemPool(CUdevice dev, CUmemoryPool pool) { CALL(SIM_NEED_INIT, cudasim_pool_set_current(dev, pool)); }
CUresult cuMemPoolCreate(CUmemoryPool *pool, const CUmemPoolProps *poolProps) { CALL(SIM_NEED_INIT, cudasim_pool_create(pool, poolProps)); }
CUresult cuMemPoolDestroy(CUmemoryPool pool) { CALL(SIM_NEED_INIT, cudasim_pool_destroy(pool)); }
CUresult cuMemPoolSetAttribute(CUmemoryPool pool, CUmemPool_attribute attr, void *value)
{
    CALL(SIM_NEED_INIT, cudasim_pool_set_attribute(pool, attr, value));
}
CUresult cuMemPoolGetAttribute(CUmemoryPool pool, CUmemPool_attribute attr, void *value)
{
    CALL(SIM_NEED_INIT, cudasim_pool_get_attribute(pool, attr, value));
}
CUresult cuMemPoolTrimTo(CUmemoryPool pool, size_t minBytesToKeep) { CALL(SIM_NEED_INIT, cudasim_pool_trim(pool, minBytesToKeep)); }

/* ---- pinned host memory -------------------------------------------------------- */

CUresult cuMemAllocHost_v2(void **pp, size_t bytesize) { CALL(SIM_NEED_CTX, cudasim_mem_alloc_host(pp, bytesize, 0)); }
CUresult cuMemHostAlloc(void **pp, size_t bytesize, unsigned int Flags) { CALL(SIM_NEED_CTX, cudasim_mem_alloc_host(pp, bytesize, Flags)); }
CUresult cuMemFreeHost(void *p) { CALL(SIM_NEED_CTX, cudasim_mem_free_host(p)); }
CUresult cuMemHostRegister(void *p, size_t bytesize, unsigned int Flags) { CALL(SIM_NEED_CTX, cudasim_mem_host_register(p, bytesize, Flags)); }
CUresult cuMemHostRegister_v2(void *p, size_t bytesize, unsigned int Flags) { CALL(SIM_NEED_CTX, cudasim_mem_host_register(p, bytesize, Flags)); }
CUresult cuMemHostUnregister(void *p) { CALL(SIM_NEED_CTX, cudasim_mem_host_unregister(p)); }
CUresult cuMemHostGetDevicePointer_v2(CUdeviceptr *pdptr, void *p, unsigned int Flags)
{
    CALL(SIM_NEED_CTX, cudasim_mem_host_get_device_pointer(pdptr, p, Flags));
}
CUresult cuMemHostGetFlags(unsigned int *pFlags, void *p) { CALL(SIM_NEED_CTX, cudasim_mem_host_get_flags(pFlags, p)); }

/* ---- virtual memory management ------------------------------------------------- */

CUresult cuMemGetAllocationGranularity(size_t *granularity, const CUmemAllocationProp *prop,
                                       CUmemAllocationGranularity_flags option)
{
    CALL(SIM_NEED_INIT, cudasim_vmm_granularity(granularity, prop, option));
}
CUresult cuMemAddressReserve(CUdeviceptr *ptr, size_t size, size_t alignment, CUdeviceptr addr,
                             unsigned long long flags)
{
    CALL(SIM_NEED_INIT, cudasim_vmm_reserve(ptr, size, alignment, addr, flags));
}
CUresult cuMemAddressFree(CUdeviceptr ptr, size_t size) { CALL(SIM_NEED_INIT, cudasim_vmm_address_free(ptr, size)); }
CUresult cuMemCreate(CUmemGenericAllocationHandle *handle, size_t size, const CUmemAllocationProp *prop,
                     unsigned long long flags)
{
    CALL(SIM_NEED_INIT, cudasim_vmm_create(handle, size, prop, flags));
}
CUresult cuMemRelease(CUmemGenericAllocationHandle handle) { CALL(SIM_NEED_INIT, cudasim_vmm_release(handle)); }
CUresult cuMemMap(CUdeviceptr ptr, size_t size, size_t offset, CUmemGenericAllocationHandle handle,
                  unsigned long long flags)
{
    CALL(SIM_NEED_INIT, cudasim_vmm_map(ptr, size, offset, handle, flags));
}
CUresult cuMemUnmap(CUdeviceptr ptr, size_t size) { CALL(SIM_NEED_INIT, cudasim_vmm_unmap(ptr, size)); }
CUresult cuMemSetAccess(CUdeviceptr ptr, size_t size, const CUmemAccessDesc *desc, size_t count)
{
    CALL(SIM_NEED_INIT, cudasim_vmm_set_access(ptr, size, desc, count));
}
CUresult cuMemGetAccess(unsigned long long *flags, const CUmemLocation *location, CUdeviceptr ptr)
{
    CALL(SIM_NEED_INIT, cudasim_vmm_get_access(flags, location, ptr));
}
CUresult cuMemRetainAllocationHandle(CUmemGenericAllocationHandle *handle, void *addr)
{
    CALL(SIM_NEED_INIT, cudasim_vmm_retain_handle(handle, addr));
}
CUresult cuMemGetAllocationPropertiesFromHandle(CUmemAllocationProp *prop, CUmemGenericAllocationHandle handle)
{
    CALL(SIM_NEED_INIT, cudasim_vmm_get_props(prop, handle));
}

/* ---- copies -------------------------------------------------------------------- */

/* -1: infer host or device from the address (unified addressing). */
#define ANY (-1)

CUresult cuMemcpy(CUdeviceptr dst, CUdeviceptr src, size_t ByteCount)
{
    CALL(SIM_NEED_CTX, cudasim_copy_1d("cuMemcpy", dst, src, ByteCount, ANY, ANY, NULL, false, false));
}
CUresult cuMemcpy_ptds(CUdeviceptr dst, CUdeviceptr src, size_t ByteCount)
{
    CALL(SIM_NEED_CTX, cudasim_copy_1d("cuMemcpy_ptds", dst, src, ByteCount, ANY, ANY, NULL, true, false));
}
CUresult cuMemcpyAsync(CUdeviceptr dst, CUdeviceptr src, size_t ByteCount, CUstream hStream)
{
    CALL(SIM_NEED_CTX, cudasim_copy_1d("cuMemcpyAsync", dst, src, ByteCount, ANY, ANY, hStream, false, true));
}
CUresult cuMemcpyAsync_ptsz(CUdeviceptr dst, CUdeviceptr src, size_t ByteCount, CUstream hStream)
{
    CALL(SIM_NEED_CTX, cudasim_copy_1d("cuMemcpyAsync_ptsz", dst, src, ByteCount, ANY, ANY, hStream, true, true));
}
CUresult cuMemcpyHtoD_v2(CUdeviceptr dstDevice, const void *srcHost, size_t ByteCount)
{
    CALL(SIM_NEED_CTX, cudasim_copy_1d("cuMemcpyHtoD_v2", dstDevice, (uintptr_t)srcHost, ByteCount, 1, 0, NULL, false, false));
}
CUresult cuMemcpyHtoD_v2_ptds(CUdeviceptr dstDevice, const void *srcHost, size_t ByteCount)
{
    CALL(SIM_NEED_CTX, cudasim_copy_1d("cuMemcpyHtoD_v2_ptds", dstDevice, (uintptr_t)srcHost, ByteCount, 1, 0, NULL, true, false));
}
CUresult cuMemcpyDtoH_v2(void *dstHost, CUdeviceptr srcDevice, size_t ByteCount)
{
    CALL(SIM_NEED_CTX, cudasim_copy_1d("cuMemcpyDtoH_v2", (uintptr_t)dstHost, srcDevice, ByteCount, 0, 1, NULL, false, false));
}
CUresult cuMemcpyDtoH_v2_ptds(void *dstHost, CUdeviceptr srcDevice, size_t ByteCount)
{
    CALL(SIM_NEED_CTX, cudasim_copy_1d("cuMemcpyDtoH_v2_ptds", (uintptr_t)dstHost, srcDevice, ByteCount, 0, 1, NULL, true, false));
}
CUresult cuMemcpyDtoD_v2(CUdeviceptr dstDevice, CUdeviceptr srcDevice, size_t ByteCount)
{
    CALL(SIM_NEED_CTX, cudasim_copy_1d("cuMemcpyDtoD_v2", dstDevice, srcDevice, ByteCount, 1, 1, NULL, false, false));
}
CUresult cuMemcpyDtoD_v2_ptds(CUdeviceptr dstDevice, CUdeviceptr srcDevice, size_t ByteCount)
{
    CALL(SIM_NEED_CTX, cudasim_copy_1d("cuMemcpyDtoD_v2_ptds", dstDevice, srcDevice, ByteCount, 1, 1, NULL, true, false));
}
CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr dstDevice, const void *srcHost, size_t ByteCount, CUstream hStream)
{
    CALL(SIM_NEED_CTX, cudasim_copy_1d("cuMemcpyHtoDAsync_v2", dstDevice, (uintptr_t)srcHost, ByteCount, 1, 0, hStream, false, true));
}
CUresult cuMemcpyHtoDAsync_v2_ptsz(CUdeviceptr dstDevice, const void *srcHost, size_t ByteCount, CUstream hStream)
{
    CALL(SIM_NEED_CTX, cudasim_copy_1d("cuMemcpyHtoDAsync_v2_ptsz", dstDevice, (uintptr_t)srcHost, ByteCount, 1, 0, hStream, true, true));
}
CUresult cuMemcpyDtoHAsync_v2(void *dstHost, CUdeviceptr srcDevice, size_t ByteCount, CUstream hStream)
{
    CALL(SIM_NEED_CTX, cudasim_copy_1d("cuMemcpyDtoHAsync_v2", (uintptr_t)dstHost, srcDevice, ByteCount, 0, 1, hStream, false, true));
}
CUresult cuMemcpyDtoHAsync_v2_ptsz(void *dstHost, CUdeviceptr srcDevice, size_t ByteCount, CUstream hStream)
{
    CALL(SIM_NEED_CTX, cudasim_copy_1d("cuMemcpyDtoHAsync_v2_ptsz", (uintptr_t)dstHost, srcDevice, ByteCount, 0, 1, hStream, true, true));
}
CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr dstDevice, CUdeviceptr srcDevice, size_t ByteCount, CUstream hStream)
{
    CALL(SIM_NEED_CTX, cudasim_copy_1d("cuMemcpyDtoDAsync_v2", dstDevice, srcDevice, ByteCount, 1, 1, hStream, false, true));
}
CUresult cuMemcpyDtoDAsync_v2_ptsz(CUdeviceptr dstDevice, CUdeviceptr srcDevice, size_t ByteCount, CUstream hStream)
{
    CALL(SIM_NEED_CTX, cudasim_copy_1d("cuMemcpyDtoDAsync_v2_ptsz", dstDevice, srcDevice, ByteCount, 1, 1, hStream, true, true));
}
CUresult cuMemcpy2D_v2(const CUDA_MEMCPY2D *pCopy) { CALL(SIM_NEED_CTX, cudasim_copy_2d("cuMemcpy2D_v2", pCopy, NULL, false, false)); }
CUresult cuMemcpy2D_v2_ptds(const CUDA_MEMCPY2D *pCopy) { CALL(SIM_NEED_CTX, cudasim_copy_2d("cuMemcpy2D_v2_ptds", pCopy, NULL, true, false)); }
CUresult cuMemcpy2DUnaligned_v2(const CUDA_MEMCPY2D *pCopy)
{
    CALL(SIM_NEED_CTX, cudasim_copy_2d("cuMemcpy2DUnaligned_v2", pCopy, NULL, false, false));
}
CUresult cuMemcpy2DUnaligned_v2_ptds(const CUDA_MEMCPY2D *pCopy)
{
    CALL(SIM_NEED_CTX, cudasim_copy_2d("cuMemcpy2DUnaligned_v2_ptds", pCopy, NULL, true, false));
}
CUresult cuMemcpy3D_v2(const CUDA_MEMCPY3D *pCopy) { CALL(SIM_NEED_CTX, cudasim_copy_3d("cuMemcpy3D_v2", pCopy, NULL, false, false)); }
CUresult cuMemcpy3D_v2_ptds(const CUDA_MEMCPY3D *pCopy) { CALL(SIM_NEED_CTX, cudasim_copy_3d("cuMemcpy3D_v2_ptds", pCopy, NULL, true, false)); }
CUresult cuMemcpy2DAsync_v2(const CUDA_MEMCPY2D *pCopy, CUstream hStream)
{
    CALL(SIM_NEED_CTX, cudasim_copy_2d("cuMemcpy2DAsync_v2", pCopy, hStream, false, true));
}
CUresult cuMemcpy2DAsync_v2_ptsz(const CUDA_MEMCPY2D *pCopy, CUstream hStream)
{
    CALL(SIM_NEED_CTX, cudasim_copy_2d("cuMemcpy2DAsync_v2_ptsz", pCopy, hStream, true, true));
}
CUresult cuMemcpy3DAsync_v2(const CUDA_MEMCPY3D *pCopy, CUstream hStream)
{
    CALL(SIM_NEED_CTX, cudasim_copy_3d("cuMemcpy3DAsync_v2", pCopy, hStream, false, true));
}
CUresult cuMemcpy3DAsync_v2_ptsz(const CUDA_MEMCPY3D *pCopy, CUstream hStream)
{
    CALL(SIM_NEED_CTX, cudasim_copy_3d("cuMemcpy3DAsync_v2_ptsz", pCopy, hStream, true, true));
}

/* ---- memsets ------------------------------------------------------------------- */

#define MEMSET(api, dst, pitch, val, elem, w, h, s, pt) \
    CALL(SIM_NEED_CTX, cudasim_memset(api, dst, pitch, (uint32_t)(val), elem, w, h, s, pt))

CUresult cuMemsetD8_v2(CUdeviceptr d, unsigned char uc, size_t N) { MEMSET("cuMemsetD8_v2", d, 0, uc, 1, N, 1, NULL, false); }
CUresult cuMemsetD8_v2_ptds(CUdeviceptr d, unsigned char uc, size_t N) { MEMSET("cuMemsetD8_v2_ptds", d, 0, uc, 1, N, 1, NULL, true); }
CUresult cuMemsetD16_v2(CUdeviceptr d, unsigned short us, size_t N) { MEMSET("cuMemsetD16_v2", d, 0, us, 2, N, 1, NULL, false); }
CUresult cuMemsetD16_v2_ptds(CUdeviceptr d, unsigned short us, size_t N) { MEMSET("cuMemsetD16_v2_ptds", d, 0, us, 2, N, 1, NULL, true); }
CUresult cuMemsetD32_v2(CUdeviceptr d, unsigned int ui, size_t N) { MEMSET("cuMemsetD32_v2", d, 0, ui, 4, N, 1, NULL, false); }
CUresult cuMemsetD32_v2_ptds(CUdeviceptr d, unsigned int ui, size_t N) { MEMSET("cuMemsetD32_v2_ptds", d, 0, ui, 4, N, 1, NULL, true); }
CUresult cuMemsetD2D8_v2(CUdeviceptr d, size_t p, unsigned char uc, size_t w, size_t h)
{
    MEMSET("cuMemsetD2D8_v2", d, p, uc, 1, w, h, NULL, false);
}
CUresult cuMemsetD2D8_v2_ptds(CUdeviceptr d, size_t p, unsigned char uc, size_t w, size_t h)
{
    MEMSET("cuMemsetD2D8_v2_ptds", d, p, uc, 1, w, h, NULL, true);
}
CUresult cuMemsetD2D16_v2(CUdeviceptr d, size_t p, unsigned short us, size_t w, size_t h)
{
    MEMSET("cuMemsetD2D16_v2", d, p, us, 2, w, h, NULL, false);
}
CUresult cuMemsetD2D16_v2_ptds(CUdeviceptr d, size_t p, unsigned short us, size_t w, size_t h)
{
    MEMSET("cuMemsetD2D16_v2_ptds", d, p, us, 2, w, h, NULL, true);
}
CUresult cuMemsetD2D32_v2(CUdeviceptr d, size_t p, unsigned int ui, size_t w, size_t h)
{
    MEMSET("cuMemsetD2D32_v2", d, p, ui, 4, w, h, NULL, false);
}
CUresult cuMemsetD2D32_v2_ptds(CUdeviceptr d, size_t p, unsigned int ui, size_t w, size_t h)
{
    MEMSET("cuMemsetD2D32_v2_ptds", d, p, ui, 4, w, h, NULL, true);
}
CUresult cuMemsetD8Async(CUdeviceptr d, unsigned char uc, size_t N, CUstream s) { MEMSET("cuMemsetD8Async", d, 0, uc, 1, N, 1, s, false); }
CUresult cuMemsetD8Async_ptsz(CUdeviceptr d, unsigned char uc, size_t N, CUstream s) { MEMSET("cuMemsetD8Async_ptsz", d, 0, uc, 1, N, 1, s, true); }
CUresult cuMemsetD16Async(CUdeviceptr d, unsigned short us, size_t N, CUstream s) { MEMSET("cuMemsetD16Async", d, 0, us, 2, N, 1, s, false); }
CUresult cuMemsetD16Async_ptsz(CUdeviceptr d, unsigned short us, size_t N, CUstream s) { MEMSET("cuMemsetD16Async_ptsz", d, 0, us, 2, N, 1, s, true); }
CUresult cuMemsetD32Async(CUdeviceptr d, unsigned int ui, size_t N, CUstream s) { MEMSET("cuMemsetD32Async", d, 0, ui, 4, N, 1, s, false); }
CUresult cuMemsetD32Async_ptsz(CUdeviceptr d, unsigned int ui, size_t N, CUstream s) { MEMSET("cuMemsetD32Async_ptsz", d, 0, ui, 4, N, 1, s, true); }
CUresult cuMemsetD2D8Async(CUdeviceptr d, size_t p, unsigned char uc, size_t w, size_t h, CUstream s)
{
    MEMSET("cuMemsetD2D8Async", d, p, uc, 1, w, h, s, false);
}
CUresult cuMemsetD2D8Async_ptsz(CUdeviceptr d, size_t p, unsigned char uc, size_t w, size_t h, CUstream s)
{
    MEMSET("cuMemsetD2D8Async_ptsz", d, p, uc, 1, w, h, s, true);
}
CUresult cuMemsetD2D16Async(CUdeviceptr d, size_t p, unsigned short us, size_t w, size_t h, CUstream s)
{
    MEMSET("cuMemsetD2D16Async", d, p, us, 2, w, h, s, false);
}
CUresult cuMemsetD2D16Async_ptsz(CUdeviceptr d, size_t p, unsigned short us, size_t w, size_t h, CUstream s)
{
    MEMSET("cuMemsetD2D16Async_ptsz", d, p, us, 2, w, h, s, true);
}
CUresult cuMemsetD2D32Async(CUdeviceptr d, size_t p, unsigned int ui, size_t w, size_t h, CUstream s)
{
    MEMSET("cuMemsetD2D32Async", d, p, ui, 4, w, h, s, false);
}
CUresult cuMemsetD2D32Async_ptsz(CUdeviceptr d, size_t p, unsigned int ui, size_t w, size_t h, CUstream s)
{
    MEMSET("cuMemsetD2D32Async_ptsz", d, p, ui, 4, w, h, s, true);
}

/* ---- streams ------------------------------------------------------------------- */

CUresult cuStreamCreate(CUstream *phStream, unsigned int Flags) { CALL(SIM_NEED_CTX, cudasim_stream_create(phStream, Flags, 0)); }
CUresult cuStreamCreateWithPriority(CUstream *phStream, unsigned int flags, int priority)
{
    CALL(SIM_NEED_CTX, cudasim_stream_create(phStream, flags, priority));
}
CUresult cuStreamDestroy_v2(CUstream hStream) { CALL(SIM_NEED_CTX, cudasim_stream_destroy(hStream)); }
CUresult cuStreamSynchronize(CUstream hStream) { CALL(SIM_NEED_CTX, cudasim_stream_synchronize(hStream, false)); }
CUresult cuStreamSynchronize_ptsz(CUstream hStream) { CALL(SIM_NEED_CTX, cudasim_stream_synchronize(hStream, true)); }
CUresult cuStreamQuery(CUstream hStream) { CALL(SIM_NEED_CTX, cudasim_stream_query(hStream, false)); }
CUresult cuStreamQuery_ptsz(CUstream hStream) { CALL(SIM_NEED_CTX, cudasim_stream_query(hStream, true)); }
CUresult cuStreamWaitEvent(CUstream hStream, CUevent hEvent, unsigned int Flags)
{
    CALL(SIM_NEED_CTX, cudasim_stream_wait_event(hStream, hEvent, Flags, false));
}
CUresult cuStreamWaitEvent_ptsz(CUstream hStream, CUevent hEvent, unsigned int Flags)
{
    CALL(SIM_NEED_CTX, cudasim_stream_wait_event(hStream, hEvent, Flags, true));
}
CUresult cuStreamGetFlags(CUstream hStream, unsigned int *flags) { CALL(SIM_NEED_CTX, cudasim_stream_get_flags(hStream, flags, false)); }
CUresult cuStreamGetFlags_ptsz(CUstream hStream, unsigned int *flags) { CALL(SIM_NEED_CTX, cudasim_stream_get_flags(hStream, flags, true)); }
CUresult cuStreamGetPriority(CUstream hStream, int *priority) { CALL(SIM_NEED_CTX, cudasim_stream_get_priority(hStream, priority, false)); }
CUresult cuStreamGetPriority_ptsz(CUstream hStream, int *priority) { CALL(SIM_NEED_CTX, cudasim_stream_get_priority(hStream, priority, true)); }
CUresult cuStreamGetCtx(CUstream hStream, CUcontext *pctx) { CALL(SIM_NEED_CTX, cudasim_stream_get_ctx(hStream, pctx, false)); }
CUresult cuStreamGetCtx_ptsz(CUstream hStream, CUcontext *pctx) { CALL(SIM_NEED_CTX, cudasim_stream_get_ctx(hStream, pctx, true)); }
CUresult cuStreamGetId(CUstream hStream, unsigned long long *streamId) { CALL(SIM_NEED_CTX, cudasim_stream_get_id(hStream, streamId, false)); }
CUresult cuStreamGetId_ptsz(CUstream hStream, unsigned long long *streamId) { CALL(SIM_NEED_CTX, cudasim_stream_get_id(hStream, streamId, true)); }
CUresult cuLaunchHostFunc(CUstream hStream, CUhostFn fn, void *userData) { CALL(SIM_NEED_CTX, cudasim_launch_host_func(hStream, fn, userData, false)); }
CUresult cuLaunchHostFunc_ptsz(CUstream hStream, CUhostFn fn, void *userData)
{
    CALL(SIM_NEED_CTX, cudasim_launch_host_func(hStream, fn, userData, true));
}

/* ---- capture and graphs -------------------------------------------------------- */

CUresult cuStreamBeginCapture_v2(CUstream hStream, CUstreamCaptureMode mode) { CALL(SIM_NEED_CTX, cudasim_capture_begin(hStream, mode, false)); }
CUresult cuStreamBeginCapture_v2_ptsz(CUstream hStream, CUstreamCaptureMode mode) { CALL(SIM_NEED_CTX, cudasim_capture_begin(hStream, mode, true)); }
CUresult cuStreamEndCapture(CUstream hStream, CUgraph *phGraph) { CALL(SIM_NEED_CTX, cudasim_capture_end(hStream, phGraph, false)); }
CUresult cuStreamEndCapture_ptsz(CUstream hStream, CUgraph *phGraph) { CALL(SIM_NEED_CTX, cudasim_capture_end(hStream, phGraph, true)); }
CUresult cuStreamIsCapturing(CUstream hStream, CUstreamCaptureStatus *captureStatus)
{
    CALL(SIM_NEED_CTX, cudasim_capture_status(hStream, captureStatus, false));
}
CUresult cuStreamIsCapturing_ptsz(CUstream hStream, CUstreamCaptureStatus *captureStatus)
{
    CALL(SIM_NEED_CTX, cudasim_capture_status(hStream, captureStatus, true));
}
CUresult cuGraphInstantiateWithFlags(CUgraphExec *phGraphExec, CUgraph hGraph, unsigned long long flags)
{
    CALL(SIM_NEED_CTX, cudasim_graph_instantiate(phGraphExec, hGraph, flags));
}
CUresult cuGraphInstantiate_v2(CUgraphExec *phGraphExec, CUgraph hGraph, CUgraphNode *phErrorNode, char *logBuffer,
                               size_t bufferSize)
{
    if (phErrorNode)
        *phErrorNode = NULL;
    if (logBuffer && bufferSize)
        logBuffer[0] = '\0';
    CALL(SIM_NEED_CTX, cudasim_graph_instantiate(phGraphExec, hGraph, 0));
}
CUresult cuGraphLaunch(CUgraphExec hGraphExec, CUstream hStream) { CALL(SIM_NEED_CTX, cudasim_graph_launch(hGraphExec, hStream, false)); }
CUresult cuGraphLaunch_ptsz(CUgraphExec hGraphExec, CUstream hStream) { CALL(SIM_NEED_CTX, cudasim_graph_launch(hGraphExec, hStream, true)); }
CUresult cuGraphExecDestroy(CUgraphExec hGraphExec) { CALL(SIM_NEED_CTX, cudasim_graph_exec_destroy(hGraphExec)); }
CUresult cuGraphDestroy(CUgraph hGraph) { CALL(SIM_NEED_CTX, cudasim_graph_destroy(hGraph)); }

/* ---- events -------------------------------------------------------------------- */

CUresult cuEventCreate(CUevent *phEvent, unsigned int Flags) { CALL(SIM_NEED_CTX, cudasim_event_create(phEvent, Flags)); }
CUresult cuEventRecord(CUevent hEvent, CUstream hStream) { CALL(SIM_NEED_CTX, cudasim_event_record(hEvent, hStream, 0, false)); }
CUresult cuEventRecord_ptsz(CUevent hEvent, CUstream hStream) { CALL(SIM_NEED_CTX, cudasim_event_record(hEvent, hStream, 0, true)); }
CUresult cuEventRecordWithFlags(CUevent hEvent, CUstream hStream, unsigned int flags)
{
    CALL(SIM_NEED_CTX, cudasim_event_record(hEvent, hStream, flags, false));
}
CUresult cuEventRecordWithFlags_ptsz(CUevent hEvent, CUstream hStream, unsigned int flags)
{
    CALL(SIM_NEED_CTX, cudasim_event_record(hEvent, hStream, flags, true));
}
CUresult cuEventSynchronize(CUevent hEvent) { CALL(SIM_NEED_CTX, cudasim_event_synchronize(hEvent)); }
CUresult cuEventQuery(CUevent hEvent) { CALL(SIM_NEED_CTX, cudasim_event_query(hEvent)); }
CUresult cuEventElapsedTime(float *pMilliseconds, CUevent hStart, CUevent hEnd)
{
    CALL(SIM_NEED_CTX, cudasim_event_elapsed(pMilliseconds, hStart, hEnd));
}
CUresult cuEventElapsedTime_v2(float *pMilliseconds, CUevent hStart, CUevent hEnd)
{
    CALL(SIM_NEED_CTX, cudasim_event_elapsed(pMilliseconds, hStart, hEnd));
}
CUresult cuEventDestroy_v2(CUevent hEvent) { CALL(SIM_NEED_CTX, cudasim_event_destroy(hEvent)); }

/* ---- modules, functions, launches ---------------------------------------------- */

CUresult cuModuleLoad(CUmodule *module, const char *fname) { CALL(SIM_NEED_CTX, cudasim_module_load_file(module, fname)); }
CUresult cuModuleLoadData(CUmodule *module, const void *image) { CALL(SIM_NEED_CTX, cudasim_module_load_data(module, image)); }
CUresult cuModuleLoadDataEx(CUmodule *module, const void *image, unsigned int numOptions, CUjit_option *options,
                            void **optionValues)
{
    /* JIT options tune a compiler the simulator does not have. */
    (void)numOptions;
    (void)options;
    (void)optionValues;
    CALL(SIM_NEED_CTX, cudasim_module_load_data(module, image));
}
CUresult cuModuleUnload(CUmodule hmod) { CALL(SIM_NEED_CTX, cudasim_module_unload(hmod)); }
CUresult cuModuleGetFunction(CUfunction *hfunc, CUmodule hmod, const char *name)
{
    CALL(SIM_NEED_CTX, cudasim_module_get_function(hfunc, hmod, name));
}
CUresult cuFuncGetParamInfo(CUfunction func, size_t paramIndex, size_t *paramOffset, size_t *paramSize)
{
    CALL(SIM_NEED_INIT, cudasim_func_param_info(func, paramIndex, paramOffset, paramSize));
}
CUresult cuFuncGetName(const char **name, CUfunction hfunc) { CALL(SIM_NEED_INIT, cudasim_func_name(name, hfunc)); }
CUresult cuFuncGetAttribute(int *pi, CUfunction_attribute attrib, CUfunction hfunc)
{
    CALL(SIM_NEED_INIT, cudasim_func_attribute(pi, attrib, hfunc));
}
CUresult cuFuncSetAttribute(CUfunction hfunc, CUfunction_attribute attrib, int value)
{
    CALL(SIM_NEED_INIT, cudasim_func_set_attribute(hfunc, attrib, value));
}
CUresult cuFuncGetModule(CUmodule *hmod, CUfunction hfunc) { CALL(SIM_NEED_INIT, cudasim_func_module(hmod, hfunc)); }

CUresult cuLaunchKernel(CUfunction f, unsigned int gridDimX, unsigned int gridDimY, unsigned int gridDimZ,
                        unsigned int blockDimX, unsigned int blockDimY, unsigned int blockDimZ,
                        unsigned int sharedMemBytes, CUstream hStream, void **kernelParams, void **extra)
{
    CALL(SIM_NEED_CTX, cudasim_launch("cuLaunchKernel", f, gridDimX, gridDimY, gridDimZ, blockDimX, blockDimY, blockDimZ,
                           sharedMemBytes, hStream, kernelParams, extra, false));
}
CUresult cuLaunchKernel_ptsz(CUfunction f, unsigned int gridDimX, unsigned int gridDimY, unsigned int gridDimZ,
                             unsigned int blockDimX, unsigned int blockDimY, unsigned int blockDimZ,
                             unsigned int sharedMemBytes, CUstream hStream, void **kernelParams, void **extra)
{
    CALL(SIM_NEED_CTX, cudasim_launch("cuLaunchKernel_ptsz", f, gridDimX, gridDimY, gridDimZ, blockDimX, blockDimY,
                           blockDimZ, sharedMemBytes, hStream, kernelParams, extra, true));
}

static CUresult launch_ex(const char *api, const CUlaunchConfig *config, CUfunction f, void **kernelParams,
                          void **extra, bool pt)
{
    if (!config)
        return CUDA_ERROR_INVALID_VALUE;
    /* Attributes (clusters, priorities, cooperative) change scheduling on a GPU, not
     * results; the simulator runs every kernel whole. */
    return cudasim_launch(api, f, config->gridDimX, config->gridDimY, config->gridDimZ, config->blockDimX,
                          config->blockDimY, config->blockDimZ, config->sharedMemBytes, config->hStream,
                          kernelParams, extra, pt);
}

CUresult cuLaunchKernelEx(const CUlaunchConfig *config, CUfunction f, void **kernelParams, void **extra)
{
    CALL(SIM_NEED_CTX, launch_ex("cuLaunchKernelEx", config, f, kernelParams, extra, false));
}
CUresult cuLaunchKernelEx_ptsz(const CUlaunchConfig *config, CUfunction f, void **kernelParams, void **extra)
{
    CALL(SIM_NEED_CTX, launch_ex("cuLaunchKernelEx_ptsz", config, f, kernelParams, extra, true));
}
CUresult cuLaunchCooperativeKernel(CUfunction f, unsigned int gridDimX, unsigned int gridDimY, unsigned int gridDimZ,
                                   unsigned int blockDimX, unsigned int blockDimY, unsigned int blockDimZ,
                                   unsigned int sharedMemBytes, CUstream hStream, void **kernelParams)
{
    CALL(SIM_NEED_CTX, cudasim_launch("cuLaunchCooperativeKernel", f, gridDimX, gridDimY, gridDimZ, blockDimX, blockDimY,
                           blockDimZ, sharedMemBytes, hStream, kernelParams, NULL, false));
}
CUresult cuLaunchCooperativeKernel_ptsz(CUfunction f, unsigned int gridDimX, unsigned int gridDimY,
                                        unsigned int gridDimZ, unsigned int blockDimX, unsigned int blockDimY,
                                        unsigned int blockDimZ, unsigned int sharedMemBytes, CUstream hStream,
                                        void **kernelParams)
{
    CALL(SIM_NEED_CTX, cudasim_launch("cuLaunchCooperativeKernel_ptsz", f, gridDimX, gridDimY, gridDimZ, blockDimX,
                           blockDimY, blockDimZ, sharedMemBytes, hStream, kernelParams, NULL, true));
}

/* ---- tensor maps --------------------------------------------------------------- */

CUresult cuTensorMapEncodeTiled(CUtensorMap *tensorMap, CUtensorMapDataType tensorDataType, cuuint32_t tensorRank,
                                void *globalAddress, const cuuint64_t *globalDim, const cuuint64_t *globalStrides,
                                const cuuint32_t *boxDim, const cuuint32_t *elementStrides,
                                CUtensorMapInterleave interleave, CUtensorMapSwizzle swizzle,
                                CUtensorMapL2promotion l2Promotion, CUtensorMapFloatOOBfill oobFill)
{
    CALL(SIM_NEED_INIT, cudasim_tmap_encode_tiled(tensorMap, tensorDataType, tensorRank, globalAddress, globalDim,
                                      globalStrides, boxDim, elementStrides, interleave, swizzle, l2Promotion,
                                      oobFill));
}
CUresult cuTensorMapEncodeIm2col(CUtensorMap *tensorMap, CUtensorMapDataType tensorDataType, cuuint32_t tensorRank,
                                 void *globalAddress, const cuuint64_t *globalDim, const cuuint64_t *globalStrides,
                                 const int *pixelBoxLowerCorner, const int *pixelBoxUpperCorner,
                                 cuuint32_t channelsPerPixel, cuuint32_t pixelsPerColumn,
                                 const cuuint32_t *elementStrides, CUtensorMapInterleave interleave,
                                 CUtensorMapSwizzle swizzle, CUtensorMapL2promotion l2Promotion,
                                 CUtensorMapFloatOOBfill oobFill)
{
    CALL(SIM_NEED_INIT, cudasim_tmap_encode_im2col(tensorMap, tensorDataType, tensorRank, globalAddress, globalDim,
                                       globalStrides, pixelBoxLowerCorner, pixelBoxUpperCorner, channelsPerPixel,
                                       pixelsPerColumn, elementStrides, interleave, swizzle, l2Promotion,
                                       oobFill));
}
CUresult cuTensorMapReplaceAddress(CUtensorMap *tensorMap, void *globalAddress)
{
    CALL(SIM_NEED_INIT, cudasim_tmap_replace_address(tensorMap, globalAddress));
}
