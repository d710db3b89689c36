/* page/ops.c: the entry points interpose/ calls for operations on memory: kernel
 * launches, copies and memsets (bs_page_begin/end), host copies served from host
 * backing, stream capture and destruction. Takes the page lock; decides with
 * schedule/ and acts through residency.c. */
#define _GNU_SOURCE
#include "page/backing.h"
#include "page/internal.h"
#include "trace/trace.h"

#include <sched.h>
#include <string.h>

#define PG bs_pg

/* The per-thread slot whose event bs_page_end records after the operation. */
static BS_TLS int record_slot = -1;
/* A load straight to VRAM of bytes a file holds, and its stream: bs_page_end takes its
 * fingerprint after the copy, so that eviction finds it unchanged and copies nothing
 * back (the file stands for it) instead of writing every such weight to host memory. */
static BS_TLS struct managed *fp_load;
static BS_TLS CUstream fp_load_stream;

bool bs_page_managed_any(void)
{
    return __atomic_load_n(&PG.managed_count, __ATOMIC_RELAXED) != 0;
}

/* The distinct managed allocations addrs[0..n) point into, each with whether the
 * operation may write it. Returns how many. */
static int collect(const uint64_t *addrs, int n, uint64_t write_mask, unsigned flags,
                   struct managed **ms, bool *writes)
{
    int nm = 0;
    for (int i = 0; i < n && nm < BS_LAUNCH_MAX_REFS; i++) {
        uint64_t base;
        struct managed *m;
        bool w = i >= 64 || (write_mask >> i & 1);
        /* Launch sets hold allocation bases already: skip the second lookup. */
        if (flags & BS_PAGE_BASES)
            base = addrs[i];
        else if (!addrs[i] || !bs_alloc_map_lookup(addrs[i], &base))
            continue;
        if (!(m = pg_find(base)))
            continue;
        int j = 0;
        while (j < nm && ms[j] != m)
            j++;
        if (j == nm) {
            ms[nm] = m;
            writes[nm++] = w;
        } else {
            writes[j] |= w;
        }
    }
    return nm;
}

/* Waits for what the pager is doing to ms[]. A swapped block the pager has not brought
 * in yet is brought in by the caller, but only once the pager is idle and the blocks
 * behind the window are gone, so VRAM stays within what the window promises. */
static void wait_for_pager(struct managed **ms, int nm)
{
    for (;;) {
        struct managed *b = NULL;
        bool late = false;
        for (int i = 0; i < nm && !b; i++)
            if (ms[i]->busy)
                b = ms[i];
            else if (ms[i]->state != RES_DEVICE && bs_sched_swapped_member(ms[i]))
                late = true;
        if (b) {
            pg_wait_idle(b);
            continue;
        }
        if (late && (PG.nbusy || PG.pager.pending)) {
            pthread_cond_wait(&PG.idle_cv, &PG.lock);
            continue;
        }
        if (late)
            pg_catch_up();
        return;
    }
}

/* Makes ms[] resident and ready for work on s. */
static CUresult make_ready(struct managed **ms, int nm, CUstream s, bool capturing)
{
    CUresult r = CUDA_SUCCESS;
    for (int i = 0; i < nm && r == CUDA_SUCCESS; i++) {
        struct managed *m = ms[i];
        if (m->state != RES_DEVICE)
            r = pg_make_resident(m, ms, nm, capturing);
        if (r != CUDA_SUCCESS || !m->ready_pending)
            continue;
        if (bs_drv.cuEventQuery(m->ready) == CUDA_SUCCESS)
            m->ready_pending = false;
        else if (capturing || bs_drv.cuStreamWaitEvent(s, m->ready, 0) != CUDA_SUCCESS)
            r = pg_fill_wait(m);
    }
    return r;
}

