/* Simulated device memory: host memory at the same address (mmap), so kernels touch
 * it directly. Keeps the map of accessible ranges and VMM reservations that every
 * operation is validated against before it touches anything, the capacity
 * (CUDASIM_VRAM) shared by cuMemAlloc* and cuMemCreate, pinned host memory, pools,
 * and the VMM calls (reservations, memfd-backed physical handles, mappings). */
#define _GNU_SOURCE
#include "sim.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

struct sim_phys {
    uint32_t magic;
    int fd;
    size_t size;
    int refs; /* cuMemCreate + cuMemRetainAllocationHandle - cuMemRelease */
    int maps; /* live cuMemMap mappings */
    CUmemAllocationProp prop;
};

static size_t page_size(void)
{
    static size_t ps;
    if (!ps)
        ps = (size_t)sysconf(_SC_PAGESIZE);
    return ps;
}

static bool round_up(size_t n, size_t align, size_t *out)
{
    if (n > SIZE_MAX - (align - 1))
        return false;
    *out = (n + align - 1) / align * align;
    return true;
}

bool cudasim_is_device_kind(enum sim_range_kind k)
{
    return k == SIM_RANGE_DEVICE || k == SIM_RANGE_ASYNC || k == SIM_RANGE_VMM;
}

/* ---- the range map ------------------------------------------------------------- */

/* Index of the last range starting at or below addr, or -1. */
static ptrdiff_t range_floor(uintptr_t addr)
{
    ptrdiff_t lo = 0, hi = (ptrdiff_t)G.nranges - 1, best = -1;
    while (lo <= hi) {
        ptrdiff_t mid = lo + (hi - lo) / 2;
        if (G.ranges[mid]->start <= addr) {
            best = mid;
            lo = mid + 1;
        } else
            hi = mid - 1;
    }
    return best;
}

struct sim_range *cudasim_range_find(uintptr_t addr)
{
    ptrdiff_t i = range_floor(addr);
    if (i < 0 || addr >= G.ranges[i]->end)
        return NULL;
    return G.ranges[i];
}

/* True when [start, end) overlaps no range. */
static bool range_free(uintptr_t start, uintptr_t end)
{
    ptrdiff_t i = range_floor(end - 1);
    return i < 0 || G.ranges[i]->end <= start;
}

static struct sim_range *range_add(uintptr_t start, size_t len, enum sim_range_kind kind)
{
    if (G.nranges == G.capranges) {
        size_t cap = G.capranges ? G.capranges * 2 : 64;
        struct sim_range **v = realloc(G.ranges, cap * sizeof(*v));
        if (!v)
            return NULL;
        G.ranges = v;
        G.capranges = cap;
    }
    struct sim_range *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->start = start;
    r->end = start + len;
    r->kind = kind;
    r->prot = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
    r->id = ++G.next_buffer_id;
    size_t at = (size_t)(range_floor(start) + 1);
    memmove(&G.ranges[at + 1], &G.ranges[at], (G.nranges - at) * sizeof(*G.ranges));
    G.ranges[at] = r;
    G.nranges++;
    return r;
}

static void range_remove(struct sim_range *r)
{
    ptrdiff_t i = range_floor(r->start);
    if (i >= 0 && G.ranges[i] == r) {
        memmove(&G.ranges[i], &G.ranges[i + 1], (G.nranges - (size_t)i - 1) * sizeof(*G.ranges));
        G.nranges--;
    }
    cudasim_race_drop(r, r->start, r->end);
    free(r);
}

static struct sim_resv *resv_find(uintptr_t addr)
{
    for (size_t lo = 0, hi = G.nresv; lo < hi;) {
        size_t mid = lo + (hi - lo) / 2;
        if (addr < G.resv[mid].start)
            hi = mid;
        else if (addr >= G.resv[mid].end)
            lo = mid + 1;
        else
            return &G.resv[mid];
    }
    return NULL;
}

bool cudasim_in_reservation(uintptr_t addr) { return resv_find(addr) != NULL; }

/* ---- validation ---------------------------------------------------------------- */

static bool range_allows(const struct sim_range *r, bool write)
{
    if (r->kind != SIM_RANGE_VMM)
        return true;
    if (r->prot == CU_MEM_ACCESS_FLAGS_PROT_READWRITE)
        return true;
    return r->prot == CU_MEM_ACCESS_FLAGS_PROT_READ && !write;
}

CUresult cudasim_mem_validate(const char *what, uintptr_t addr, size_t len, bool write)
{
    if (len == 0)
        return CUDA_SUCCESS;
    uintptr_t end = addr + len, p = addr;
    const char *why = NULL;
    if (end < addr) {
        why = "address range wraps around";
    } else {
        while (p < end) {
            struct sim_range *r = cudasim_range_find(p);
            if (!r) {
                why = cudasim_in_reservation(p)
                          ? "address not mapped (inside a cuMemAddressReserve range, nothing mapped there)"
                          : "address not mapped (not part of any allocation)";
                break;
            }
            if (!range_allows(r, write)) {
                why = r->prot == CU_MEM_ACCESS_FLAGS_PROT_NONE
                          ? "address not accessible (mapped, but cuMemSetAccess has not granted access)"
                          : "address not writable (cuMemSetAccess granted read access only)";
                break;
            }
            p = r->end;
        }
        if (!why)
            return CUDA_SUCCESS;
    }
    cudasim_error("%s %s of 0x%llx (%llu bytes): %s at 0x%llx; the context is now unusable "
                  "(CUDA_ERROR_ILLEGAL_ADDRESS)",
                  what, write ? "write" : "read", (unsigned long long)addr, (unsigned long long)len, why,
                  (unsigned long long)p);
    return cudasim_ctx_sticky_fault(cudasim_current_ctx());
}

