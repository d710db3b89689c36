/* page/alloc.c: the entry points interpose/ calls for the application's allocations,
 * frees and VMM mappings: which allocations page/ manages (a reserved VA range whose
 * VRAM comes and goes), and how the others are charged against BLOCKSWAP_VRAM_LIMIT
 * and recorded in track/. */
#define _GNU_SOURCE
#include "page/internal.h"
#include "blockswap.h"

#include <stdlib.h>

#define PG bs_pg

/* Large allocations are managed; without parameter layouts launches cannot be
 * followed, and nothing is. */
static bool manageable(size_t size)
{
    return size && size >= bs_cfg.min_bytes &&
           (bs_drv.cuFuncGetParamInfo || bs_drv.cuKernelGetParamInfo);
}

static CUresult managed_alloc(CUdeviceptr *dptr, size_t size, int api, CUstream s)
{
    pthread_mutex_lock(&PG.lock);
    CUresult r = pg_setup_locked();
    if (r != CUDA_SUCCESS)
        goto out;
    struct managed *m = calloc(1, sizeof(*m));
    if (!m) {
        r = CUDA_ERROR_OUT_OF_MEMORY;
        goto out;
    }
    m->size = size;
    m->padded = bs_round_up(size, PG.granularity);
    m->resident_index = m->fp_slot = -1;
    m->sched.stack = m->sched.block = m->sched.tag = -1;
    CUdeviceptr va;
    if ((r = bs_drv.cuMemAddressReserve(&va, m->padded, PG.granularity, 0, 0)) != CUDA_SUCCESS) {
        free(m);
        goto out;
    }
    m->va = va;
    struct bs_alloc_rec rec = { .base = va, .size = size, .api = api,
                                .stream = (uint64_t)(uintptr_t)s, .managed = true };
    if (bs_alloc_map_insert(&rec) < 0) {
        bs_drv.cuMemAddressFree(va, m->padded);
        free(m);
        r = CUDA_ERROR_OUT_OF_MEMORY;
        goto out;
    }
    pg_insert(m);
    PG.managed_bytes += size;
    __atomic_store_n(&PG.managed_count, PG.managed_count + 1, __ATOMIC_RELAXED);
    bs_stat_add(BS_STAT_ALLOCS, 1);
    *dptr = va;
out:
    pthread_mutex_unlock(&PG.lock);
    return r;
}

/* Unmanaged VRAM (small allocations, the application's own mappings) counts against
 * the same limit: room is made before the driver is asked. */
CUresult bs_page_charge(uint64_t bytes, const char *what)
{
    pthread_mutex_lock(&PG.lock);
    CUresult r = CUDA_SUCCESS;
    if (pg_setup_locked() == CUDA_SUCCESS)
        r = pg_make_room(bytes, NULL, 0, what);
    if (r == CUDA_SUCCESS)
        pg_unmanaged_add(bytes);
    pthread_mutex_unlock(&PG.lock);
    return r;
}

void bs_page_uncharge(uint64_t bytes)
{
    pthread_mutex_lock(&PG.lock);
    PG.unmanaged_bytes -= bytes < PG.unmanaged_bytes ? bytes : PG.unmanaged_bytes;
    pthread_mutex_unlock(&PG.lock);
}

static void track(const CUdeviceptr *dptr, uint64_t size, int api, CUstream s)
{
    struct bs_alloc_rec rec = {
        .base = *dptr, .size = size, .stream = (uint64_t)(uintptr_t)s, .api = api,
    };
    if (bs_alloc_map_insert(&rec) == 0)
        bs_stat_add(BS_STAT_ALLOCS, 1);
}

CUresult bs_page_alloc_begin(CUdeviceptr *dptr, size_t size, int api, CUstream s)
{
    if (dptr && manageable(size))
        return managed_alloc(dptr, size, api, s);
    CUresult r = bs_page_charge(size, "an unmanaged allocation");
    return r == CUDA_SUCCESS ? BS_PAGE_NOT_HANDLED : r;
}

void bs_page_alloc_end(CUresult r, const CUdeviceptr *dptr, size_t size, int api, CUstream s)
{
    if (r != CUDA_SUCCESS || !dptr || !*dptr)
        bs_page_uncharge(size);
    else
        track(dptr, size, api, s);
}

/* The pitch the driver would choose for 2D copies: rows aligned to 512 bytes. Managed
 * pitched allocations take it; element sizes other than 4, 8 and 16 are the driver's. */
CUresult bs_page_alloc_pitch_begin(CUdeviceptr *dptr, size_t *pitch, size_t width,
                                   size_t height, unsigned elem)
{
    size_t p = bs_round_up(width, 512);
    if (pitch && width && height && (elem == 4 || elem == 8 || elem == 16) && dptr &&
        manageable(p * height)) {
        CUresult r = managed_alloc(dptr, p * height, BLOCKSWAP_API_MEM_ALLOC_PITCH, NULL);
        if (r == CUDA_SUCCESS)
            *pitch = p;
        return r;
    }
    /* The real pitch is known only after the call: charge the smallest it can be. */
    CUresult r = bs_page_charge(width * height, "an unmanaged allocation");
    return r == CUDA_SUCCESS ? BS_PAGE_NOT_HANDLED : r;
}

