/* interpose/wrappers.c: the hand-written hooks of hooks.def. Each one is a thin
 * forward: count, check pass-through, and around the real driver call tell page/ (which
 * decides what is managed, charged and made resident) or track/ what happened. */
#define _GNU_SOURCE
#include "interpose/hook.h"
#include "blockswap.h"

#include <string.h>

/* ---- lookup ---- */

CUresult CUDAAPI cuGetProcAddress(const char *symbol, void **pfn, int version,
                                  cuuint64_t flags)
{
    HOOK_BEGIN(cuGetProcAddress);
    CUresult r = real(symbol, pfn, version, flags);
    if (r == CUDA_SUCCESS && pfn)
        *pfn = bs_wrap_pointer(*pfn);
    return r;
}

CUresult CUDAAPI cuGetProcAddress_v2(const char *symbol, void **pfn, int version,
                                     cuuint64_t flags,
                                     CUdriverProcAddressQueryResult *status)
{
    HOOK_BEGIN(cuGetProcAddress_v2);
    CUresult r = real(symbol, pfn, version, flags, status);
    if (r == CUDA_SUCCESS && pfn)
        *pfn = bs_wrap_pointer(*pfn);
    return r;
}

/* ---- allocations: page/ says what is managed and how the rest is charged ---- */

/* A managed allocation is the first thing for blockswapctl to control. */
static CUresult alloc_done(CUresult r, CUdeviceptr *dptr, size_t size, int api, CUstream s)
{
    bs_page_alloc_end(r, dptr, size, api, s);
    return r;
}

#define ALLOC_BODY(call, size, api, s)                                         \
    do {                                                                       \
        if (BS_UNLIKELY(standing_aside()))                                     \
            return (call);                                                     \
        CUresult r_ = bs_page_alloc_begin(dptr, size, api, s);                 \
        if (r_ != BS_PAGE_NOT_HANDLED) {                                       \
            if (r_ == CUDA_SUCCESS)                                            \
                bs_control_start();                                            \
            return r_;                                                         \
        }                                                                      \
        return alloc_done((call), dptr, size, api, s);                         \
    } while (0)

#define FREE_BODY(call, s, flags)                                              \
    do {                                                                       \
        if (!tracking())                                                       \
            return (call);                                                     \
        struct bs_page_free f_;                                                \
        CUresult r_ = bs_page_free_begin(ptr, s, flags, &f_);                  \
        if (r_ != BS_PAGE_NOT_HANDLED)                                         \
            return r_;                                                         \
        r_ = (call);                                                           \
        bs_page_free_end(r_, &f_);                                             \
        return r_;                                                             \
    } while (0)

CUresult CUDAAPI cuMemAlloc_v2(CUdeviceptr *dptr, size_t size)
{
    HOOK_BEGIN(cuMemAlloc_v2);
    ALLOC_BODY(real(dptr, size), size, BLOCKSWAP_API_MEM_ALLOC, NULL);
}

CUresult CUDAAPI cuMemAllocPitch_v2(CUdeviceptr *dptr, size_t *pitch, size_t width,
                                    size_t height, unsigned int elem)
{
    HOOK_BEGIN(cuMemAllocPitch_v2);
    if (BS_UNLIKELY(standing_aside()))
        return real(dptr, pitch, width, height, elem);
    CUresult r = bs_page_alloc_pitch_begin(dptr, pitch, width, height, elem);
    if (r != BS_PAGE_NOT_HANDLED) {
        if (r == CUDA_SUCCESS)
            bs_control_start();
        return r;
    }
    r = real(dptr, pitch, width, height, elem);
    bs_page_alloc_pitch_end(r, dptr, pitch, width, height);
    return r;
}

CUresult CUDAAPI cuMemAllocAsync(CUdeviceptr *dptr, size_t size, CUstream s)
{
    HOOK_BEGIN(cuMemAllocAsync);
    ALLOC_BODY(real(dptr, size, s), size, BLOCKSWAP_API_MEM_ALLOC_ASYNC, s);
}

CUresult CUDAAPI cuMemAllocAsync_ptsz(CUdeviceptr *dptr, size_t size, CUstream s)
{
    HOOK_BEGIN(cuMemAllocAsync_ptsz);
    ALLOC_BODY(real(dptr, size, s), size, BLOCKSWAP_API_MEM_ALLOC_ASYNC, s);
}

