/* interpose/copies.c: the copy and memset hooks. Each makes the managed memory it
 * touches valid for the operation (page/), then lets the driver do it; a copy between
 * the host and a managed allocation that is not resident uses its host backing
 * instead; a load goes straight to VRAM while it has room (bs_page_htod decides). */
#define _GNU_SOURCE
#include "interpose/hook.h"

/* A copy between the host and device memory dev: page_call serves it from host
 * backing when dev is managed and not resident; otherwise dev is made resident. */
#define PAGED_HOST(page_call, dev, written, s, flags, call)                    \
    do {                                                                       \
        if (paging()) {                                                        \
            CUresult r_ = (page_call);                                         \
            if (r_ != BS_PAGE_NOT_HANDLED && r_ != BS_PAGE_DIRECT)             \
                return r_;                                                     \
            uint64_t a_[1] = { dev };                                          \
            if (r_ == BS_PAGE_NOT_HANDLED &&                                   \
                (r_ = bs_page_begin(a_, 1, written, s, flags)) != CUDA_SUCCESS) \
                return r_;                                                     \
            r_ = (call);                                                       \
            bs_page_end();                                                     \
            return r_;                                                         \
        }                                                                      \
        return (call);                                                         \
    } while (0)
#define PAGED_HTOD(dst, src, n, s, flags, call)                                \
    PAGED_HOST(bs_page_htod(dst, src, n, s, flags), dst, 1, s, flags, call)
#define PAGED_DTOH(dst, src, n, s, flags, call)                                \
    PAGED_HOST(bs_page_dtoh(dst, src, n, s, flags), src, 0, s, flags, call)

/* Any other operation: the memory it names is made resident first. write_mask has
 * bit i set when addrs[i] is written. */
#define PAGED_ACCESS(addrs, write_mask, s, flags, call)                        \
    do {                                                                       \
        if (paging()) {                                                        \
            CUresult r_ = bs_page_begin(addrs, (int)BS_ARRAY_SIZE(addrs),      \
                                        write_mask, s, flags);                 \
            if (r_ != CUDA_SUCCESS)                                            \
                return r_;                                                     \
            r_ = (call);                                                       \
            bs_page_end();                                                     \
            return r_;                                                         \
        }                                                                      \
        return (call);                                                         \
    } while (0)

#define PTSZ BS_PAGE_PTSZ

/* ---- host to device, device to host ---- */

#define HTOD_SYNC(name, flags)                                                 \
    CUresult CUDAAPI name(CUdeviceptr dst, const void *src, size_t n)          \
    {                                                                          \
        HOOK_BEGIN(name);                                                      \
        PAGED_HTOD(dst, src, n, NULL, flags, real(dst, src, n));               \
    }
#define HTOD_ASYNC(name, flags)                                                \
    CUresult CUDAAPI name(CUdeviceptr dst, const void *src, size_t n, CUstream s) \
    {                                                                          \
        HOOK_BEGIN(name);                                                      \
        PAGED_HTOD(dst, src, n, s, flags, real(dst, src, n, s));               \
    }
#define DTOH_SYNC(name, flags)                                                 \
    CUresult CUDAAPI name(void *dst, CUdeviceptr src, size_t n)                \
    {                                                                          \
        HOOK_BEGIN(name);                                                      \
        PAGED_DTOH(dst, src, n, NULL, flags, real(dst, src, n));               \
    }
#define DTOH_ASYNC(name, flags)                                                \
    CUresult CUDAAPI name(void *dst, CUdeviceptr src, size_t n, CUstream s)    \
    {                                                                          \
        HOOK_BEGIN(name);                                                      \
        PAGED_DTOH(dst, src, n, s, flags, real(dst, src, n, s));               \
    }

HTOD_SYNC(cuMemcpyHtoD_v2, 0)
HTOD_SYNC(cuMemcpyHtoD_v2_ptds, PTSZ)
HTOD_ASYNC(cuMemcpyHtoDAsync_v2, 0)
HTOD_ASYNC(cuMemcpyHtoDAsync_v2_ptsz, PTSZ)
DTOH_SYNC(cuMemcpyDtoH_v2, 0)
DTOH_SYNC(cuMemcpyDtoH_v2_ptds, PTSZ)
DTOH_ASYNC(cuMemcpyDtoHAsync_v2, 0)
DTOH_ASYNC(cuMemcpyDtoHAsync_v2_ptsz, PTSZ)

/* ---- device to device and unified-address copies: both sides resident ---- */

#define DTOD_SYNC(name, flags)                                                 \
    CUresult CUDAAPI name(CUdeviceptr dst, CUdeviceptr src, size_t n)          \
    {                                                                          \
        HOOK_BEGIN(name);                                                      \
        uint64_t a[2] = { dst, src };                                          \
        PAGED_ACCESS(a, 1, NULL, flags, real(dst, src, n));                    \
    }