/* ---- capacity ------------------------------------------------------------------ */

static bool charge(size_t n)
{
    if (n > G.cfg.vram_bytes || G.device_bytes > G.cfg.vram_bytes - n)
        return false;
    G.device_bytes += n;
    G.peak_device_bytes = SIM_MAX(G.peak_device_bytes, G.device_bytes);
    return true;
}

static void uncharge(size_t n) { G.device_bytes -= SIM_MIN(n, G.device_bytes); }

/* ---- device allocations -------------------------------------------------------- */

static CUresult alloc_device(uintptr_t *out, size_t size, enum sim_range_kind kind, int extra_flags)
{
    size_t len;
    if (size == 0)
        return CUDA_ERROR_INVALID_VALUE;
    if (!round_up(size, page_size(), &len))
        return CUDA_ERROR_OUT_OF_MEMORY;
    if (!charge(len))
        return CUDA_ERROR_OUT_OF_MEMORY;
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | extra_flags,
                   -1, 0);
    if (p == MAP_FAILED) {
        uncharge(len);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    struct sim_range *r = range_add((uintptr_t)p, len, kind);
    if (!r) {
        munmap(p, len);
        uncharge(len);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    r->map_len = len;
    r->charged = len;
    *out = (uintptr_t)p;
    cudasim_verbose("alloc 0x%llx (%zu bytes), device now %llu bytes", (unsigned long long)r->start, size,
                    (unsigned long long)G.device_bytes);
    return CUDA_SUCCESS;
}

CUresult cudasim_mem_alloc(CUdeviceptr *dptr, size_t size)
{
    uintptr_t p;
    if (!dptr)
        return CUDA_ERROR_INVALID_VALUE;
    CUresult r = alloc_device(&p, size, SIM_RANGE_DEVICE, 0);
    if (r == CUDA_SUCCESS)
        *dptr = p;
    return r;
}

/* The 32-bit API of CUDA 1.x/2.x: the address must fit in 32 bits, which x86-64's
 * MAP_32BIT gives; elsewhere there is no way to honour it. */
CUresult cudasim_mem_alloc_v1(CUdeviceptr_v1 *dptr, unsigned size)
{
#ifdef MAP_32BIT
    uintptr_t p;
    if (!dptr)
        return CUDA_ERROR_INVALID_VALUE;
    CUresult r = alloc_device(&p, size, SIM_RANGE_DEVICE, MAP_32BIT);
    if (r == CUDA_SUCCESS)
        *dptr = (CUdeviceptr_v1)p;
    return r;
#else
    (void)dptr;
    (void)size;
    return CUDA_ERROR_NOT_SUPPORTED;
#endif
}

CUresult cudasim_mem_alloc_pitch(CUdeviceptr *dptr, size_t *pitch, size_t width, size_t height, unsigned elem)
{
    size_t p, total;
    if (!dptr || !pitch || width == 0 || height == 0 || (elem != 4 && elem != 8 && elem != 16))
        return CUDA_ERROR_INVALID_VALUE;
    if (!round_up(width, 512, &p) || __builtin_mul_overflow(p, height, &total))
        return CUDA_ERROR_OUT_OF_MEMORY;
    CUresult r = cudasim_mem_alloc(dptr, total);
    if (r == CUDA_SUCCESS)
        *pitch = p;
    return r;
}

static void free_range(struct sim_range *r)
{
    if (r->map_len)
        munmap((void *)r->start, r->map_len);
    if (cudasim_is_device_kind(r->kind))
        uncharge(r->charged);
    else
        G.pinned_bytes -= SIM_MIN(G.pinned_bytes, r->map_len);
    if (r->pool)
        r->pool->used -= SIM_MIN(r->pool->used, r->charged);
    range_remove(r);
}

CUresult cudasim_mem_free(CUdeviceptr ptr, const char *api)
{
    if (ptr == 0)
        return CUDA_SUCCESS;
    struct sim_range *r = cudasim_range_find(ptr);
    if (!r || r->start != ptr || (r->kind != SIM_RANGE_DEVICE && r->kind != SIM_RANGE_ASYNC))
        return CUDA_ERROR_INVALID_VALUE;
    /* Strict on purpose: drivers usually synchronise inside cuMemFree, but a program
     * that frees memory its own unfinished work uses is relying on that. */
    cudasim_race_host_release(api, r, r->start, r->end);
    cudasim_verbose("free 0x%llx", (unsigned long long)ptr);
    free_range(r);
    return CUDA_SUCCESS;
}

CUresult cudasim_mem_get_info(size_t *free_b, size_t *total_b)
{
    if (free_b)
        *free_b = G.cfg.vram_bytes - SIM_MIN(G.cfg.vram_bytes, G.device_bytes);
    if (total_b)
        *total_b = G.cfg.vram_bytes;
    return CUDA_SUCCESS;
}

CUresult cudasim_mem_get_address_range(CUdeviceptr *base, size_t *size, CUdeviceptr ptr)
{
    struct sim_range *r = cudasim_range_find(ptr);
    if (!r || !cudasim_is_device_kind(r->kind))
        return CUDA_ERROR_NOT_FOUND;
    if (base)
        *base = r->start;
    if (size)
        *size = r->end - r->start;
    return CUDA_SUCCESS;
}

/* ---- pointer attributes -------------------------------------------------------- */

static CUresult one_attribute(void *data, CUpointer_attribute attr, uintptr_t ptr, bool lenient)
{
    struct sim_range *r = cudasim_range_find(ptr);
    struct sim_resv *rv = resv_find(ptr);
    bool known = r || rv;
    bool dev = rv || (r && cudasim_is_device_kind(r->kind));

    if (!known && !lenient)
        return CUDA_ERROR_INVALID_VALUE;
    switch (attr) {
    case CU_POINTER_ATTRIBUTE_CONTEXT:
        *(CUcontext *)data = known ? (CUcontext)&G.primary : NULL;
        return CUDA_SUCCESS;
    case CU_POINTER_ATTRIBUTE_MEMORY_TYPE:
        *(unsigned *)data = !known ? 0 : dev ? CU_MEMORYTYPE_DEVICE : CU_MEMORYTYPE_HOST;
        return CUDA_SUCCESS;
    case CU_POINTER_ATTRIBUTE_DEVICE_POINTER:
        if (!r && !lenient)
            return CUDA_ERROR_INVALID_VALUE;
        *(CUdeviceptr *)data = r ? ptr : 0;
        return CUDA_SUCCESS;
    case CU_POINTER_ATTRIBUTE_HOST_POINTER:
        if ((!r || dev) && !lenient)
            return CUDA_ERROR_INVALID_VALUE;
        *(void **)data = r && !dev ? (void *)ptr : NULL;
        return CUDA_SUCCESS;
    case CU_POINTER_ATTRIBUTE_SYNC_MEMOPS:
    case CU_POINTER_ATTRIBUTE_MAPPED:
        *(unsigned *)data = r != NULL;
        return CUDA_SUCCESS;
    case CU_POINTER_ATTRIBUTE_IS_MANAGED:
    case CU_POINTER_ATTRIBUTE_IS_HW_DECOMPRESS_CAPABLE:
        *(unsigned *)data = 0;
        return CUDA_SUCCESS;
    case CU_POINTER_ATTRIBUTE_IS_LEGACY_CUDA_IPC_CAPABLE:
        *(unsigned *)data = r && r->kind == SIM_RANGE_DEVICE;
        return CUDA_SUCCESS;
    case CU_POINTER_ATTRIBUTE_BUFFER_ID:
        *(unsigned long long *)data = r ? r->id : 0;
        return CUDA_SUCCESS;
    case CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL:
        *(int *)data = known ? 0 : -1;
        return CUDA_SUCCESS;
    case CU_POINTER_ATTRIBUTE_RANGE_START_ADDR:
        /* For VMM this is the reservation, not the mapping (cuMemGetAddressRange). */
        *(CUdeviceptr *)data = rv ? rv->start : r ? r->start : 0;
        return CUDA_SUCCESS;
    case CU_POINTER_ATTRIBUTE_RANGE_SIZE:
        *(size_t *)data = rv ? rv->end - rv->start : r ? r->end - r->start : 0;
        return CUDA_SUCCESS;
    case CU_POINTER_ATTRIBUTE_ALLOWED_HANDLE_TYPES:
        /* 4 bytes written: a wider caller variable that was zeroed still reads right. */
        *(unsigned *)data = r && r->kind == SIM_RANGE_VMM ? CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR : 0;
        return CUDA_SUCCESS;
    case CU_POINTER_ATTRIBUTE_ACCESS_FLAGS:
        *(unsigned *)data = r ? (unsigned)r->prot : 0;
        return CUDA_SUCCESS;
    case CU_POINTER_ATTRIBUTE_MEMPOOL_HANDLE:
        *(CUmemoryPool *)data = r && r->pool ? (CUmemoryPool)r->pool : NULL;
        return CUDA_SUCCESS;
    default:
        return CUDA_ERROR_INVALID_VALUE;
    }
}

CUresult cudasim_pointer_attribute(void *data, CUpointer_attribute attr, CUdeviceptr ptr)
{
    if (!data)
        return CUDA_ERROR_INVALID_VALUE;
    return one_attribute(data, attr, ptr, false);
}

/* The plural form answers for unknown pointers too (memory type 0), as real. */
CUresult cudasim_pointer_attributes(unsigned n, CUpointer_attribute *attrs, void **data, CUdeviceptr ptr)
{
    if (!attrs || !data)
        return CUDA_ERROR_INVALID_VALUE;
    for (unsigned i = 0; i < n; i++) {
        if (!data[i])
            return CUDA_ERROR_INVALID_VALUE;
        CUresult r = one_attribute(data[i], attrs[i], ptr, true);
        if (r)
            return r;
    }
    return CUDA_SUCCESS;
}

/* ---- pinned host memory -------------------------------------------------------- */

static void count_pinned(size_t n)
{
    G.pinned_bytes += n;
    G.peak_pinned_bytes = SIM_MAX(G.peak_pinned_bytes, G.pinned_bytes);
}

CUresult cudasim_mem_alloc_host(void **pp, size_t size, unsigned flags)
{
    size_t len;
    if (!pp || size == 0 ||
        (flags & ~(unsigned)(CU_MEMHOSTALLOC_PORTABLE | CU_MEMHOSTALLOC_DEVICEMAP | CU_MEMHOSTALLOC_WRITECOMBINED)))
        return CUDA_ERROR_INVALID_VALUE;
    if (!round_up(size, page_size(), &len))
        return CUDA_ERROR_OUT_OF_MEMORY;
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return CUDA_ERROR_OUT_OF_MEMORY;
    struct sim_range *r = range_add((uintptr_t)p, len, SIM_RANGE_PINNED);
    if (!r) {
        munmap(p, len);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    r->map_len = len;
    r->host_flags = flags;
    count_pinned(len);
    *pp = p;
    return CUDA_SUCCESS;
}

CUresult cudasim_mem_free_host(void *p)
{
    struct sim_range *r = cudasim_range_find((uintptr_t)p);
    if (!r || r->start != (uintptr_t)p || r->kind != SIM_RANGE_PINNED)
        return CUDA_ERROR_INVALID_VALUE;
    cudasim_race_host_release("cuMemFreeHost", r, r->start, r->end);
    free_range(r);
    return CUDA_SUCCESS;
}

/* Error codes as NVIDIA's driver gives them (docs/simulator.md, Pinned host memory):
 * overlapping pinned or registered memory is ALREADY_REGISTERED, device memory (here
 * host memory too) INVALID_VALUE. Byte ranges, not pages: two buffers that share a
 * page register independently. */
CUresult cudasim_mem_host_register(void *p, size_t size, unsigned flags)
{
    uintptr_t a = (uintptr_t)p;
    if (!p || size == 0 || a + size < a ||
        (flags & ~(unsigned)(CU_MEMHOSTREGISTER_PORTABLE | CU_MEMHOSTREGISTER_DEVICEMAP |
                             CU_MEMHOSTREGISTER_IOMEMORY | CU_MEMHOSTREGISTER_READ_ONLY)))
        return CUDA_ERROR_INVALID_VALUE;
    if (resv_find(a) || resv_find(a + size - 1))
        return CUDA_ERROR_INVALID_VALUE;
    if (!range_free(a, a + size)) {
        for (ptrdiff_t i = range_floor(a + size - 1); i >= 0 && G.ranges[i]->end > a; i--)
            if (cudasim_is_device_kind(G.ranges[i]->kind))
                return CUDA_ERROR_INVALID_VALUE;
        return CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED;
    }
    struct sim_range *r = range_add(a, size, SIM_RANGE_REGISTERED);
    if (!r)
        return CUDA_ERROR_OUT_OF_MEMORY;
    r->host_flags = flags;
    /* Counted as pinned (the real driver locks these pages), but never unmapped. */
    count_pinned(size);
    return CUDA_SUCCESS;
}

CUresult cudasim_mem_host_unregister(void *p)
{
    struct sim_range *r = cudasim_range_find((uintptr_t)p);
    if (!r || cudasim_is_device_kind(r->kind))
        return CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED;
    /* What cuMemHostAlloc gave, or the inside of a registration: known memory, the
     * wrong pointer. */
    if (r->kind != SIM_RANGE_REGISTERED || r->start != (uintptr_t)p)
        return CUDA_ERROR_INVALID_VALUE;
    cudasim_race_host_release("cuMemHostUnregister", r, r->start, r->end);
    G.pinned_bytes -= SIM_MIN(G.pinned_bytes, r->end - r->start);
    range_remove(r);
    return CUDA_SUCCESS;
}

CUresult cudasim_mem_host_get_device_pointer(CUdeviceptr *pdptr, void *p, unsigned flags)
{
    struct sim_range *r = cudasim_range_find((uintptr_t)p);
    if (!pdptr || flags != 0)
        return CUDA_ERROR_INVALID_VALUE;
    if (!r || (r->kind != SIM_RANGE_PINNED && r->kind != SIM_RANGE_REGISTERED))
        return CUDA_ERROR_INVALID_VALUE;
    *pdptr = (CUdeviceptr)(uintptr_t)p; /* unified addressing: the same address */
    return CUDA_SUCCESS;
}

CUresult cudasim_mem_host_get_flags(unsigned *flags, void *p)
{
    struct sim_range *r = cudasim_range_find((uintptr_t)p);
    if (!flags || !r || (r->kind != SIM_RANGE_PINNED && r->kind != SIM_RANGE_REGISTERED))
        return CUDA_ERROR_INVALID_VALUE;
    *flags = r->host_flags;
    return CUDA_SUCCESS;
}

/* ---- counters ------------------------------------------------------------------ */

/* cuGetProcAddress("cudasimGetMemCounters"): up to n of device bytes charged now and
 * at peak, pinned (and registered) host bytes now and at peak, and the part of the
 * device bytes now that cuMemCreate holds (memfd pages, which the kernel counts as
 * shmem, where cuMemAlloc's are anonymous). Charges no host time, counts as no call:
 * reading it changes nothing a run measures. */
CUresult cudasim_mem_counters(uint64_t *out, unsigned n)
{
    CUresult r = cudasim_enter(SIM_NEED_INIT);
    if (r == CUDA_SUCCESS && !out)
        r = CUDA_ERROR_INVALID_VALUE;
    if (r == CUDA_SUCCESS) {
        const uint64_t v[] = {G.device_bytes, G.peak_device_bytes, G.pinned_bytes, G.peak_pinned_bytes,
                              G.vmm_bytes};
        for (unsigned i = 0; i < n && i < sizeof(v) / sizeof(v[0]); i++)
            out[i] = v[i];
    }
    cudasim_leave();
    return r;
}

/* ---- pools and stream-ordered allocation --------------------------------------- */

static struct sim_pool *pool_new(void)
{
    struct sim_pool *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->magic = SIM_MAGIC_POOL;
    p->props.allocType = CU_MEM_ALLOCATION_TYPE_PINNED;
    p->props.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    return p;
}

static struct sim_pool *default_pool(void)
{
    if (!G.default_pool)
        G.default_pool = pool_new();
    return G.default_pool;
}

static CUresult pool_get(CUmemoryPool h, struct sim_pool **out)
{
    struct sim_pool *p = (struct sim_pool *)h;
    if (!p || p->magic != SIM_MAGIC_POOL)
        return CUDA_ERROR_INVALID_VALUE;
    *out = p;
    return CUDA_SUCCESS;
}

CUresult cudasim_pool_default(CUmemoryPool *pool, CUdevice dev)
{
    if (!pool)
        return CUDA_ERROR_INVALID_VALUE;
    if (dev != 0)
        return CUDA_ERROR_INVALID_DEVICE;
    struct sim_pool *p = G.current_pool ? G.current_pool : default_pool();
    if (!p)
        return CUDA_ERROR_OUT_OF_MEMORY;
    *pool = (CUmemoryPool)p;
    return CUDA_SUCCESS;
}

CUresult cudasim_pool_set_current(CUdevice dev, CUmemoryPool h)
{
    struct sim_pool *p;
    if (dev != 0)
        return CUDA_ERROR_INVALID_DEVICE;
    if (pool_get(h, &p))
        return CUDA_ERROR_INVALID_VALUE;
    G.current_pool = p;
    return CUDA_SUCCESS;
}

CUresult cudasim_pool_create(CUmemoryPool *pool, const CUmemPoolProps *props)
{
    if (!pool || !props || props->allocType != CU_MEM_ALLOCATION_TYPE_PINNED ||
        props->location.type != CU_MEM_LOCATION_TYPE_DEVICE || props->location.id != 0)
        return CUDA_ERROR_INVALID_VALUE;
    struct sim_pool *p = pool_new();
    if (!p)
        return CUDA_ERROR_OUT_OF_MEMORY;
    p->props = *props;
    *pool = (CUmemoryPool)p;
    return CUDA_SUCCESS;
}

CUresult cudasim_pool_destroy(CUmemoryPool h)
{
    struct sim_pool *p;
    if (pool_get(h, &p) || p == G.default_pool)
        return CUDA_ERROR_INVALID_VALUE;
    if (G.current_pool == p)
        G.current_pool = NULL;
    /* Memory still allocated from it stays valid until freed, as real; the ranges
     * just stop pointing at the pool. */
    for (size_t i = 0; i < G.nranges; i++)
        if (G.ranges[i]->pool == p)
            G.ranges[i]->pool = NULL;
    p->magic = SIM_MAGIC_DEAD;
    free(p);
    return CUDA_SUCCESS;
}

CUresult cudasim_pool_set_attribute(CUmemoryPool h, CUmemPool_attribute attr, void *value)
{
    struct sim_pool *p;
    if (pool_get(h, &p) || !value)
        return CUDA_ERROR_INVALID_VALUE;
    switch (attr) {
    case CU_MEMPOOL_ATTR_RELEASE_THRESHOLD:
        p->threshold = *(cuuint64_t *)value;
        return CUDA_SUCCESS;
    case CU_MEMPOOL_ATTR_USED_MEM_HIGH:
    case CU_MEMPOOL_ATTR_RESERVED_MEM_HIGH:
        p->peak = p->used; /* only resetting is allowed */
        return CUDA_SUCCESS;
    case CU_MEMPOOL_ATTR_REUSE_FOLLOW_EVENT_DEPENDENCIES:
    case CU_MEMPOOL_ATTR_REUSE_ALLOW_OPPORTUNISTIC:
    case CU_MEMPOOL_ATTR_REUSE_ALLOW_INTERNAL_DEPENDENCIES:
        return CUDA_SUCCESS; /* reuse policies: nothing is reused here */
    default:
        return CUDA_ERROR_INVALID_VALUE;
    }
}

CUresult cudasim_pool_get_attribute(CUmemoryPool h, CUmemPool_attribute attr, void *value)
{
    struct sim_pool *p;
    if (pool_get(h, &p) || !value)
        return CUDA_ERROR_INVALID_VALUE;
    switch (attr) {
    case CU_MEMPOOL_ATTR_RELEASE_THRESHOLD: *(cuuint64_t *)value = p->threshold; return CUDA_SUCCESS;
    case CU_MEMPOOL_ATTR_RESERVED_MEM_CURRENT:
    case CU_MEMPOOL_ATTR_USED_MEM_CURRENT: *(cuuint64_t *)value = p->used; return CUDA_SUCCESS;
    case CU_MEMPOOL_ATTR_RESERVED_MEM_HIGH:
    case CU_MEMPOOL_ATTR_USED_MEM_HIGH: *(cuuint64_t *)value = p->peak; return CUDA_SUCCESS;
    case CU_MEMPOOL_ATTR_REUSE_FOLLOW_EVENT_DEPENDENCIES:
    case CU_MEMPOOL_ATTR_REUSE_ALLOW_OPPORTUNISTIC:
    case CU_MEMPOOL_ATTR_REUSE_ALLOW_INTERNAL_DEPENDENCIES: *(int *)value = 0; return CUDA_SUCCESS;
    default: return CUDA_ERROR_INVALID_VALUE;
    }
}

CUresult cudasim_pool_trim(CUmemoryPool h, size_t keep)
{
    struct sim_pool *p;
    (void)keep;
    return pool_get(h, &p);
}

CUresult cudasim_mem_alloc_async(CUdeviceptr *dptr, size_t size, CUmemoryPool hpool, CUstream hs, bool pt)
{
    struct sim_stream *s;
    struct sim_pool *p;
    CUresult r;
    if (!dptr)
        return CUDA_ERROR_INVALID_VALUE;
    if ((r = cudasim_stream_resolve(hs, pt, &s)))
        return r;
    if (s->capture)
        return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
    if (hpool) {
        if (pool_get(hpool, &p))
            return CUDA_ERROR_INVALID_VALUE;
    } else if (!(p = G.current_pool ? G.current_pool : default_pool()))
        return CUDA_ERROR_OUT_OF_MEMORY;
    uintptr_t a;
    if ((r = alloc_device(&a, size, SIM_RANGE_ASYNC, 0)))
        return r;
    struct sim_range *rg = cudasim_range_find(a);
    rg->pool = p;
    p->used += rg->charged;
    p->peak = SIM_MAX(p->peak, p->used);
    *dptr = a;
    return CUDA_SUCCESS;
}

/* The free is an operation on the stream: work on other streams must be ordered
 * before it (event + cuStreamWaitEvent), or it is reported. The memory goes back at
 * issue, which is safe for programs that pass that check. */
CUresult cudasim_mem_free_async(CUdeviceptr ptr, CUstream hs, bool pt)
{
    struct sim_stream *s;
    CUresult r;
    if ((r = cudasim_stream_resolve(hs, pt, &s)))
        return r;
    if (s->capture)
        return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
    struct sim_range *rg = cudasim_range_find(ptr);
    if (!rg || rg->start != ptr || (rg->kind != SIM_RANGE_ASYNC && rg->kind != SIM_RANGE_DEVICE))
        return CUDA_ERROR_INVALID_VALUE;
    uint64_t end;
    cudasim_tl_order(s, SIM_ENG_NONE, 0, &end);
    cudasim_race_stream_release("cuMemFreeAsync", rg, s->agent, &cudasim_agent(s->agent)->vc);
    free_range(rg);
    return CUDA_SUCCESS;
}

/* ---- virtual memory management ------------------------------------------------- */

static CUresult check_prop(const CUmemAllocationProp *prop)
{
    if (!prop || prop->type != CU_MEM_ALLOCATION_TYPE_PINNED || prop->location.type != CU_MEM_LOCATION_TYPE_DEVICE)
        return CUDA_ERROR_INVALID_VALUE;
    if (prop->location.id != 0)
        return CUDA_ERROR_INVALID_DEVICE;
    return CUDA_SUCCESS;
}

CUresult cudasim_vmm_granularity(size_t *gran, const CUmemAllocationProp *prop,
                                 CUmemAllocationGranularity_flags option)
{
    if (!gran || (option != CU_MEM_ALLOC_GRANULARITY_MINIMUM && option != CU_MEM_ALLOC_GRANULARITY_RECOMMENDED))
        return CUDA_ERROR_INVALID_VALUE;
    CUresult r = check_prop(prop);
    if (r)
        return r;
    *gran = SIM_GRANULARITY;
    return CUDA_SUCCESS;
}

static bool aligned(uintptr_t v, size_t a) { return v % a == 0; }

CUresult cudasim_vmm_reserve(CUdeviceptr *ptr, size_t size, size_t align, CUdeviceptr addr, unsigned long long flags)
{
    if (!ptr || size == 0 || !aligned(size, SIM_GRANULARITY) || (align & (align - 1)) || flags != 0)
        return CUDA_ERROR_INVALID_VALUE;
    align = SIM_MAX(align, SIM_GRANULARITY);
    const int mflags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE;
    void *p = MAP_FAILED;
    /* The address is a hint, as for the real driver. */
    if (addr && aligned(addr, align)) {
        p = mmap((void *)(uintptr_t)addr, size, PROT_NONE, mflags | MAP_FIXED_NOREPLACE, -1, 0);
        if (p != MAP_FAILED && (uintptr_t)p != addr) {
            munmap(p, size); /* kernels without MAP_FIXED_NOREPLACE treat it as a hint */
            p = MAP_FAILED;
        }
    }
    if (p == MAP_FAILED) {
        if (size > SIZE_MAX - align)
            return CUDA_ERROR_OUT_OF_MEMORY;
        uint8_t *q = mmap(NULL, size + align, PROT_NONE, mflags, -1, 0);
        if (q == MAP_FAILED)
            return CUDA_ERROR_OUT_OF_MEMORY;
        uintptr_t start = ((uintptr_t)q + align - 1) / align * align;
        if (start > (uintptr_t)q)
            munmap(q, start - (uintptr_t)q);
        uintptr_t tail = (uintptr_t)q + size + align - (start + size);
        if (tail)
            munmap((void *)(start + size), tail);
        p = (void *)start;
    }
    if (G.nresv == G.capresv) {
        size_t cap = G.capresv ? G.capresv * 2 : 16;
        struct sim_resv *v = realloc(G.resv, cap * sizeof(*v));
        if (!v) {
            munmap(p, size);
            return CUDA_ERROR_OUT_OF_MEMORY;
        }
        G.resv = v;
        G.capresv = cap;
    }
    size_t at = 0;
    while (at < G.nresv && G.resv[at].start < (uintptr_t)p)
        at++;
    memmove(&G.resv[at + 1], &G.resv[at], (G.nresv - at) * sizeof(*G.resv));
    G.resv[at] = (struct sim_resv){(uintptr_t)p, (uintptr_t)p + size};
    G.nresv++;
    *ptr = (CUdeviceptr)(uintptr_t)p;
    cudasim_charge_size(SIM_COST_ADDRESS_RESERVE, size);
    cudasim_verbose("reserve 0x%llx (%zu bytes)", (unsigned long long)*ptr, size);
    return CUDA_SUCCESS;
}

static struct sim_phys *phys_get(CUmemGenericAllocationHandle h)
{
    struct sim_phys *ph = (struct sim_phys *)(uintptr_t)h;
    if (!ph || ph->magic != SIM_MAGIC_PHYS)
        return NULL;
    return ph;
}

static void phys_maybe_free(struct sim_phys *ph)
{
    if (ph->refs > 0 || ph->maps > 0)
        return;
    close(ph->fd);
    uncharge(ph->size);
    G.vmm_bytes -= SIM_MIN(G.vmm_bytes, ph->size);
    ph->magic = SIM_MAGIC_DEAD;
    free(ph);
}

/* Back to a PROT_NONE reservation page range; the physical memory keeps the data. */
static void unmap_range(const char *api, struct sim_range *r)
{
    cudasim_race_host_release(api, r, r->start, r->end);
    size_t len = r->end - r->start;
    mmap((void *)r->start, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
    struct sim_phys *ph = r->phys;
    range_remove(r);
    ph->maps--;
    phys_maybe_free(ph);
}

CUresult cudasim_vmm_address_free(CUdeviceptr ptr, size_t size)
{
    struct sim_resv *rv = resv_find(ptr);
    if (!rv || rv->start != ptr || rv->end - rv->start != size)
        return CUDA_ERROR_INVALID_VALUE;
    /* Lenient: mappings left inside are unmapped (and checked) first. */
    for (size_t i = 0; i < G.nranges;) {
        struct sim_range *r = G.ranges[i];
        if (r->start >= rv->start && r->end <= rv->end && r->kind == SIM_RANGE_VMM)
            unmap_range("cuMemAddressFree", r);
        else
            i++;
    }
    munmap((void *)rv->start, size);
    size_t at = (size_t)(rv - G.resv);
    memmove(&G.resv[at], &G.resv[at + 1], (G.nresv - at - 1) * sizeof(*G.resv));
    G.nresv--;
    cudasim_charge_size(SIM_COST_ADDRESS_FREE, size);
    return CUDA_SUCCESS;
}

CUresult cudasim_vmm_create(CUmemGenericAllocationHandle *handle, size_t size, const CUmemAllocationProp *prop,
                            unsigned long long flags)
{
    if (!handle || size == 0 || !aligned(size, SIM_GRANULARITY) || flags != 0)
        return CUDA_ERROR_INVALID_VALUE;
    CUresult r = check_prop(prop);
    if (r)
        return r;
    if (!charge(size))
        return CUDA_ERROR_OUT_OF_MEMORY;
    struct sim_phys *ph = calloc(1, sizeof(*ph));
    int fd = memfd_create("cudasim-vmm", MFD_CLOEXEC);
    if (!ph || fd < 0 || ftruncate(fd, (off_t)size) != 0) {
        if (fd >= 0)
            close(fd);
        free(ph);
        uncharge(size);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    ph->magic = SIM_MAGIC_PHYS;
    ph->fd = fd;
    ph->size = size;
    ph->refs = 1;
    ph->prop = *prop;
    *handle = (CUmemGenericAllocationHandle)(uintptr_t)ph;
    G.vmm_bytes += size;
    cudasim_charge_size(SIM_COST_MEM_CREATE, size);
    cudasim_verbose("create physical %zu bytes, device now %llu bytes", size, (unsigned long long)G.device_bytes);
    return CUDA_SUCCESS;
}

/* Releasing a mapped handle is legal: the memory lives until its last unmap. */
CUresult cudasim_vmm_release(CUmemGenericAllocationHandle handle)
{
    struct sim_phys *ph = phys_get(handle);
    if (!ph || ph->refs <= 0)
        return CUDA_ERROR_INVALID_VALUE;
    cudasim_charge_size(SIM_COST_MEM_RELEASE, ph->size);
    ph->refs--;
    phys_maybe_free(ph);
    return CUDA_SUCCESS;
}

CUresult cudasim_vmm_map(CUdeviceptr ptr, size_t size, size_t offset, CUmemGenericAllocationHandle handle,
                         unsigned long long flags)
{
    struct sim_phys *ph = phys_get(handle);
    if (!ph)
        return CUDA_ERROR_INVALID_HANDLE;
    if (size == 0 || flags != 0 || !aligned(ptr, SIM_GRANULARITY) || !aligned(size, SIM_GRANULARITY) ||
        !aligned(offset, SIM_GRANULARITY) || offset > ph->size || size > ph->size - offset)
        return CUDA_ERROR_INVALID_VALUE;
    struct sim_resv *rv = resv_find(ptr);
    if (!rv || ptr + size > rv->end || ptr + size < ptr)
        return CUDA_ERROR_INVALID_VALUE;
    if (!range_free(ptr, ptr + size))
        return CUDA_ERROR_INVALID_VALUE; /* already mapped */
    /* Access stays off until cuMemSetAccess, as on hardware: PROT_NONE here too. */
    void *p = mmap((void *)(uintptr_t)ptr, size, PROT_NONE, MAP_SHARED | MAP_FIXED, ph->fd, (off_t)offset);
    if (p == MAP_FAILED)
        return CUDA_ERROR_OUT_OF_MEMORY;
    struct sim_range *r = range_add(ptr, size, SIM_RANGE_VMM);
    if (!r) {
        mmap(p, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    r->prot = CU_MEM_ACCESS_FLAGS_PROT_NONE;
    r->phys = ph;
    r->phys_offset = offset;
    ph->maps++;
    cudasim_charge_size(SIM_COST_MEM_MAP, size);
    cudasim_verbose("map 0x%llx (%zu bytes)", (unsigned long long)ptr, size);
    return CUDA_SUCCESS;
}

/* Collects the VMM ranges that exactly tile [ptr, ptr+size); false if any gap, any
 * non-VMM range, or a mapping only partly inside. */
static bool vmm_tiles(uintptr_t ptr, size_t size)
{
    uintptr_t p = ptr, end = ptr + size;
    if (size == 0 || end < ptr)
        return false;
    while (p < end) {
        struct sim_range *r = cudasim_range_find(p);
        if (!r || r->kind != SIM_RANGE_VMM || r->start != p || r->end > end)
            return false;
        p = r->end;
    }
    return true;
}

CUresult cudasim_vmm_unmap(CUdeviceptr ptr, size_t size)
{
    if (!vmm_tiles(ptr, size))
        return CUDA_ERROR_INVALID_VALUE;
    for (uintptr_t p = ptr; p < ptr + size;) {
        struct sim_range *r = cudasim_range_find(p);
        p = r->end;
        unmap_range("cuMemUnmap", r);
    }
    cudasim_charge_size(SIM_COST_MEM_UNMAP, size);
    cudasim_verbose("unmap 0x%llx (%zu bytes)", (unsigned long long)ptr, size);
    return CUDA_SUCCESS;
}

CUresult cudasim_vmm_set_access(CUdeviceptr ptr, size_t size, const CUmemAccessDesc *desc, size_t count)
{
    if (!desc || count == 0 || !vmm_tiles(ptr, size))
        return CUDA_ERROR_INVALID_VALUE;
    CUmemAccess_flags prot = CU_MEM_ACCESS_FLAGS_PROT_NONE;
    bool ours = false;
    for (size_t i = 0; i < count; i++) {
        if (desc[i].location.type != CU_MEM_LOCATION_TYPE_DEVICE)
            return CUDA_ERROR_INVALID_VALUE;
        if (desc[i].location.id != 0)
            return CUDA_ERROR_INVALID_DEVICE;
        if (desc[i].flags != CU_MEM_ACCESS_FLAGS_PROT_NONE && desc[i].flags != CU_MEM_ACCESS_FLAGS_PROT_READ &&
            desc[i].flags != CU_MEM_ACCESS_FLAGS_PROT_READWRITE)
            return CUDA_ERROR_INVALID_VALUE;
        prot = desc[i].flags;
        ours = true;
    }
    if (!ours)
        return CUDA_ERROR_INVALID_VALUE;
    int mprot = prot == CU_MEM_ACCESS_FLAGS_PROT_READWRITE ? PROT_READ | PROT_WRITE
                : prot == CU_MEM_ACCESS_FLAGS_PROT_READ    ? PROT_READ
                                                           : PROT_NONE;
    for (uintptr_t p = ptr; p < ptr + size;) {
        struct sim_range *r = cudasim_range_find(p);
        mprotect((void *)r->start, r->end - r->start, mprot);
        r->prot = prot;
        p = r->end;
    }
    cudasim_charge_size(SIM_COST_MEM_SET_ACCESS, size);
    return CUDA_SUCCESS;
}

CUresult cudasim_vmm_get_access(unsigned long long *flags, const CUmemLocation *loc, CUdeviceptr ptr)
{
    if (!flags || !loc || loc->type != CU_MEM_LOCATION_TYPE_DEVICE || loc->id != 0)
        return CUDA_ERROR_INVALID_VALUE;
    struct sim_range *r = cudasim_range_find(ptr);
    if (!r || r->kind != SIM_RANGE_VMM)
        return CUDA_ERROR_INVALID_VALUE;
    *flags = r->prot;
    return CUDA_SUCCESS;
}

CUresult cudasim_vmm_retain_handle(CUmemGenericAllocationHandle *handle, void *addr)
{
    struct sim_range *r = cudasim_range_find((uintptr_t)addr);
    if (!handle || !r || r->kind != SIM_RANGE_VMM || r->start != (uintptr_t)addr)
        return CUDA_ERROR_INVALID_VALUE;
    r->phys->refs++;
    *handle = (CUmemGenericAllocationHandle)(uintptr_t)r->phys;
    return CUDA_SUCCESS;
}

CUresult cudasim_vmm_get_props(CUmemAllocationProp *prop, CUmemGenericAllocationHandle handle)
{
    struct sim_phys *ph = phys_get(handle);
    if (!prop || !ph)
        return CUDA_ERROR_INVALID_VALUE;
    *prop = ph->prop;
    return CUDA_SUCCESS;
}
