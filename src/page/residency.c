/* page/residency.c: where managed allocations live. Owns page/'s state (bs_pg): set-up
 * in the application's context, the budget (BLOCKSWAP_VRAM_LIMIT), host backing, the
 * resident set and victim choice, mapping and filling, the one eviction path (with
 * write-back elision) and the ordering rule: nothing is unmapped before the work that
 * used it completed. Callers hold the page lock. */
#define _GNU_SOURCE
#include "page/backing.h"
#include "page/internal.h"
#include "trace/trace.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct page_state bs_pg = {
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .idle_cv = PTHREAD_COND_INITIALIZER,
    .pager = { .cv = PTHREAD_COND_INITIALIZER },
};
#define PG bs_pg

/* ---- the table of managed allocations, streams, errors ---- */

void pg_insert(struct managed *m)
{
    unsigned h = pg_hash_va(m->va);
    m->hash_next = PG.table[h];
    PG.table[h] = m;
}

void pg_remove(struct managed *m)
{
    struct managed **pp = &PG.table[pg_hash_va(m->va)];
    while (*pp != m)
        pp = &(*pp)->hash_next;
    *pp = m->hash_next;
}

const char *pg_err(CUresult r)
{
    const char *s = NULL;
    if (bs_drv.cuGetErrorName)
        bs_drv.cuGetErrorName(r, &s);
    return s ? s : "CUDA error";
}

CUstream pg_norm_stream(CUstream s, unsigned flags)
{
    return (!s && (flags & BS_PAGE_PTSZ)) ? CU_STREAM_PER_THREAD : s;
}

int pg_slot_of(CUstream s)
{
    bool pt = s == CU_STREAM_PER_THREAD;
    pthread_t self = pthread_self();
    int free_slot = -1;
    for (int i = 0; i < PG.nslots; i++) {
        if (PG.slots[i].gone)
            free_slot = free_slot < 0 ? i : free_slot;
        else if (PG.slots[i].s == s && (!pt || pthread_equal(PG.slots[i].owner, self)))
            return i;
    }
    if (free_slot < 0 && PG.nslots == PG_MAX_STREAMS)
        return -1;
    int i = free_slot >= 0 ? free_slot : PG.nslots;
    struct stream_slot *sl = &PG.slots[i];
    memset(sl, 0, sizeof(*sl));
    sl->s = s;
    if (pt) {
        if (!PG.ready || bs_drv.cuEventCreate(&sl->last, CU_EVENT_DISABLE_TIMING) != CUDA_SUCCESS)
            return -1; /* not followed: what uses it is pinned */
        sl->per_thread = true;
        sl->owner = self;
    }
    if (i == PG.nslots)
        PG.nslots++;
    return i;
}

/* ---- set-up, in the application's current context ---- */

static uint64_t phys_ram(void)
{
    long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
    return pages > 0 && psz > 0 ? (uint64_t)pages * (uint64_t)psz : 0;
}

/* Host backing in all: leave the system 4 GiB, or half of a small box. */
static uint64_t host_ram_default(void)
{
    uint64_t total = phys_ram(), keep = 4ull << 30;
    return total > 2 * keep ? total - keep : total / 2;
}

/* Half of MemAvailable now: what pinning may take without pushing the system into swap
 * (the rest of host backing is pageable). Half of physical RAM without /proc. */
static uint64_t pinned_default(void)
{
    uint64_t avail_kib = 0;
    FILE *f = fopen("/proc/meminfo", "re");
    if (f) {
        char line[128];
        while (fgets(line, sizeof(line), f))
            if (sscanf(line, "MemAvailable: %" SCNu64 " kB", &avail_kib) == 1)
                break;
        fclose(f);
    }
    return avail_kib ? avail_kib * 1024 / 2 : phys_ram() / 2;
}

/* At exit, before the driver tears contexts down (this runs first: it was registered
 * after the application initialised CUDA), the pager finishes what it holds and starts
 * nothing new, and the tracer writes its last records. */
static void page_exit(void)
{
    pthread_mutex_lock(&PG.lock);
    PG.pager.stopping = true;
    while (PG.nbusy)
        pthread_cond_wait(&PG.idle_cv, &PG.lock);
    pg_pool_release(UINT64_MAX);
    bs_trace_close(); /* its summary names the staging ring */
    bs_staging_exit();
    pthread_mutex_unlock(&PG.lock);
}