#define DTOD_ASYNC(name, flags)                                                \
    CUresult CUDAAPI name(CUdeviceptr dst, CUdeviceptr src, size_t n, CUstream s) \
    {                                                                          \
        HOOK_BEGIN(name);                                                      \
        uint64_t a[2] = { dst, src };                                          \
        PAGED_ACCESS(a, 1, s, flags, real(dst, src, n, s));                    \
    }

DTOD_SYNC(cuMemcpyDtoD_v2, 0)
DTOD_SYNC(cuMemcpyDtoD_v2_ptds, PTSZ)
DTOD_ASYNC(cuMemcpyDtoDAsync_v2, 0)
DTOD_ASYNC(cuMemcpyDtoDAsync_v2_ptsz, PTSZ)

/* cuMemcpy(Async) take unified addresses: a host side allows the host-backing path
 * (bs_page_is_host). */
#define UNIFIED_SYNC(name, flags)                                              \
    CUresult CUDAAPI name(CUdeviceptr dst, CUdeviceptr src, size_t n)          \
    {                                                                          \
        HOOK_BEGIN(name);                                                      \
        if (paging() && bs_page_is_host(src))                                          \
            PAGED_HTOD(dst, (const void *)src, n, NULL, flags, real(dst, src, n)); \
        if (paging() && bs_page_is_host(dst))                                          \
            PAGED_DTOH((void *)dst, src, n, NULL, flags, real(dst, src, n));   \
        uint64_t a[2] = { dst, src };                                          \
        PAGED_ACCESS(a, 1, NULL, flags, real(dst, src, n));                    \
    }
#define UNIFIED_ASYNC(name, flags)                                             \
    CUresult CUDAAPI name(CUdeviceptr dst, CUdeviceptr src, size_t n, CUstream s) \
    {                                                                          \
        HOOK_BEGIN(name);                                                      \
        if (paging() && bs_page_is_host(src))                                          \
            PAGED_HTOD(dst, (const void *)src, n, s, flags, real(dst, src, n, s)); \
        if (paging() && bs_page_is_host(dst))                                          \
            PAGED_DTOH((void *)dst, src, n, s, flags, real(dst, src, n, s));   \
        uint64_t a[2] = { dst, src };                                          \
        PAGED_ACCESS(a, 1, s, flags, real(dst, src, n, s));                    \
    }

UNIFIED_SYNC(cuMemcpy, 0)
UNIFIED_SYNC(cuMemcpy_ptds, PTSZ)
UNIFIED_ASYNC(cuMemcpyAsync, 0)
UNIFIED_ASYNC(cuMemcpyAsync_ptsz, PTSZ)

/* ---- 2D and 3D copies: the device sides named by the descriptor ---- */

static inline uint64_t device_side(CUmemorytype type, CUdeviceptr dev)
{
    return type == CU_MEMORYTYPE_DEVICE || type == CU_MEMORYTYPE_UNIFIED ? dev : 0;
}

#define COPY_ND_SYNC(name, T, flags)                                           \
    CUresult CUDAAPI name(const T *p)                                          \
    {                                                                          \
        HOOK_BEGIN(name);                                                      \
        uint64_t a[2] = { p ? device_side(p->dstMemoryType, p->dstDevice) : 0, \
                          p ? device_side(p->srcMemoryType, p->srcDevice) : 0 }; \
        PAGED_ACCESS(a, 1, NULL, flags, real(p));                              \
    }
#define COPY_ND_ASYNC(name, T, flags)                                          \
    CUresult CUDAAPI name(const T *p, CUstream s)                              \
    {                                                                          \
        HOOK_BEGIN(name);                                                      \
        uint64_t a[2] = { p ? device_side(p->dstMemoryType, p->dstDevice) : 0, \
                          p ? device_side(p->srcMemoryType, p->srcDevice) : 0 }; \
        PAGED_ACCESS(a, 1, s, flags, real(p, s));                              \
    }