CUresult CUDAAPI cuMemAllocFromPoolAsync(CUdeviceptr *dptr, size_t size,
                                         CUmemoryPool pool, CUstream s)
{
    HOOK_BEGIN(cuMemAllocFromPoolAsync);
    ALLOC_BODY(real(dptr, size, pool, s), size, BLOCKSWAP_API_MEM_ALLOC_POOL, s);
}

CUresult CUDAAPI cuMemAllocFromPoolAsync_ptsz(CUdeviceptr *dptr, size_t size,
                                              CUmemoryPool pool, CUstream s)
{
    HOOK_BEGIN(cuMemAllocFromPoolAsync_ptsz);
    ALLOC_BODY(real(dptr, size, pool, s), size, BLOCKSWAP_API_MEM_ALLOC_POOL, s);
}

CUresult CUDAAPI cuMemFree_v2(CUdeviceptr ptr)
{
    HOOK_BEGIN(cuMemFree_v2);
    FREE_BODY(real(ptr), NULL, 0);
}

CUresult CUDAAPI cuMemFreeAsync(CUdeviceptr ptr, CUstream s)
{
    HOOK_BEGIN(cuMemFreeAsync);
    FREE_BODY(real(ptr, s), s, BS_PAGE_STREAM_ORDERED);
}

CUresult CUDAAPI cuMemFreeAsync_ptsz(CUdeviceptr ptr, CUstream s)
{
    HOOK_BEGIN(cuMemFreeAsync_ptsz);
    FREE_BODY(real(ptr, s), s, BS_PAGE_STREAM_ORDERED | BS_PAGE_PTSZ);
}

/* What an application that sizes its work by free VRAM should see (see
 * BLOCKSWAP_MEMINFO): managed memory needs VRAM only while it is used. */
CUresult CUDAAPI cuMemGetInfo_v2(size_t *free_b, size_t *total)
{
    HOOK_BEGIN(cuMemGetInfo_v2);
    CUresult r = real(free_b, total);
    if (r == CUDA_SUCCESS && free_b && total && !standing_aside())
        bs_page_meminfo(free_b, total);
    return r;
}

/* ---- the application's own VMM: its mappings are charged while mapped ---- */

CUresult CUDAAPI cuMemCreate(CUmemGenericAllocationHandle *handle, size_t size,
                             const CUmemAllocationProp *prop, unsigned long long flags)
{
    HOOK_BEGIN(cuMemCreate);
    return real(handle, size, prop, flags);
}

CUresult CUDAAPI cuMemRelease(CUmemGenericAllocationHandle handle)
{
    HOOK_BEGIN(cuMemRelease);
    return real(handle);
}

CUresult CUDAAPI cuMemMap(CUdeviceptr ptr, size_t size, size_t offset,
                          CUmemGenericAllocationHandle handle, unsigned long long flags)
{
    HOOK_BEGIN(cuMemMap);
    if (BS_UNLIKELY(standing_aside()))
        return real(ptr, size, offset, handle, flags);
    CUresult r = bs_page_map_begin(size);
    if (r != BS_PAGE_NOT_HANDLED)
        return r;
    r = real(ptr, size, offset, handle, flags);
    bs_page_map_end(r, ptr, size);
    return r;
}

CUresult CUDAAPI cuMemUnmap(CUdeviceptr ptr, size_t size)
{
    HOOK_BEGIN(cuMemUnmap);
    if (tracking())
        bs_page_unmap_begin(ptr, size);
    return real(ptr, size);
}

/* ---- launches ---- */

/* Scans the launch and makes the managed memory it points into resident. On success
 * with *locked set, the page lock is held until the launch has been issued. */
static inline CUresult launch_begin(CUfunction f, CUstream s, void **params, void **extra,
                                    unsigned flags, bool *locked)
{
    *locked = false;
    if (BS_UNLIKELY(!tracking()))
        return CUDA_SUCCESS;
    const struct bs_launch_set *set = bs_launch_observe(f, params, extra);
    /* Not scanned (no layout now, or no memory): it could touch evicted memory and
     * end the context, so it fails as a launch short of resources would. */
    if (BS_UNLIKELY(!set))
        return bs_page_managed_any() ? CUDA_ERROR_OUT_OF_MEMORY : CUDA_SUCCESS;
    if (!set->n || !bs_page_managed_any())
        return CUDA_SUCCESS;
    CUresult r = bs_page_begin(set->bases, set->n, ~0ull, s, flags | BS_PAGE_BASES);
    *locked = r == CUDA_SUCCESS;
    return r;
}