void bs_page_alloc_pitch_end(CUresult r, const CUdeviceptr *dptr, const size_t *pitch,
                             size_t width, size_t height)
{
    bs_page_uncharge(width * height);
    if (r == CUDA_SUCCESS && dptr && *dptr && pitch &&
        bs_page_charge(*pitch * height, "an unmanaged allocation") == CUDA_SUCCESS)
        track(dptr, *pitch * height, BLOCKSWAP_API_MEM_ALLOC_PITCH, NULL);
}

/* Frees a managed allocation after the work that used it (and, for a stream-ordered
 * free, everything before it on that stream) has completed. */
static CUresult managed_free(struct managed *m, CUstream s, unsigned flags)
{
    CUresult r;
    pg_wait_idle(m);
    bs_sched_forget(m);
    if (flags & BS_PAGE_STREAM_ORDERED) {
        int sl = pg_slot_of(pg_norm_stream(s, flags));
        if (sl >= 0) {
            m->streams_used |= 1ull << sl;
            if (PG.slots[sl].per_thread && /* this thread's stream: mark where the free is */
                bs_drv.cuEventRecord(PG.slots[sl].last, CU_STREAM_PER_THREAD) != CUDA_SUCCESS)
                bs_drv.cuCtxSynchronize();
        }
    }
    if (m->state == RES_DEVICE) {
        /* Nothing needs copying back: the contents die with the allocation. */
        m->dirty = false;
        m->host_valid = true;
        if ((r = pg_evict_for_free(m)) != CUDA_SUCCESS)
            return r;
    }
    bs_alloc_map_remove(m->va, NULL);
    pg_remove(m);
    pg_host_free(m);
    pg_fb_drop(m);
    if (m->ready)
        bs_drv.cuEventDestroy_v2(m->ready);
    if (m->done)
        bs_drv.cuEventDestroy_v2(m->done);
    bs_fp_slot_put(m->fp_slot);
    bs_drv.cuMemAddressFree(m->va, m->padded);
    PG.managed_bytes -= m->size;
    __atomic_store_n(&PG.managed_count, PG.managed_count - 1, __ATOMIC_RELAXED);
    free(m);
    bs_stat_add(BS_STAT_FREES, 1);
    return CUDA_SUCCESS;
}

/* A free forgets the record before the driver gets the address back: once it has,
 * another thread's allocation may return the same address. */
CUresult bs_page_free_begin(uint64_t ptr, CUstream s, unsigned flags, struct bs_page_free *f)
{
    f->had = false;
    pthread_mutex_lock(&PG.lock);
    struct managed *m = pg_find(ptr);
    CUresult r = m ? managed_free(m, s, flags) : BS_PAGE_NOT_HANDLED;
    pthread_mutex_unlock(&PG.lock);
    if (r == BS_PAGE_NOT_HANDLED && ptr)
        f->had = bs_alloc_map_remove(ptr, &f->rec) == 0;
    return r;
}

/* A failed free puts the record back. */
void bs_page_free_end(CUresult r, const struct bs_page_free *f)
{
    if (!f->had)
        return;
    if (r == CUDA_SUCCESS) {
        bs_stat_add(BS_STAT_FREES, 1);
        bs_page_uncharge(f->rec.size);
    } else {
        bs_alloc_map_insert(&f->rec);
    }
}

/* The physical memory of the application's own VMM was counted by the driver at
 * cuMemCreate; blockswap charges its mappings, which is when that memory is usable. */
CUresult bs_page_map_begin(size_t size)
{
    CUresult r = bs_page_charge(size, "an unmanaged allocation");
    return r == CUDA_SUCCESS ? BS_PAGE_NOT_HANDLED : r;
}

void bs_page_map_end(CUresult r, uint64_t ptr, size_t size)
{
    if (r != CUDA_SUCCESS) {
        bs_page_uncharge(size);
        return;
    }
    struct bs_alloc_rec rec = { .base = ptr, .size = size, .api = BLOCKSWAP_API_VMM_MAP };
    if (bs_alloc_map_insert(&rec) == 0)
        bs_stat_add(BS_STAT_VMM_MAPPED, (int64_t)size);
}

/* Forgets first, as for frees; an unmap that fails leaves a mapping no longer
 * followed, which only costs tracking, never correctness. */
void bs_page_unmap_begin(uint64_t ptr, size_t size)
{
    uint64_t bytes = bs_alloc_map_remove_range(ptr, size, BLOCKSWAP_API_VMM_MAP);
    bs_stat_add(BS_STAT_VMM_MAPPED, -(int64_t)bytes);
    bs_page_uncharge(bytes);
}