CUresult bs_page_begin(const uint64_t *addrs, int n, uint64_t write_mask, CUstream s,
                       unsigned flags)
{
    struct managed *ms[BS_LAUNCH_MAX_REFS];
    bool writes[BS_LAUNCH_MAX_REFS];
    pthread_mutex_lock(&PG.lock);
    int nm = collect(addrs, n, write_mask, flags, ms, writes);
    if (!nm)
        return CUDA_SUCCESS; /* lock held: the caller's bs_page_end releases it */
    s = pg_norm_stream(s, flags);
    int slot = pg_slot_of(s);
    bool capturing = slot >= 0 && PG.slots[slot].capturing;
    record_slot = slot >= 0 && PG.slots[slot].per_thread && !capturing ? slot : -1;
    /* The tracer marks where the stream stood before any waiting; a block found only
     * by the detection that scheduling runs is marked after it. */
    struct managed *tb = NULL;
    bool traced = bs_trace_on(), may_wait = false;
    for (int i = 0; i < nm && traced; i++) {
        if (ms[i]->sched.block >= 0 && !tb)
            tb = ms[i];
        may_wait |= ms[i]->state != RES_DEVICE || ms[i]->busy || ms[i]->ready_pending;
    }
    if (tb)
        bs_trace_launch_begin(tb, s, capturing, may_wait);
    /* Scheduling first: it may evict blocks that are done and prefetch the next ones;
     * anything of this operation it evicts is made resident again below. */
    for (int i = 0; i < nm; i++) {
        unsigned act = bs_sched_use(ms[i]);
        if (BS_UNLIKELY(act))
            pg_follow_schedule(act);
    }
    for (int i = 0; i < nm && traced && !tb; i++)
        if (ms[i]->sched.block >= 0)
            tb = ms[i];
    if (tb)
        bs_trace_launch_begin(tb, s, capturing, may_wait);
    /* Waiting for the pager releases the lock, and so may make_room: meanwhile another
     * thread or the pager may take what this operation already made resident. Until
     * everything is resident and idle at once, start over. */
    CUresult r;
    bool lost;
    do {
        wait_for_pager(ms, nm);
        r = make_ready(ms, nm, s, capturing);
        lost = false;
        for (int i = 0; i < nm && r == CUDA_SUCCESS && !lost; i++)
            lost = ms[i]->state != RES_DEVICE || ms[i]->busy;
    } while (lost);
    if (r != CUDA_SUCCESS) {
        record_slot = -1;
        bs_trace_launch_cancel();
        pthread_mutex_unlock(&PG.lock);
        return r;
    }
    if (tb)
        bs_trace_launch_ready(); /* what follows on s is the block's compute */
    for (int i = 0; i < nm; i++) {
        struct managed *m = ms[i];
        /* A graph may replay it at any time; with too many streams to follow, its users
         * are unknown: either way it stays resident. */
        if (capturing || slot < 0)
            m->pinned = true;
        pg_note_use(m, slot, writes[i]);
    }
    return CUDA_SUCCESS;
}

void bs_page_end(void)
{
    if (bs_trace_on())
        bs_trace_launch_end();
    if (record_slot >= 0) {
        /* Eviction waits on this event for the operation just issued; without it, the
         * operation must be over before anything it used can go. */
        if (bs_drv.cuEventRecord(PG.slots[record_slot].last, CU_STREAM_PER_THREAD) != CUDA_SUCCESS)
            bs_drv.cuCtxSynchronize();
        record_slot = -1;
    }
    if (fp_load) {
        struct managed *m = fp_load;
        fp_load = NULL;
        if ((m->ready || bs_drv.cuEventCreate(&m->ready, CU_EVENT_DISABLE_TIMING) == CUDA_SUCCESS) &&
            bs_drv.cuEventRecord(m->ready, fp_load_stream) == CUDA_SUCCESS) {
            m->ready_pending = true; /* users wait for the fingerprint's reads */
            m->fp_in = pg_fingerprint_in(m);
        }
    }
    pthread_mutex_unlock(&PG.lock);
    if (BS_UNLIKELY(__atomic_load_n(&PG.pager_waiting, __ATOMIC_RELAXED)))
        sched_yield();
}

/* A load straight to VRAM: m, which no kernel used yet, becomes resident without a
 * fill when it fits beside what is resident now, evicting nothing (what stays in VRAM
 * then never needs host memory; what must leave is written back when it does). Loads
 * stop 1/PG_LOAD_MARGIN short of the limit: the small unmanaged allocations a loader
 * interleaves with its weights then fit without evicting (and writing back) one. */
