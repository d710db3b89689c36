/* interpose/wrappers.c: the hand-written hooks of hooks.def. Each one is a thin
 * forward: count, call the real driver, and report what happened to track/.
 * Nothing here decides policy; pass-through is checked first. */
#define _GNU_SOURCE
#include "bs.h"
#include "blockswap.h"

#include <string.h>

#define BS_HOOK(name, pfn) typedef __typeof__(*(pfn)0) bs_fn_##name; BS_EXPORT bs_fn_##name name;
#define BS_PASS(name, pfn, params, args)
#include "interpose/hooks.def"
#undef BS_HOOK
#undef BS_PASS

/* Opens a hook: counts the call, fetches the real function into `real`, and
 * returns what the driver would when the function is missing. */
#define HOOK_BEGIN(name)                                                       \
    bs_count_call(BS_ID_##name);                                               \
    __typeof__(bs_real.name) real = BS_REAL(name);                             \
    if (BS_UNLIKELY(!real))                                                    \
        return bs_missing(BS_ID_##name)

/* True when this call should be tracked: the shim is active and this is not
 * the driver re-entering an exported symbol on our own behalf. */
static inline bool tracking(void)
{
    return bs_active() && !bs_in_hook;
}

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

/* ---- allocations ---- */

static void track_alloc(CUresult r, const CUdeviceptr *dptr, size_t size, int api,
                        CUstream stream)
{
    if (r != CUDA_SUCCESS || !dptr || !*dptr || !tracking())
        return;
    struct bs_alloc_rec rec = {
        .base = *dptr, .size = size, .stream = (uint64_t)(uintptr_t)stream, .api = api,
    };
    if (bs_alloc_map_insert(&rec) == 0)
        bs_stat_add(BS_STAT_ALLOCS, 1);
}

/* A free forgets the record before the driver gets the address back: once it
 * has, another thread's allocation may return the same address. A failed free
 * puts the record back. */
struct untracked {
    bool had;
    struct bs_alloc_rec rec;
};

static struct untracked untrack(CUdeviceptr ptr)
{
    struct untracked u = { false, { 0 } };
    if (ptr && tracking())
        u.had = bs_alloc_map_remove(ptr, &u.rec) == 0;
    return u;
}

static void untrack_done(CUresult r, const struct untracked *u)
{
    if (!u->had)
        return;
    if (r == CUDA_SUCCESS)
        bs_stat_add(BS_STAT_FREES, 1);
    else
        bs_alloc_map_insert(&u->rec);
}

CUresult CUDAAPI cuMemAlloc_v2(CUdeviceptr *dptr, size_t size)
{
    HOOK_BEGIN(cuMemAlloc_v2);
    CUresult r = real(dptr, size);
    track_alloc(r, dptr, size, BLOCKSWAP_API_MEM_ALLOC, NULL);
    return r;
}

CUresult CUDAAPI cuMemAllocPitch_v2(CUdeviceptr *dptr, size_t *pitch, size_t width,
                                    size_t height, unsigned int elem)
{
    HOOK_BEGIN(cuMemAllocPitch_v2);
    CUresult r = real(dptr, pitch, width, height, elem);
    if (r == CUDA_SUCCESS && pitch)
        track_alloc(r, dptr, *pitch * height, BLOCKSWAP_API_MEM_ALLOC_PITCH, NULL);
    return r;
}

CUresult CUDAAPI cuMemAllocAsync(CUdeviceptr *dptr, size_t size, CUstream s)
{
    HOOK_BEGIN(cuMemAllocAsync);
    CUresult r = real(dptr, size, s);
    track_alloc(r, dptr, size, BLOCKSWAP_API_MEM_ALLOC_ASYNC, s);
    return r;
}

CUresult CUDAAPI cuMemAllocAsync_ptsz(CUdeviceptr *dptr, size_t size, CUstream s)
{
    HOOK_BEGIN(cuMemAllocAsync_ptsz);
    CUresult r = real(dptr, size, s);
    track_alloc(r, dptr, size, BLOCKSWAP_API_MEM_ALLOC_ASYNC, s);
    return r;
}

CUresult CUDAAPI cuMemAllocFromPoolAsync(CUdeviceptr *dptr, size_t size,
                                         CUmemoryPool pool, CUstream s)
{
    HOOK_BEGIN(cuMemAllocFromPoolAsync);
    CUresult r = real(dptr, size, pool, s);
    track_alloc(r, dptr, size, BLOCKSWAP_API_MEM_ALLOC_POOL, s);
    return r;
}

CUresult CUDAAPI cuMemAllocFromPoolAsync_ptsz(CUdeviceptr *dptr, size_t size,
                                              CUmemoryPool pool, CUstream s)
{
    HOOK_BEGIN(cuMemAllocFromPoolAsync_ptsz);
    CUresult r = real(dptr, size, pool, s);
    track_alloc(r, dptr, size, BLOCKSWAP_API_MEM_ALLOC_POOL, s);
    return r;
}

CUresult CUDAAPI cuMemFree_v2(CUdeviceptr ptr)
{
    HOOK_BEGIN(cuMemFree_v2);
    struct untracked u = untrack(ptr);
    CUresult r = real(ptr);
    untrack_done(r, &u);
    return r;
}

CUresult CUDAAPI cuMemFreeAsync(CUdeviceptr ptr, CUstream s)
{
    HOOK_BEGIN(cuMemFreeAsync);
    struct untracked u = untrack(ptr);
    CUresult r = real(ptr, s);
    untrack_done(r, &u);
    return r;
}

CUresult CUDAAPI cuMemFreeAsync_ptsz(CUdeviceptr ptr, CUstream s)
{
    HOOK_BEGIN(cuMemFreeAsync_ptsz);
    struct untracked u = untrack(ptr);
    CUresult r = real(ptr, s);
    untrack_done(r, &u);
    return r;
}

/* ---- the application's own VMM: pass through, account mapped bytes ---- */

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
    CUresult r = real(ptr, size, offset, handle, flags);
    if (r == CUDA_SUCCESS && tracking()) {
        struct bs_alloc_rec rec = { .base = ptr, .size = size, .api = BLOCKSWAP_API_VMM_MAP };
        if (bs_alloc_map_insert(&rec) == 0)
            bs_stat_add(BS_STAT_VMM_MAPPED, (int64_t)size);
    }
    return r;
}

CUresult CUDAAPI cuMemUnmap(CUdeviceptr ptr, size_t size)
{
    HOOK_BEGIN(cuMemUnmap);
    /* Forget first, as for frees; an unmap that fails leaves a mapping we no
     * longer follow, which only costs tracking, never correctness here. */
    if (tracking())
        bs_stat_add(BS_STAT_VMM_MAPPED,
                    -(int64_t)bs_alloc_map_remove_range(ptr, size, BLOCKSWAP_API_VMM_MAP));
    return real(ptr, size);
}

/* ---- launches ---- */

static inline void observe(CUfunction f, CUstream s, void **params, void **extra)
{
    if (BS_LIKELY(tracking()))
        bs_launch_observe(f, s, params, extra);
}

CUresult CUDAAPI cuLaunchKernel(CUfunction f, unsigned gx, unsigned gy, unsigned gz,
                                unsigned bx, unsigned by, unsigned bz, unsigned shmem,
                                CUstream s, void **params, void **extra)
{
    HOOK_BEGIN(cuLaunchKernel);
    observe(f, s, params, extra);
    return real(f, gx, gy, gz, bx, by, bz, shmem, s, params, extra);
}

CUresult CUDAAPI cuLaunchKernel_ptsz(CUfunction f, unsigned gx, unsigned gy, unsigned gz,
                                     unsigned bx, unsigned by, unsigned bz,
                                     unsigned shmem, CUstream s, void **params,
                                     void **extra)
{
    HOOK_BEGIN(cuLaunchKernel_ptsz);
    observe(f, s, params, extra);
    return real(f, gx, gy, gz, bx, by, bz, shmem, s, params, extra);
}

CUresult CUDAAPI cuLaunchKernelEx(const CUlaunchConfig *cfg, CUfunction f,
                                  void **params, void **extra)
{
    HOOK_BEGIN(cuLaunchKernelEx);
    observe(f, cfg ? cfg->hStream : NULL, params, extra);
    return real(cfg, f, params, extra);
}

CUresult CUDAAPI cuLaunchKernelEx_ptsz(const CUlaunchConfig *cfg, CUfunction f,
                                       void **params, void **extra)
{
    HOOK_BEGIN(cuLaunchKernelEx_ptsz);
    observe(f, cfg ? cfg->hStream : NULL, params, extra);
    return real(cfg, f, params, extra);
}

CUresult CUDAAPI cuLaunchCooperativeKernel(CUfunction f, unsigned gx, unsigned gy,
                                           unsigned gz, unsigned bx, unsigned by,
                                           unsigned bz, unsigned shmem, CUstream s,
                                           void **params)
{
    HOOK_BEGIN(cuLaunchCooperativeKernel);
    observe(f, s, params, NULL);
    return real(f, gx, gy, gz, bx, by, bz, shmem, s, params);
}

CUresult CUDAAPI cuLaunchCooperativeKernel_ptsz(CUfunction f, unsigned gx, unsigned gy,
                                                unsigned gz, unsigned bx, unsigned by,
                                                unsigned bz, unsigned shmem, CUstream s,
                                                void **params)
{
    HOOK_BEGIN(cuLaunchCooperativeKernel_ptsz);
    observe(f, s, params, NULL);
    return real(f, gx, gy, gz, bx, by, bz, shmem, s, params);
}

/* ---- graphs: counted; their kernels bypass the launch hooks ---- */

static void note_graph_launch(void)
{
    if (!tracking())
        return;
    bs_stat_add(BS_STAT_GRAPH_LAUNCHES, 1);
    bs_log_limited(1, BS_LOG_INFO, "the application launches CUDA graphs: kernels "
                   "inside them are not seen by blockswap, so memory they use must "
                   "stay resident");
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
    return real(s, mode);
}

CUresult CUDAAPI cuStreamBeginCapture_v2_ptsz(CUstream s, CUstreamCaptureMode mode)
{
    HOOK_BEGIN(cuStreamBeginCapture_v2_ptsz);
    return real(s, mode);
}

CUresult CUDAAPI cuStreamEndCapture(CUstream s, CUgraph *graph)
{
    HOOK_BEGIN(cuStreamEndCapture);
    return real(s, graph);
}

CUresult CUDAAPI cuStreamEndCapture_ptsz(CUstream s, CUgraph *graph)
{
    HOOK_BEGIN(cuStreamEndCapture_ptsz);
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