COPY_ND_SYNC(cuMemcpy2D_v2, CUDA_MEMCPY2D, 0)
COPY_ND_SYNC(cuMemcpy2D_v2_ptds, CUDA_MEMCPY2D, PTSZ)
COPY_ND_SYNC(cuMemcpy2DUnaligned_v2, CUDA_MEMCPY2D, 0)
COPY_ND_SYNC(cuMemcpy2DUnaligned_v2_ptds, CUDA_MEMCPY2D, PTSZ)
COPY_ND_ASYNC(cuMemcpy2DAsync_v2, CUDA_MEMCPY2D, 0)
COPY_ND_ASYNC(cuMemcpy2DAsync_v2_ptsz, CUDA_MEMCPY2D, PTSZ)
COPY_ND_SYNC(cuMemcpy3D_v2, CUDA_MEMCPY3D, 0)
COPY_ND_SYNC(cuMemcpy3D_v2_ptds, CUDA_MEMCPY3D, PTSZ)
COPY_ND_ASYNC(cuMemcpy3DAsync_v2, CUDA_MEMCPY3D, 0)
COPY_ND_ASYNC(cuMemcpy3DAsync_v2_ptsz, CUDA_MEMCPY3D, PTSZ)

/* ---- memsets ---- */

#define MEMSET_SYNC(name, V, flags)                                            \
    CUresult CUDAAPI name(CUdeviceptr d, V v, size_t n)                        \
    {                                                                          \
        HOOK_BEGIN(name);                                                      \
        uint64_t a[1] = { d };                                                 \
        PAGED_ACCESS(a, 1, NULL, flags, real(d, v, n));                        \
    }
#define MEMSET_ASYNC(name, V, flags)                                           \
    CUresult CUDAAPI name(CUdeviceptr d, V v, size_t n, CUstream s)            \
    {                                                                          \
        HOOK_BEGIN(name);                                                      \
        uint64_t a[1] = { d };                                                 \
        PAGED_ACCESS(a, 1, s, flags, real(d, v, n, s));                        \
    }
#define MEMSET2D_SYNC(name, V, flags)                                          \
    CUresult CUDAAPI name(CUdeviceptr d, size_t pitch, V v, size_t w, size_t h) \
    {                                                                          \
        HOOK_BEGIN(name);                                                      \
        uint64_t a[1] = { d };                                                 \
        PAGED_ACCESS(a, 1, NULL, flags, real(d, pitch, v, w, h));              \
    }
#define MEMSET2D_ASYNC(name, V, flags)                                         \
    CUresult CUDAAPI name(CUdeviceptr d, size_t pitch, V v, size_t w, size_t h, \
                          CUstream s)                                          \
    {                                                                          \
        HOOK_BEGIN(name);                                                      \
        uint64_t a[1] = { d };                                                 \
        PAGED_ACCESS(a, 1, s, flags, real(d, pitch, v, w, h, s));              \
    }

MEMSET_SYNC(cuMemsetD8_v2, unsigned char, 0)
MEMSET_SYNC(cuMemsetD8_v2_ptds, unsigned char, PTSZ)
MEMSET_SYNC(cuMemsetD16_v2, unsigned short, 0)
MEMSET_SYNC(cuMemsetD16_v2_ptds, unsigned short, PTSZ)
MEMSET_SYNC(cuMemsetD32_v2, unsigned int, 0)
MEMSET_SYNC(cuMemsetD32_v2_ptds, unsigned int, PTSZ)
MEMSET_ASYNC(cuMemsetD8Async, unsigned char, 0)
MEMSET_ASYNC(cuMemsetD8Async_ptsz, unsigned char, PTSZ)
MEMSET_ASYNC(cuMemsetD16Async, unsigned short, 0)
MEMSET_ASYNC(cuMemsetD16Async_ptsz, unsigned short, PTSZ)
MEMSET_ASYNC(cuMemsetD32Async, unsigned int, 0)
MEMSET_ASYNC(cuMemsetD32Async_ptsz, unsigned int, PTSZ)
MEMSET2D_SYNC(cuMemsetD2D8_v2, unsigned char, 0)
MEMSET2D_SYNC(cuMemsetD2D8_v2_ptds, unsigned char, PTSZ)
MEMSET2D_SYNC(cuMemsetD2D16_v2, unsigned short, 0)
MEMSET2D_SYNC(cuMemsetD2D16_v2_ptds, unsigned short, PTSZ)
MEMSET2D_SYNC(cuMemsetD2D32_v2, unsigned int, 0)
MEMSET2D_SYNC(cuMemsetD2D32_v2_ptds, unsigned int, PTSZ)
MEMSET2D_ASYNC(cuMemsetD2D8Async, unsigned char, 0)
MEMSET2D_ASYNC(cuMemsetD2D8Async_ptsz, unsigned char, PTSZ)
MEMSET2D_ASYNC(cuMemsetD2D16Async, unsigned short, 0)
MEMSET2D_ASYNC(cuMemsetD2D16Async_ptsz, unsigned short, PTSZ)
MEMSET2D_ASYNC(cuMemsetD2D32Async, unsigned int, 0)
MEMSET2D_ASYNC(cuMemsetD2D32Async_ptsz, unsigned int, PTSZ)