CUresult pg_setup_locked(void)
{
    static bool exit_registered; /* a forked child inherits the registration */
    if (PG.ready)
        return CUDA_SUCCESS;
    CUresult r = bs_drv.cuCtxGetCurrent(&PG.ctx);
    if (r != CUDA_SUCCESS || !PG.ctx)
        return r != CUDA_SUCCESS ? r : CUDA_ERROR_INVALID_CONTEXT;
    CUdevice dev;
    if ((r = bs_drv.cuCtxGetDevice(&dev)) != CUDA_SUCCESS)
        return r;
    memset(&PG.prop, 0, sizeof(PG.prop));
    PG.prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
    PG.prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    PG.prop.location.id = dev;
    if ((r = bs_drv.cuMemGetAllocationGranularity(&PG.granularity, &PG.prop,
                                                  CU_MEM_ALLOC_GRANULARITY_RECOMMENDED)) != CUDA_SUCCESS)
        return r;
    /* A failure here is retried at the next call: keep what was already made. The
     * D2H stream runs the eviction fingerprints, one thread block each: at the greatest
     * priority the GPU dispatches it ahead of the application's waiting thread blocks,
     * so an eviction does not wait for the kernels issued after its block's. */
    int least = 0, greatest = 0;
    bool ranked = bs_drv.cuCtxGetStreamPriorityRange(&least, &greatest) == CUDA_SUCCESS;
    if (!PG.d2h && (!ranked || bs_drv.cuStreamCreateWithPriority(&PG.d2h, CU_STREAM_NON_BLOCKING,
                                                                 greatest) != CUDA_SUCCESS))
        PG.d2h = NULL;
    if (!PG.fps && (!ranked || bs_drv.cuStreamCreateWithPriority(&PG.fps, CU_STREAM_NON_BLOCKING,
                                                                 greatest) != CUDA_SUCCESS))
        PG.fps = NULL;
    if ((!PG.h2d && (r = bs_drv.cuStreamCreate(&PG.h2d, CU_STREAM_NON_BLOCKING)) != CUDA_SUCCESS) ||
        (!PG.d2h && (r = bs_drv.cuStreamCreate(&PG.d2h, CU_STREAM_NON_BLOCKING)) != CUDA_SUCCESS) ||
        (!PG.fps && (r = bs_drv.cuStreamCreate(&PG.fps, CU_STREAM_NON_BLOCKING)) != CUDA_SUCCESS))
        return r;
    for (unsigned i = 0; i < BS_ARRAY_SIZE(PG.scratch); i++)
        if (!PG.scratch[i] &&
            (r = bs_drv.cuEventCreate(&PG.scratch[i], CU_EVENT_DISABLE_TIMING)) != CUDA_SUCCESS)
            return r;

    char a[BS_SIZE_STR_LEN], b[BS_SIZE_STR_LEN], c[BS_SIZE_STR_LEN];
    size_t free_b = 0, total = 0;
    CUresult info = bs_real.cuMemGetInfo_v2(&free_b, &total);
    PG.vram_limit = bs_cfg.vram_limit;
    if (PG.vram_limit == BS_SIZE_AUTO) {
        if (info != CUDA_SUCCESS)
            return info;
        PG.vram_limit = free_b > bs_cfg.reserve ? free_b - bs_cfg.reserve : 0;
        bs_log(BS_LOG_INFO, "VRAM limit %s: %s free at start minus BLOCKSWAP_RESERVE=%s",
               bs_size_str(PG.vram_limit, a, sizeof(a)), bs_size_str(free_b, b, sizeof(b)),
               bs_size_str(bs_cfg.reserve, c, sizeof(c)));
        /* Nothing fits in 0: every allocation would be refused or paged at once. */
        if (!PG.vram_limit)
            bs_log(BS_LOG_WARN, "the automatic VRAM limit comes out 0: %s free at start minus "
                   "BLOCKSWAP_RESERVE=%s; lower BLOCKSWAP_RESERVE or set BLOCKSWAP_VRAM_LIMIT",
                   bs_size_str(free_b, b, sizeof(b)), bs_size_str(bs_cfg.reserve, c, sizeof(c)));
    } else {
        bs_log(BS_LOG_INFO, "VRAM limit %s (BLOCKSWAP_VRAM_LIMIT)",
               bs_size_str(PG.vram_limit, a, sizeof(a)));
        /* A limit the device cannot give is no limit: nothing is swapped until the
         * driver itself runs out. */
        if (info == CUDA_SUCCESS && total && PG.vram_limit > total)
            bs_log(BS_LOG_WARN, "the VRAM limit %s (BLOCKSWAP_VRAM_LIMIT) is more than the "
                   "device's %s of memory: blockswap would swap nothing before the device runs "
                   "out; lower BLOCKSWAP_VRAM_LIMIT or leave it auto",
                   bs_size_str(PG.vram_limit, a, sizeof(a)), bs_size_str(total, b, sizeof(b)));
    }
    PG.host_limit = bs_cfg.host_limit == BS_SIZE_AUTO ? host_ram_default() : bs_cfg.host_limit;
    PG.pinned_limit = bs_cfg.pinned_limit == BS_SIZE_AUTO ? pinned_default() : bs_cfg.pinned_limit;
    /* The staging ring takes its pinned memory out of the same bound: at most half. */
    PG.staging_reserve = bs_cfg.staging_size < PG.pinned_limit / 2 ? bs_cfg.staging_size
                                                                     : PG.pinned_limit / 2;
    bs_staging_limit(PG.staging_reserve);
    bs_log(BS_LOG_INFO, "host backing: up to %s, of which up to %s pinned (BLOCKSWAP_HOST_LIMIT, "
           "BLOCKSWAP_PINNED_LIMIT); the rest pageable",
           bs_size_str(PG.host_limit, a, sizeof(a)), bs_size_str(PG.pinned_limit, b, sizeof(b)));
    if (bs_fp_setup())
        pg_unmanaged_add(BS_FP_DEVICE_BYTES); /* the shim's own VRAM counts too */
    bs_sched_budget(PG.vram_limit, PG.other_peak);
    PG.ready = true;
    bs_trace_setup();
    if (!exit_registered) {
        exit_registered = true;
        atexit(page_exit);
    }
    return CUDA_SUCCESS;
}