#define PG_LOAD_MARGIN 16
static bool load_in_place(struct managed *m)
{
    if (m->busy)
        return false; /* bs_page_begin waits for the pager */
    if (m->state == RES_DEVICE)
        return true;
    if (m->state != RES_EMPTY)
        return false;
    bool pooled = pg_pool_take(m);
    uint64_t used = PG.resident_bytes + PG.unmanaged_bytes + PG.pool.bytes;
    if (used + m->padded > PG.vram_limit - PG.vram_limit / PG_LOAD_MARGIN ||
        (!pooled && pg_phys_create(m) != CUDA_SUCCESS)) {
        if (pooled)
            pg_pool_give(m);
        return false;
    }
    if (pg_map(m) != CUDA_SUCCESS) /* the handle is released */
        return false;
    bs_sched_loaded(m); /* a weight, before it joins the resident set */
    if (!pg_resident_add(m)) {
        pg_unmap(m);
        return false;
    }
    m->state = RES_DEVICE;
    m->fp_in = false;
    return true;
}

/* Host-to-device copy into a managed allocation that no kernel used yet (a load) or
 * that is not resident. While VRAM has room, a load goes straight to the device:
 * BS_PAGE_DIRECT, with the lock held until the caller's bs_page_end after its copy.
 * Otherwise it is written to host backing, in the stream's order. Returns
 * BS_PAGE_NOT_HANDLED when dst is not managed or is resident and in use (the caller
 * then goes through bs_page_begin). */
CUresult bs_page_htod(uint64_t dst, const void *src, size_t n, CUstream s, unsigned flags)
{
    uint64_t base;
    if (!bs_alloc_map_lookup(dst, &base))
        return BS_PAGE_NOT_HANDLED;
    pthread_mutex_lock(&PG.lock);
    struct managed *m = pg_find(base);
    CUresult r = BS_PAGE_NOT_HANDLED;
    if (!m || dst + n > m->va + m->size)
        goto out;
    s = pg_norm_stream(s, flags);
    if (!m->sched.used && !m->pinned && load_in_place(m)) {
        /* Clean when a file holds every byte loaded: eviction then copies nothing. */
        bool backed = pg_fb_note(m, dst - m->va, src, n);
        m->dirty = !backed;
        m->host_valid = backed;
        m->fp_in = false; /* an earlier load's fingerprint is not these bytes' */
        /* Eviction waits for the copy as for any other use; but the load is not a
         * use: the victim choice and block detection see kernels only. */
        int slot = pg_slot_of(s);
        /* A page-in the pager started (a stack detected while loading) comes first. */
        if (m->ready_pending && bs_drv.cuStreamWaitEvent(s, m->ready, 0) != CUDA_SUCCESS)
            pg_fill_wait(m);
        if (slot >= 0 && !PG.slots[slot].capturing) {
            m->streams_used |= 1ull << slot;
            m->fenced = false;
            record_slot = PG.slots[slot].per_thread ? slot : -1;
            if (backed) {
                fp_load = m;
                fp_load_stream = s;
            }
        } else {
            m->pinned = true; /* its users cannot be followed, as in bs_page_begin */
        }
        bs_stat_add(BS_STAT_LOAD_DIRECT_BYTES, (int64_t)n);
        return BS_PAGE_DIRECT; /* lock held: the caller's bs_page_end releases it */
    }
    if (m->state == RES_DEVICE)
        goto out;
    uint64_t off = dst - m->va;
    bool file_only = m->state == RES_HOST && !m->host && m->fb_file;
    if (pg_fb_note(m, off, src, n)) {
        /* The file holds every byte written: no copy in memory (a host copy made for
         * bytes the file has now overwritten goes). */
        pg_host_free(m);
        if (m->state == RES_EMPTY)
            bs_sched_loaded(m);
        m->state = RES_HOST;
        m->host_valid = true;
        bs_stat_add(BS_STAT_HOST_WRITES, 1);
        r = CUDA_SUCCESS;
        goto out;
    }
    /* Other bytes join a file-backed allocation: the file's part is read into
     * anonymous host backing first. */
    if ((r = file_only ? pg_fb_materialize(m) : pg_ensure_host(m)) != CUDA_SUCCESS)
        goto out;
    if ((r = pg_wait_stream_point(s)) != CUDA_SUCCESS)
        goto out;
    if (m->state == RES_EMPTY) { /* fresh device memory reads as zero in the simulator */
        memset(m->host, 0, off);
        memset((char *)m->host + off + n, 0, m->size - off - n);
        bs_sched_loaded(m);
    }
    memcpy((char *)m->host + off, src, n);
    m->state = RES_HOST;
    m->host_valid = true;
    bs_stat_add(BS_STAT_HOST_WRITES, 1);
out:
    pthread_mutex_unlock(&PG.lock);
    return r;
}