#define LAUNCH_BODY(s, params, extra, flags, call)                             \
    do {                                                                       \
        bool locked_;                                                          \
        CUresult r_ = launch_begin(f, s, params, extra, flags, &locked_);      \
        if (r_ != CUDA_SUCCESS)                                                \
            return r_;                                                         \
        r_ = (call);                                                           \
        if (locked_)                                                           \
            bs_page_end();                                                     \
        return r_;                                                             \
    } while (0)

CUresult CUDAAPI cuLaunchKernel(CUfunction f, unsigned gx, unsigned gy, unsigned gz,
                                unsigned bx, unsigned by, unsigned bz, unsigned shmem,
                                CUstream s, void **params, void **extra)
{
    HOOK_BEGIN(cuLaunchKernel);
    LAUNCH_BODY(s, params, extra, 0, real(f, gx, gy, gz, bx, by, bz, shmem, s, params, extra));
}

CUresult CUDAAPI cuLaunchKernel_ptsz(CUfunction f, unsigned gx, unsigned gy, unsigned gz,
                                     unsigned bx, unsigned by, unsigned bz,
                                     unsigned shmem, CUstream s, void **params,
                                     void **extra)
{
    HOOK_BEGIN(cuLaunchKernel_ptsz);
    LAUNCH_BODY(s, params, extra, BS_PAGE_PTSZ,
                real(f, gx, gy, gz, bx, by, bz, shmem, s, params, extra));
}

CUresult CUDAAPI cuLaunchKernelEx(const CUlaunchConfig *cfg, CUfunction f,
                                  void **params, void **extra)
{
    HOOK_BEGIN(cuLaunchKernelEx);
    LAUNCH_BODY(cfg ? cfg->hStream : NULL, params, extra, 0, real(cfg, f, params, extra));
}

CUresult CUDAAPI cuLaunchKernelEx_ptsz(const CUlaunchConfig *cfg, CUfunction f,
                                       void **params, void **extra)
{
    HOOK_BEGIN(cuLaunchKernelEx_ptsz);
    LAUNCH_BODY(cfg ? cfg->hStream : NULL, params, extra, BS_PAGE_PTSZ,
                real(cfg, f, params, extra));
}

CUresult CUDAAPI cuLaunchCooperativeKernel(CUfunction f, unsigned gx, unsigned gy,
                                           unsigned gz, unsigned bx, unsigned by,
                                           unsigned bz, unsigned shmem, CUstream s,
                                           void **params)
{
    HOOK_BEGIN(cuLaunchCooperativeKernel);
    LAUNCH_BODY(s, params, NULL, 0, real(f, gx, gy, gz, bx, by, bz, shmem, s, params));
}

CUresult CUDAAPI cuLaunchCooperativeKernel_ptsz(CUfunction f, unsigned gx, unsigned gy,
                                                unsigned gz, unsigned bx, unsigned by,
                                                unsigned bz, unsigned shmem, CUstream s,
                                                void **params)
{
    HOOK_BEGIN(cuLaunchCooperativeKernel_ptsz);
    LAUNCH_BODY(s, params, NULL, BS_PAGE_PTSZ,
                real(f, gx, gy, gz, bx, by, bz, shmem, s, params));
}

/* ---- graphs: counted; their kernels bypass the launch hooks ---- */

static void note_graph_launch(void)
{
    if (!tracking())
        return;
    bs_stat_add(BS_STAT_GRAPH_LAUNCHES, 1);
    bs_log_limited(1, BS_LOG_INFO, "the application launches CUDA graphs: kernels "
                   "inside them are not seen by blockswap; memory captured launches "
                   "pointed into stays resident");
}

CUresult CUDAAPI cuGraphLaunch(CUgraphExec g, CUstream s)
{
    HOOK_BEGIN(cuGraphLaunch);
    note_graph_launch();
    return real(g, s);
}

CUresult CUDAAPI cuGraphLaunch_ptsz(CUgraphExec g, CUstream s)
{
    HOOK_BEGIN(cuGraphLaunch_ptsz);
    note_graph_launch();
    return real(g, s);
}