/* ---- host backing ---- */

CUresult pg_ensure_host(struct managed *m)
{
    if (m->host)
        return CUDA_SUCCESS;
    char a[BS_SIZE_STR_LEN], b[BS_SIZE_STR_LEN], c[BS_SIZE_STR_LEN];
    if (PG.host_bytes + m->padded > PG.host_limit) {
        bs_log_limited(5, BS_LOG_ERROR, "host backing exhausted: %s needed, %s in use, "
                       "limit %s; raise BLOCKSWAP_HOST_LIMIT or BLOCKSWAP_VRAM_LIMIT",
                       bs_size_str(m->padded, a, sizeof(a)), bs_size_str(PG.host_bytes, b, sizeof(b)),
                       bs_size_str(PG.host_limit, c, sizeof(c)));
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    void *p = NULL;
    bool pin = PG.pinned_bytes + m->padded + PG.staging_reserve <= PG.pinned_limit;
    if (pin && bs_drv.cuMemHostAlloc(&p, m->padded, 0) != CUDA_SUCCESS) {
        /* The system would not lock more: pageable memory serves, more slowly. */
        bs_log_limited(1, BS_LOG_WARN, "cannot pin %s more of host memory (%s pinned so far): "
                       "further host backing is pageable; lower BLOCKSWAP_PINNED_LIMIT to "
                       "say so up front", bs_size_str(m->padded, a, sizeof(a)),
                       bs_size_str(PG.pinned_bytes, b, sizeof(b)));
        pin = false;
        p = NULL;
        bs_staging_limit(0); /* nor will it pin a ring */
    }
    if (!pin && posix_memalign(&p, 4096, m->padded) != 0) {
        bs_log_limited(5, BS_LOG_ERROR, "cannot allocate %s of host memory for backing (%s in "
                       "use): the machine's RAM is exhausted; lower BLOCKSWAP_HOST_LIMIT or "
                       "free memory", bs_size_str(m->padded, a, sizeof(a)),
                       bs_size_str(PG.host_bytes, c, sizeof(c)));
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    m->host = p;
    m->host_pinned = pin;
    if (pin) {
        PG.pinned_bytes += m->padded;
        if (PG.pinned_bytes > PG.peak_pinned)
            PG.peak_pinned = PG.pinned_bytes;
    }
    PG.host_bytes += m->padded;
    if (PG.host_bytes > PG.peak_host)
        PG.peak_host = PG.host_bytes;
    return CUDA_SUCCESS;
}

void pg_host_free(struct managed *m)
{
    if (!m->host)
        return;
    if (m->host_pinned) {
        bs_drv.cuMemFreeHost(m->host);
        PG.pinned_bytes -= m->padded;
    } else {
        free(m->host);
    }
    PG.host_bytes -= m->padded;
    m->host = NULL;
    m->host_pinned = false;
}

/* ---- waits ---- */

/* When the driver cannot wait for ev, the whole context is waited for instead: slower,
 * but memory is never released under work that still uses it. */
CUresult pg_wait_event(CUevent ev)
{
    if (bs_drv.cuEventSynchronize(ev) == CUDA_SUCCESS)
        return CUDA_SUCCESS;
    return bs_drv.cuCtxSynchronize();
}

/* What an operation issued now on s would wait for (for the legacy stream, that
 * includes earlier work on blocking streams). */
CUresult pg_wait_stream_point(CUstream s)
{
    if (bs_drv.cuEventRecord(PG.scratch[0], s) == CUDA_SUCCESS)
        return pg_wait_event(PG.scratch[0]);
    return bs_drv.cuCtxSynchronize();
}

/* ---- the budget and the resident set ---- */

static void note_peaks(void)
{
    if (PG.resident_unloaded + PG.unmanaged_bytes > PG.other_peak) {
        PG.other_peak = PG.resident_unloaded + PG.unmanaged_bytes;
        bs_sched_budget(PG.vram_limit, PG.other_peak);
    }
    if (PG.resident_bytes + PG.unmanaged_bytes + PG.pool.bytes > PG.peak_used)
        PG.peak_used = PG.resident_bytes + PG.unmanaged_bytes + PG.pool.bytes;
}

void pg_unmanaged_add(uint64_t bytes)
{
    PG.unmanaged_bytes += bytes;
    note_peaks();
}

bool pg_resident_add(struct managed *m)
{
    if (PG.nresident == PG.cap_resident) {
        int ncap = PG.cap_resident ? PG.cap_resident * 2 : 64;
        struct managed **n = realloc(PG.resident, (size_t)ncap * sizeof(*n));
        if (!n)
            return false;
        PG.resident = n;
        PG.cap_resident = ncap;
    }
    m->resident_index = PG.nresident;
    PG.resident[PG.nresident++] = m;
    PG.resident_bytes += m->padded;
    if (!m->sched.loaded)
        PG.resident_unloaded += m->padded;
    note_peaks();
    bs_sched_charge(m, 1);
    return true;
}

void pg_resident_del(struct managed *m)
{
    int i = m->resident_index;
    PG.resident[i] = PG.resident[--PG.nresident];
    PG.resident[i]->resident_index = i;
    m->resident_index = -1;
    PG.resident_bytes -= m->padded;
    if (!m->sched.loaded)
        PG.resident_unloaded -= m->padded;
    bs_sched_charge(m, -1);
}

static bool in_ops(const struct managed *m, struct managed *const *keep, int nkeep)
{
    for (int i = 0; i < nkeep; i++)
        if (keep[i] == m)
            return true;
    return false;
}

/* The resident allocation whose next use is predicted furthest away. Repeated
 * (cyclic) use gives each allocation a period, and last use + period is its next
 * use: on a loop over blocks that is the most recently used one, which keeps a
 * fixed resident set and streams the rest, where LRU would miss every time.
 * Allocations used once so far count as needed now; among equals the least
 * recently used goes first. */
static struct managed *pick_victim_among(struct managed *const *keep, int nkeep,
                                         bool spare_protected)
{
    struct managed *best = NULL;
    uint64_t best_next = 0;
    for (int i = 0; i < PG.nresident; i++) {
        struct managed *m = PG.resident[i];
        if (m->pinned || m->busy || in_ops(m, keep, nkeep) ||
            (spare_protected && bs_sched_protected(m)))
            continue;
        uint64_t next = m->period ? m->last_tick + m->period : PG.tick;
        if (!best || next > best_next ||
            (next == best_next && m->last_tick < best->last_tick)) {
            best = m;
            best_next = next;
        }
    }
    return best;
}

/* Blocks the schedule protects (resident blocks, the swap window) go last. */
static struct managed *pick_victim(struct managed *const *keep, int nkeep)
{
    struct managed *v = pick_victim_among(keep, nkeep, true);
    return v ? v : pick_victim_among(keep, nkeep, false);
}

CUresult pg_make_room(uint64_t need, struct managed *const *keep, int nkeep, const char *what)
{
    for (;;) {
        uint64_t used = PG.resident_bytes + PG.unmanaged_bytes + PG.pool.bytes;
        if (used + need <= PG.vram_limit)
            break;
        /* Pooled memory goes before anything is evicted. */
        if (PG.pool.bytes && pg_pool_release(used + need - PG.vram_limit))
            continue;
        struct managed *v = pick_victim(keep, nkeep);
        if (!v && PG.nbusy && !pg_on_pager) {
            /* The pager is releasing memory (or filling it): wait for it and look again. */
            pthread_cond_wait(&PG.idle_cv, &PG.lock);
            continue;
        }
        if (!v) {
            char a[BS_SIZE_STR_LEN], b[BS_SIZE_STR_LEN], c[BS_SIZE_STR_LEN],
                d[BS_SIZE_STR_LEN], e[BS_SIZE_STR_LEN];
            bs_log_limited(10, BS_LOG_ERROR, "out of VRAM for %s: %s needed, %s in use "
                           "(%s managed and resident, %s unmanaged), limit %s, nothing left "
                           "to evict; raise BLOCKSWAP_VRAM_LIMIT", what,
                           bs_size_str(need, a, sizeof(a)),
                           bs_size_str(PG.resident_bytes + PG.unmanaged_bytes, b, sizeof(b)),
                           bs_size_str(PG.resident_bytes, c, sizeof(c)),
                           bs_size_str(PG.unmanaged_bytes, d, sizeof(d)),
                           bs_size_str(PG.vram_limit, e, sizeof(e)));
            bs_stat_add(BS_STAT_OOM_REFUSALS, 1);
            return CUDA_ERROR_OUT_OF_MEMORY;
        }
        CUresult r = pg_evict(v);
        if (r != CUDA_SUCCESS)
            return r;
    }
    return CUDA_SUCCESS;
}

/* ---- mapping and filling ---- */

CUresult pg_map(struct managed *m)
{
    CUmemAccessDesc acc = { .location = PG.prop.location,
                            .flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE };
    CUresult r = bs_real.cuMemMap(m->va, m->padded, 0, m->phys, 0);
    /* Unmap only a mapping made here: a failed map may have found someone else's. */
    if (r == CUDA_SUCCESS && (r = bs_drv.cuMemSetAccess(m->va, m->padded, &acc, 1)) != CUDA_SUCCESS)
        bs_real.cuMemUnmap(m->va, m->padded);
    if (r != CUDA_SUCCESS) {
        bs_real.cuMemRelease(m->phys);
        m->phys = 0;
    }
    return r;
}

void pg_unmap(struct managed *m)
{
    bs_real.cuMemUnmap(m->va, m->padded);
    pg_pool_give(m);
}

CUresult pg_make_resident(struct managed *m, struct managed *const *keep, int nkeep,
                          bool capturing)
{
    /* A pooled handle of its size is taken first, so that the room made counts it. */
    bool pooled = pg_pool_take(m);
    CUresult r = pg_make_room(m->padded, keep, nkeep, "a kernel's working set");
    /* make_room may have waited for the pager with the lock released, and the pager
     * may have taken m up meanwhile: then it is the pager's (bs_page_begin looks again). */
    if (pooled && (r != CUDA_SUCCESS || m->busy || m->state == RES_DEVICE))
        pg_pool_give(m);
    if (r != CUDA_SUCCESS)
        return r;
    if (m->busy || m->state == RES_DEVICE)
        return CUDA_SUCCESS;
    /* The driver may still refuse (another process took memory): evict and retry. */
    while (!pooled && (r = pg_phys_create(m)) == CUDA_ERROR_OUT_OF_MEMORY) {
        struct managed *v = pick_victim(keep, nkeep);
        if (!v || pg_evict(v) != CUDA_SUCCESS)
            break;
    }
    if (r != CUDA_SUCCESS) {
        char a[BS_SIZE_STR_LEN];
        bs_log_limited(10, BS_LOG_ERROR, "cuMemCreate of %s failed (%s) with nothing left "
                       "to evict; lower BLOCKSWAP_VRAM_LIMIT to what the GPU really has free",
                       bs_size_str(m->padded, a, sizeof(a)), pg_err(r));
        return r;
    }
    if ((r = pg_map(m)) != CUDA_SUCCESS)
        return r;
    if (!pg_resident_add(m)) {
        r = CUDA_ERROR_OUT_OF_MEMORY;
        goto unmap;
    }
    if ((r = pg_start_fill(m, capturing)) != CUDA_SUCCESS) {
        pg_resident_del(m);
        goto unmap;
    }
    return CUDA_SUCCESS;
unmap:
    pg_unmap(m);
    return r;
}

static int copy_from_host(void *ctx, uint64_t off, void *buf, size_t len)
{
    const struct managed *m = ctx;
    memcpy(buf, (const char *)m->host + off, len);
    return 0;
}

/* A page-in through the pinned staging ring, fill() putting each piece in it. The pager
 * does it with the page lock released: m is busy, so nobody else touches it, and the
 * application's launches go on meanwhile. Stopped half-way, it waits for the copies it
 * queued, which must be done before the caller unmaps. */
CUresult pg_fill_staged(struct managed *m, uint64_t off, size_t n,
                        int (*fill)(void *ctx, uint64_t off, void *buf, size_t len), int *err)
{
    bool unlock = pg_on_pager && m->busy;
    *err = 0;
    if (unlock)
        pthread_mutex_unlock(&PG.lock);
    CUresult r = bs_staging_copy_in(m->va + off, n, PG.h2d, fill, m, err);
    if (unlock)
        pg_pager_lock();
    if (r != CUDA_SUCCESS)
        pg_wait_stream_point(PG.h2d);
    return r;
}

/* Pageable backing goes through the ring too: the driver would stage it itself, but
 * synchronously for the calling thread and at pageable speed. */
static CUresult fill_pageable(struct managed *m)
{
    int err;
    return pg_fill_staged(m, 0, m->size, copy_from_host, &err);
}

/* The page-in fingerprint, which eviction compares with to skip copying back a weight
 * that no kernel changed: on the fingerprint stream, after the copy; m->ready then
 * marks both, so the first user waits for the fingerprint too, and when the copy ran
 * ahead of compute, so did the fingerprint and nobody waits. Never on a user's
 * stream: one thread block reading a whole weight would hold up its compute. */
bool pg_fingerprint_in(struct managed *m)
{
    if (m->fp_slot < 0)
        m->fp_slot = bs_fp_slot_get();
    if (m->fp_slot < 0 || bs_drv.cuStreamWaitEvent(PG.fps, m->ready, 0) != CUDA_SUCCESS ||
        bs_fp_launch(m->fp_slot, 0, m->va, m->size, PG.fps) != CUDA_SUCCESS)
        return false;
    if (bs_drv.cuEventRecord(m->ready, PG.fps) != CUDA_SUCCESS) {
        /* Users would not wait for the fingerprint, nor eviction for its reads. */
        bs_drv.cuCtxSynchronize();
        return false;
    }
    return true;
}

CUresult pg_start_fill(struct managed *m, bool capturing)
{
    CUresult r;
    if (m->state == RES_HOST) {
        if (!m->ready && (r = bs_drv.cuEventCreate(&m->ready, CU_EVENT_DISABLE_TIMING)) != CUDA_SUCCESS)
            return r;
        bs_trace_in_begin(m, PG.h2d);
        /* From pinned host backing, from pageable backing through the staging ring, or
         * from the file that stands for it (also through the ring). */
        r = m->host_pinned ? bs_real.cuMemcpyHtoDAsync_v2(m->va, m->host, m->size, PG.h2d)
            : m->host      ? fill_pageable(m)
                           : pg_fb_fill(m);
        if (r != CUDA_SUCCESS)
            return r;
        bs_trace_in_end(m, PG.h2d);
        /* The copy is queued: from here on, failing would leave it writing into memory
         * the caller releases. Without its event, wait for it here instead. */
        m->ready_pending = bs_drv.cuEventRecord(m->ready, PG.h2d) == CUDA_SUCCESS;
        if (!m->ready_pending && (r = bs_drv.cuCtxSynchronize()) != CUDA_SUCCESS)
            return r;
        /* A graph captures what it replays; a weight filled for one is never evicted. */
        m->fp_in = m->ready_pending && !capturing && pg_fingerprint_in(m);
        /* A capturing stream cannot wait on an event from outside the capture. */
        if (capturing && (r = pg_fill_wait(m)) != CUDA_SUCCESS)
            return r;
        bs_stat_add(BS_STAT_PAGE_IN_BYTES, (int64_t)m->size);
    }
    m->state = RES_DEVICE;
    m->dirty = false;
    bs_stat_add(BS_STAT_PAGE_INS, 1);
    return CUDA_SUCCESS;
}

CUresult pg_fill_wait(struct managed *m)
{
    if (!m->ready_pending)
        return CUDA_SUCCESS;
    CUresult r = pg_wait_event(m->ready);
    m->ready_pending = r != CUDA_SUCCESS;
    return r;
}

/* ---- eviction ---- */

/* Makes the shim's D2H stream wait for the work issued so far on the stream slots in
 * mask: events recorded now on each (a wait takes the event as recorded at that
 * moment, so the scratch events can be reused at once). A per-thread default stream
 * cannot be recorded on from another thread: its owner's event after its last
 * operation stands for it. */
static CUresult queue_stream_waits(uint64_t mask)
{
    CUresult r = CUDA_SUCCESS;
    for (int i = 0, e = 2; i < PG.nslots && r == CUDA_SUCCESS; i++) {
        if (!(mask >> i & 1))
            continue;
        if (PG.slots[i].per_thread) {
            r = bs_drv.cuStreamWaitEvent(PG.d2h, PG.slots[i].last, 0);
            continue;
        }
        r = bs_drv.cuEventRecord(PG.scratch[e], PG.slots[i].s);
        if (r == CUDA_SUCCESS)
            r = bs_drv.cuStreamWaitEvent(PG.d2h, PG.scratch[e], 0);
        e++;
    }
    return r;
}

/* The swapped blocks the window just left: their work is all issued, and nothing after
 * it is theirs. The D2H stream is told now to wait for exactly that work, so their
 * eviction, which the pager does later, does not wait for the blocks issued since.
 * Streams in *queued were queued already in this round and are skipped. */
void pg_fence(struct managed *m, uint64_t *queued)
{
    if (m->state != RES_DEVICE || m->busy || m->fenced || !PG.d2h)
        return;
    uint64_t todo = m->streams_used & ~*queued;
    if (todo && queue_stream_waits(todo) != CUDA_SUCCESS)
        return; /* its eviction queues the waits itself */
    *queued |= todo;
    m->fenced = true;
}

/* Makes the D2H stream wait for all work that used m, before anything that evicts it:
 * the waits its fence queued, or, without one (or used since), the work issued on its
 * streams until now. */
static CUresult queue_user_waits(struct managed *m)
{
    CUresult r = m->fenced ? CUDA_SUCCESS : queue_stream_waits(m->streams_used);
    if (r == CUDA_SUCCESS && m->ready_pending)
        r = bs_drv.cuStreamWaitEvent(PG.d2h, m->ready, 0);
    if (r != CUDA_SUCCESS) /* a stream the application destroyed: wait for everything */
        r = bs_drv.cuCtxSynchronize();
    return r;
}

/* Queues the copy of m's device contents to its host backing on the D2H stream. */
static CUresult queue_writeback(struct eviction *e)
{
    struct managed *m = e->m;
    CUresult r = pg_ensure_host(m);
    if (r != CUDA_SUCCESS)
        return r;
    bs_trace_out_begin(m, PG.d2h);
    if ((r = bs_real.cuMemcpyDtoHAsync_v2(m->host, m->va, m->size, PG.d2h)) != CUDA_SUCCESS)
        return r;
    bs_trace_out_end(m, PG.d2h);
    e->copied = true;
    return CUDA_SUCCESS;
}

/* Records e->done on the D2H stream after what was queued there for m. Without it,
 * the whole context is waited for now (a wait on e->done then returns at once, or
 * waits for older work): what was queued must not still be reading when the
 * application writes, nor be unmapped under. */
static CUresult record_done(struct eviction *e)
{
    if (bs_drv.cuEventRecord(e->done, PG.d2h) == CUDA_SUCCESS)
        return CUDA_SUCCESS;
    return bs_drv.cuCtxSynchronize();
}

CUresult pg_evict_start(struct eviction *e)
{
    struct managed *m = e->m;
    CUresult r;
    e->fp_check = e->copied = false;
    if ((r = queue_user_waits(m)) != CUDA_SUCCESS)
        return r;
    bs_trace_evict(m, PG.d2h);
    /* Used by kernels, but perhaps unchanged: compare with the page-in fingerprint. A
     * failure on the way only costs the elision: the contents are copied back. */
    if (m->dirty && m->fp_in)
        e->fp_check = bs_fp_launch(m->fp_slot, 1, m->va, m->size, PG.d2h) == CUDA_SUCCESS &&
                      bs_fp_fetch(m->fp_slot, PG.d2h) == CUDA_SUCCESS;
    if (m->dirty && !e->fp_check && (r = queue_writeback(e)) != CUDA_SUCCESS)
        return r;
    return record_done(e);
}

CUresult pg_evict_settle(struct eviction *e, bool *again)
{
    struct managed *m = e->m;
    *again = false;
    if (!e->fp_check)
        return CUDA_SUCCESS;
    if (bs_fp_equal(m->fp_slot)) {
        m->dirty = false;
        m->host_valid = true;
        bs_stat_add(BS_STAT_WRITEBACK_SKIPPED_BYTES, (int64_t)m->size);
        bs_trace_skipped(m);
        return CUDA_SUCCESS;
    }
    CUresult r = queue_writeback(e);
    if (r == CUDA_SUCCESS)
        r = record_done(e);
    *again = r == CUDA_SUCCESS;
    return r;
}

CUresult pg_evict_release(struct eviction *e)
{
    CUresult r = bs_real.cuMemUnmap(e->m->va, e->m->padded);
    if (r != CUDA_SUCCESS)
        bs_log_limited(3, BS_LOG_ERROR, "cuMemUnmap of an evicted allocation failed (%s): "
                       "it stays resident", pg_err(r));
    return r;
}

void pg_evict_finish(struct eviction *e)
{
    struct managed *m = e->m;
    if (e->copied) {
        bs_stat_add(BS_STAT_WRITEBACK_BYTES, (int64_t)m->size);
        pg_fb_drop(m); /* changed by kernels (a LoRA patched in place): no longer the file's */
    }
    if (e->drop) {
        bs_real.cuMemRelease(m->phys);
        PG.pool.released++;
        m->phys = 0;
    } else {
        pg_pool_give(m);
    }
    m->host_valid = m->host_valid || e->copied;
    m->state = m->host_valid ? RES_HOST : RES_EMPTY;
    m->dirty = m->fp_in = m->ready_pending = m->fenced = false;
    m->streams_used = 0;
    pg_resident_del(m);
    bs_stat_add(BS_STAT_EVICTIONS, 1);
}

static CUresult evict_here(struct managed *m, bool drop)
{
    struct eviction e = { .m = m, .drop = drop, .done = PG.scratch[PG_SCRATCH_EVICT] };
    bool again = false;
    CUresult r = pg_evict_start(&e);
    if (r == CUDA_SUCCESS)
        r = pg_wait_event(e.done);
    if (r == CUDA_SUCCESS)
        r = pg_evict_settle(&e, &again);
    if (r == CUDA_SUCCESS && again)
        r = pg_wait_event(e.done);
    if (r == CUDA_SUCCESS)
        r = pg_evict_release(&e);
    if (r == CUDA_SUCCESS)
        pg_evict_finish(&e);
    return r;
}

CUresult pg_evict(struct managed *m)
{
    return evict_here(m, false);
}

CUresult pg_evict_for_free(struct managed *m)
{
    return evict_here(m, true);
}

CUresult pg_evict_if_idle(struct managed *m, bool copy)
{
    if (m->state != RES_DEVICE || m->pinned || m->busy)
        return CUDA_SUCCESS;
    if (copy) {
        m->dirty = true; /* the Python nodes copy every block back, changed or not */
        m->fp_in = false;
    }
    return pg_evict(m);
}

/* ---- what the schedule decided ---- */

/* The allocations of plan `what`, a chunk at a time: op may release the lock (make_room
 * waits for the pager), so the list lives on this thread's stack and is asked again
 * after each chunk, until a chunk changes nothing. */
#define PLAN_CHUNK 256

static void for_plan(enum bs_plan what, bool (*op)(struct managed *m, bool also), bool also)
{
    struct managed *list[PLAN_CHUNK];
    int n;
    do {
        bool changed = false;
        n = bs_sched_plan(what, list, PLAN_CHUNK);
        for (int i = 0; i < n; i++)
            changed |= op(list[i], also);
        if (!changed)
            break;
    } while (n == PLAN_CHUNK);
}

/* Evicts m when resident and idle, copying it back changed or not when `copy`. */
static bool evict_op(struct managed *m, bool copy)
{
    return m->state == RES_DEVICE && pg_evict_if_idle(m, copy) == CUDA_SUCCESS &&
           m->state != RES_DEVICE;
}

/* Makes m resident, and when `wait`, waits for its fill. */
static bool fetch_op(struct managed *m, bool wait)
{
    if (m->state == RES_DEVICE || m->busy ||
        pg_make_resident(m, &m, 1, false) != CUDA_SUCCESS || m->state != RES_DEVICE)
        return false;
    if (wait && !m->busy)
        pg_fill_wait(m);
    return true;
}

/* One chunk: a member left unfenced queues its own waits at its eviction. */
static void fence_behind(void)
{
    struct managed *list[PLAN_CHUNK];
    uint64_t queued = 0;
    int n = bs_sched_plan(BS_PLAN_BEHIND, list, PLAN_CHUNK);
    for (int i = 0; i < n; i++)
        pg_fence(list[i], &queued);
}

void pg_follow_schedule(unsigned act)
{
    if (act & BS_SCHED_SYNC) {
        /* What the Python nodes do: device-wide synchronisation, copy back (changed or
         * not), copy in and wait, block by block. */
        bs_drv.cuCtxSynchronize();
        for_plan(BS_PLAN_SYNC_OUT, evict_op, true);
        for_plan(BS_PLAN_SYNC_IN, fetch_op, true);
        return;
    }
    if (!(act & BS_SCHED_MOVED))
        return;
    fence_behind();
    if (act & BS_SCHED_OVER) {
        /* The one move after detection: what it frees is more than the window will
         * fill again, so it goes back to the driver rather than to the pool. */
        pg_catch_up();
        pg_pool_release(UINT64_MAX);
    }
    /* The pager thread does the rest; at a resident block, it already has it to do or
     * will at the next swapped one. */
    if (pg_pager_kick() || (act & BS_SCHED_AT_RESIDENT))
        return;
    for_plan(BS_PLAN_BEHIND, evict_op, false);
    for_plan(BS_PLAN_FETCH, fetch_op, false);
}

/* The late path of a launch: the swapped blocks behind the window go now, on this
 * thread, so that VRAM stays within what the window promises. */
void pg_catch_up(void)
{
    for_plan(BS_PLAN_BEHIND, evict_op, false);
}