/* Device-to-host copy from a managed allocation that is not resident: served from
 * its host backing. Same contract as bs_page_htod. */
CUresult bs_page_dtoh(void *dst, uint64_t src, size_t n, CUstream s, unsigned flags)
{
    uint64_t base;
    if (!bs_alloc_map_lookup(src, &base))
        return BS_PAGE_NOT_HANDLED;
    pthread_mutex_lock(&PG.lock);
    struct managed *m = pg_find(base);
    CUresult r = BS_PAGE_NOT_HANDLED;
    if (!m || m->state == RES_DEVICE || src + n > m->va + m->size)
        goto out;
    if ((r = pg_wait_stream_point(pg_norm_stream(s, flags))) != CUDA_SUCCESS)
        goto out;
    if (m->state == RES_EMPTY)
        memset(dst, 0, n);
    else if (!m->host && pg_fb_backed(m))
        r = pg_fb_read(m, src - m->va, dst, n);
    else
        memcpy(dst, (char *)m->host + (src - m->va), n);
    if (r == BS_PAGE_NOT_HANDLED)
        r = CUDA_SUCCESS;
out:
    pthread_mutex_unlock(&PG.lock);
    return r;
}

/* A unified address the driver does not know as device memory is host memory, and a
 * host side allows the host-backing path. */
bool bs_page_is_host(uint64_t p)
{
    uint64_t base;
    CUmemorytype type = 0;
    if (!p || bs_alloc_map_lookup(p, &base))
        return false;
    return !bs_drv.cuPointerGetAttribute ||
           bs_drv.cuPointerGetAttribute(&type, CU_POINTER_ATTRIBUTE_MEMORY_TYPE, p) != CUDA_SUCCESS ||
           type == CU_MEMORYTYPE_HOST;
}

void bs_page_capture(CUstream s, unsigned flags, bool on)
{
    pthread_mutex_lock(&PG.lock);
    int slot = pg_slot_of(pg_norm_stream(s, flags));
    if (slot >= 0)
        PG.slots[slot].capturing = on;
    pthread_mutex_unlock(&PG.lock);
}

/* The D2H stream waits for the work still queued on s (the driver completes it after
 * the destroy), so every eviction queued later follows it; the allocations that used s
 * forget its slot, which a new stream may take. Otherwise an eviction would record on a
 * dead handle and synchronise the whole context instead, a new stream given the same
 * handle would pass for s, and once 64 streams had come and gone, what a new one used
 * would be pinned. */
void bs_page_stream_gone(CUstream s)
{
    pthread_mutex_lock(&PG.lock);
    for (int i = 0; i < PG.nslots; i++) {
        if (PG.slots[i].gone || PG.slots[i].per_thread || PG.slots[i].s != s)
            continue;
        if (PG.d2h && (bs_drv.cuEventRecord(PG.scratch[1], s) != CUDA_SUCCESS ||
                       bs_drv.cuStreamWaitEvent(PG.d2h, PG.scratch[1], 0) != CUDA_SUCCESS))
            bs_drv.cuCtxSynchronize(); /* s is not what the application said it was */
        uint64_t keep = ~(1ull << i);
        for (unsigned h = 0; h < BS_ARRAY_SIZE(PG.table); h++)
            for (struct managed *m = PG.table[h]; m; m = m->hash_next)
                m->streams_used &= keep;
        PG.slots[i].gone = true;
    }
    pthread_mutex_unlock(&PG.lock);
}