CUresult CUDAAPI cuStreamBeginCapture_v2(CUstream s, CUstreamCaptureMode mode)
{
    HOOK_BEGIN(cuStreamBeginCapture_v2);
    CUresult r = real(s, mode);
    if (r == CUDA_SUCCESS && tracking())
        bs_page_capture(s, 0, true);
    return r;
}

CUresult CUDAAPI cuStreamBeginCapture_v2_ptsz(CUstream s, CUstreamCaptureMode mode)
{
    HOOK_BEGIN(cuStreamBeginCapture_v2_ptsz);
    CUresult r = real(s, mode);
    if (r == CUDA_SUCCESS && tracking())
        bs_page_capture(s, BS_PAGE_PTSZ, true);
    return r;
}

/* Before the driver forgets s: it completes the work still queued on s all the same. */
CUresult CUDAAPI cuStreamDestroy_v2(CUstream s)
{
    HOOK_BEGIN(cuStreamDestroy_v2);
    if (tracking())
        bs_page_stream_gone(s);
    return real(s);
}

CUresult CUDAAPI cuStreamEndCapture(CUstream s, CUgraph *graph)
{
    HOOK_BEGIN(cuStreamEndCapture);
    if (tracking())
        bs_page_capture(s, 0, false);
    return real(s, graph);
}

CUresult CUDAAPI cuStreamEndCapture_ptsz(CUstream s, CUgraph *graph)
{
    HOOK_BEGIN(cuStreamEndCapture_ptsz);
    if (tracking())
        bs_page_capture(s, BS_PAGE_PTSZ, false);
    return real(s, graph);
}

/* ---- TMA descriptors ---- */

CUresult CUDAAPI cuTensorMapEncodeTiled(CUtensorMap *map, CUtensorMapDataType type,
                                        cuuint32_t rank, void *global,
                                        const cuuint64_t *dims, const cuuint64_t *strides,
                                        const cuuint32_t *box, const cuuint32_t *estrides,
                                        CUtensorMapInterleave il, CUtensorMapSwizzle sw,
                                        CUtensorMapL2promotion l2,
                                        CUtensorMapFloatOOBfill oob)
{
    HOOK_BEGIN(cuTensorMapEncodeTiled);
    CUresult r = real(map, type, rank, global, dims, strides, box, estrides, il, sw, l2, oob);
    if (r == CUDA_SUCCESS && map && tracking())
        bs_tensormap_record(map, global);
    return r;
}

CUresult CUDAAPI cuTensorMapEncodeIm2col(CUtensorMap *map, CUtensorMapDataType type,
                                         cuuint32_t rank, void *global,
                                         const cuuint64_t *dims, const cuuint64_t *strides,
                                         const int *lower, const int *upper,
                                         cuuint32_t channels, cuuint32_t pixels,
                                         const cuuint32_t *estrides,
                                         CUtensorMapInterleave il, CUtensorMapSwizzle sw,
                                         CUtensorMapL2promotion l2,
                                         CUtensorMapFloatOOBfill oob)
{
    HOOK_BEGIN(cuTensorMapEncodeIm2col);
    CUresult r = real(map, type, rank, global, dims, strides, lower, upper, channels,
                      pixels, estrides, il, sw, l2, oob);
    if (r == CUDA_SUCCESS && map && tracking())
        bs_tensormap_record(map, global);
    return r;
}

/* A descriptor moved to another tensor without a new encode: record its new bytes. */
CUresult CUDAAPI cuTensorMapReplaceAddress(CUtensorMap *map, void *global)
{
    HOOK_BEGIN(cuTensorMapReplaceAddress);
    CUresult r = real(map, global);
    if (r == CUDA_SUCCESS && map && tracking())
        bs_tensormap_record(map, global);
    return r;
}

/* ---- unloads invalidate the launch path's parameter-layout cache ---- */

CUresult CUDAAPI cuModuleUnload(CUmodule mod)
{
    HOOK_BEGIN(cuModuleUnload);
    CUresult r = real(mod);
    if (r == CUDA_SUCCESS && tracking())
        bs_launch_forget_functions();
    return r;
}

CUresult CUDAAPI cuLibraryUnload(CUlibrary lib)
{
    HOOK_BEGIN(cuLibraryUnload);
    CUresult r = real(lib);
    if (r == CUDA_SUCCESS && tracking())
        bs_launch_forget_functions();
    return r;
}
