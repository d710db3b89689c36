/* page/page.c: residency of managed allocations. A managed allocation is a VA range
 * the shim reserved; physical VRAM is mapped behind it only while GPU work needs it,
 * and its contents otherwise live in pinned host backing. Owns the budget
 * (BLOCKSWAP_VRAM_LIMIT), eviction with write-back, the shim's own streams and events,
 * and the ordering rule: nothing is unmapped before the work that used it completed.
 * One mutex guards it all; the launch path takes it only when a launch points into
 * managed memory. */
#define _GNU_SOURCE
#include "bs.h"
#include "blockswap.h"
#include "page/page.h"
#include "trace/trace.h"

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_STREAMS 64
/* An application stream that used managed memory. A per-thread default stream means a
 * different stream on each thread, and no other thread can record on it: its slot
 * belongs to one thread and carries an event recorded after that thread's every
 * operation on managed memory, which eviction waits on instead. */
struct stream_slot {
    CUstream s;
    pthread_t owner;  /* per_thread only */
    bool per_thread;
    bool capturing;
    bool gone;        /* destroyed by the application: free for another stream */
    CUevent last;     /* per_thread only */
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
/* page_cv: an allocation stopped being busy. pager_cv: the pager has work. */
static pthread_cond_t page_cv = PTHREAD_COND_INITIALIZER, pager_cv = PTHREAD_COND_INITIALIZER;
static int nbusy;
static bool pager_started, pager_pending, stopping;
static bool pager_round; /* the pager is between the evictions and fetches of one change */
static BS_TLS bool on_pager;
/* Set while the pager waits for the lock: launch paths hand it over when they end,
 * or a busy application thread could keep it from the pager indefinitely. */
static int pager_waiting;

static bool ready;            /* shim resources created in the application's context */
static CUcontext ctx;
static CUstream h2d, d2h, fps; /* the shim's own streams: copies in, evictions, fingerprints */
static CUevent scratch[MAX_STREAMS + 2];
static size_t granularity;
static CUmemAllocationProp prop;
static uint64_t vram_limit, host_limit;
static uint64_t resident_bytes, unmanaged_bytes, host_bytes, managed_bytes, managed_count;
/* Activations and the like: unmanaged plus resident managed memory that was not loaded
 * from the host. Its peak is the headroom block scheduling leaves. */
static uint64_t resident_unloaded, other_peak;
static uint64_t peak_used, peak_host; /* high-water marks of resident + unmanaged, host_bytes */
static uint64_t tick;
static struct stream_slot slots[MAX_STREAMS];
static int nslots;
static struct managed **resident;
static int nresident, cap_resident;
#define HASH_BITS 12
static struct managed *table[1u << HASH_BITS];

/* ---- small helpers ---- */

static inline uint64_t round_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

static inline unsigned hash_va(uint64_t va)
{
    return (unsigned)((va >> 21) * 0x9e3779b97f4a7c15ULL >> (64 - HASH_BITS));
}

static struct managed *find(uint64_t va)
{
    for (struct managed *m = table[hash_va(va)]; m; m = m->hash_next)
        if (m->va == va)
            return m;
    return NULL;
}

static const char *mib(uint64_t b, char *buf, size_t len)
{
    snprintf(buf, len, "%.1f MiB", b / 1048576.0);
    return buf;
}

static const char *cu_err(CUresult r)
{
    const char *s = NULL;
    if (bs_drv.cuGetErrorName)
        bs_drv.cuGetErrorName(r, &s);
    return s ? s : "CUDA error";
}

static CUstream norm_stream(CUstream s, unsigned flags)
{
    return (!s && (flags & BS_PAGE_PTSZ)) ? CU_STREAM_PER_THREAD : s;
}

static int slot_of(CUstream s)
{
    bool pt = s == CU_STREAM_PER_THREAD;
    pthread_t self = pthread_self();
    int free_slot = -1;
    for (int i = 0; i < nslots; i++) {
        if (slots[i].gone)
            free_slot = free_slot < 0 ? i : free_slot;
        else if (slots[i].s == s && (!pt || pthread_equal(slots[i].owner, self)))
            return i;
    }
    if (free_slot < 0 && nslots == MAX_STREAMS)
        return -1;
    int i = free_slot >= 0 ? free_slot : nslots;
    struct stream_slot *sl = &slots[i];
    memset(sl, 0, sizeof(*sl));
    sl->s = s;
    if (pt) {
        if (!ready || bs_drv.cuEventCreate(&sl->last, CU_EVENT_DISABLE_TIMING) != CUDA_SUCCESS)
            return -1; /* not followed: what uses it is pinned */
        sl->per_thread = true;
        sl->owner = self;
    }
    if (i == nslots)
        nslots++;
    return i;
}

/* The per-thread slot whose event bs_page_end records after the operation. */
static BS_TLS int record_slot = -1;

/* ---- set-up, in the application's current context ---- */

static uint64_t host_ram_default(void)
{
    long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
    uint64_t total = pages > 0 && psz > 0 ? (uint64_t)pages * (uint64_t)psz : 0;
    uint64_t keep = 4ull << 30;
    /* Pinned memory cannot be swapped: leave the system 4 GiB, or half of a small box. */
    return total > 2 * keep ? total - keep : total / 2;
}

static CUresult setup_locked(void)
{
    if (ready)
        return CUDA_SUCCESS;
    CUresult r = bs_drv.cuCtxGetCurrent(&ctx);
    if (r != CUDA_SUCCESS || !ctx)
        return r != CUDA_SUCCESS ? r : CUDA_ERROR_INVALID_CONTEXT;
    CUdevice dev;
    if ((r = bs_drv.cuCtxGetDevice(&dev)) != CUDA_SUCCESS)
        return r;
    memset(&prop, 0, sizeof(prop));
    prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
    prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    prop.location.id = dev;
    if ((r = bs_drv.cuMemGetAllocationGranularity(&granularity, &prop,
                                                  CU_MEM_ALLOC_GRANULARITY_RECOMMENDED)) != CUDA_SUCCESS)
        return r;
    /* A failure here is retried at the next call: keep what was already made. The
     * D2H stream runs the eviction fingerprints, one thread block each: at the greatest
     * priority the GPU dispatches it ahead of the application's waiting thread blocks,
     * so an eviction does not wait for the kernels issued after its block's. */
    int least = 0, greatest = 0;
    bool ranked = bs_drv.cuCtxGetStreamPriorityRange(&least, &greatest) == CUDA_SUCCESS;
    if (!d2h && (!ranked || bs_drv.cuStreamCreateWithPriority(&d2h, CU_STREAM_NON_BLOCKING,
                                                              greatest) != CUDA_SUCCESS))
        d2h = NULL;
    if (!fps && (!ranked || bs_drv.cuStreamCreateWithPriority(&fps, CU_STREAM_NON_BLOCKING,
                                                              greatest) != CUDA_SUCCESS))
        fps = NULL;
    if ((!h2d && (r = bs_drv.cuStreamCreate(&h2d, CU_STREAM_NON_BLOCKING)) != CUDA_SUCCESS) ||
        (!d2h && (r = bs_drv.cuStreamCreate(&d2h, CU_STREAM_NON_BLOCKING)) != CUDA_SUCCESS) ||
        (!fps && (r = bs_drv.cuStreamCreate(&fps, CU_STREAM_NON_BLOCKING)) != CUDA_SUCCESS))
        return r;
    for (unsigned i = 0; i < BS_ARRAY_SIZE(scratch); i++)
        if (!scratch[i] &&
            (r = bs_drv.cuEventCreate(&scratch[i], CU_EVENT_DISABLE_TIMING)) != CUDA_SUCCESS)
            return r;

    char a[32], b[32], c[32];
    vram_limit = bs_cfg.vram_limit;
    if (vram_limit == BS_SIZE_AUTO) {
        size_t free_b = 0, total = 0;
        if ((r = bs_real.cuMemGetInfo_v2(&free_b, &total)) != CUDA_SUCCESS)
            return r;
        vram_limit = free_b > bs_cfg.reserve ? free_b - bs_cfg.reserve : 0;
        bs_log(BS_LOG_INFO, "VRAM limit %s: %s free at start minus BLOCKSWAP_RESERVE=%s",
               mib(vram_limit, a, sizeof(a)), mib(free_b, b, sizeof(b)),
               mib(bs_cfg.reserve, c, sizeof(c)));
    } else {
        bs_log(BS_LOG_INFO, "VRAM limit %s (BLOCKSWAP_VRAM_LIMIT)", mib(vram_limit, a, sizeof(a)));
    }
    host_limit = bs_cfg.host_limit == BS_SIZE_AUTO ? host_ram_default() : bs_cfg.host_limit;
    if (bs_fp_setup())
        unmanaged_bytes += BS_FP_DEVICE_BYTES; /* the shim's own VRAM counts too */
    ready = true;
    bs_trace_setup();
    return CUDA_SUCCESS;
}

/* ---- host backing ---- */

static CUresult ensure_host(struct managed *m)
{
    if (m->host)
        return CUDA_SUCCESS;
    char a[32], b[32], c[32];
    if (host_bytes + m->padded > host_limit) {
        bs_log_limited(5, BS_LOG_ERROR, "host backing exhausted: %s needed, %s in use, "
                       "limit %s; raise BLOCKSWAP_HOST_LIMIT or BLOCKSWAP_VRAM_LIMIT",
                       mib(m->padded, a, sizeof(a)), mib(host_bytes, b, sizeof(b)),
                       mib(host_limit, c, sizeof(c)));
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    void *p = NULL;
    CUresult r = bs_drv.cuMemHostAlloc(&p, m->padded, 0);
    if (r != CUDA_SUCCESS) {
        bs_log_limited(5, BS_LOG_ERROR, "cannot pin %s of host memory for backing (%s; "
                       "%s pinned so far): the machine's RAM is exhausted; lower "
                       "BLOCKSWAP_HOST_LIMIT or free memory", mib(m->padded, a, sizeof(a)),
                       cu_err(r), mib(host_bytes, b, sizeof(b)));
        return r;
    }
    m->host = p;
    host_bytes += m->padded;
    if (host_bytes > peak_host)
        peak_host = host_bytes;
    return CUDA_SUCCESS;
}

/* Blocks until event ev has completed. When the driver cannot wait for it, the whole
 * context is waited for instead: slower, but memory is never released under work that
 * still uses it. */
static CUresult wait_event(CUevent ev)
{
    if (bs_drv.cuEventSynchronize(ev) == CUDA_SUCCESS)
        return CUDA_SUCCESS;
    return bs_drv.cuCtxSynchronize();
}

/* Blocks until everything queued so far on s is done (with ev, a scratch event); as
 * wait_event, falls back to the whole context. */
static CUresult wait_queued(CUstream s, CUevent ev)
{
    if (bs_drv.cuEventRecord(ev, s) == CUDA_SUCCESS)
        return wait_event(ev);
    return bs_drv.cuCtxSynchronize();
}

/* Blocks until the point of stream s the application has reached is done: what an
 * operation issued now on s would wait for (for the legacy stream, that includes
 * earlier work on blocking streams). */
static CUresult wait_stream_point(CUstream s)
{
    return wait_queued(s, scratch[0]);
}

/* ---- residency ---- */

static bool resident_add(struct managed *m)
{
    if (nresident == cap_resident) {
        int ncap = cap_resident ? cap_resident * 2 : 64;
        struct managed **n = realloc(resident, (size_t)ncap * sizeof(*n));
        if (!n)
            return false;
        resident = n;
        cap_resident = ncap;
    }
    m->resident_index = nresident;
    resident[nresident++] = m;
    resident_bytes += m->padded;
    if (!m->loaded)
        resident_unloaded += m->padded;
    if (resident_unloaded + unmanaged_bytes > other_peak)
        other_peak = resident_unloaded + unmanaged_bytes;
    if (resident_bytes + unmanaged_bytes > peak_used)
        peak_used = resident_bytes + unmanaged_bytes;
    bs_sched_charge(m, 1);
    return true;
}

static void resident_del(struct managed *m)
{
    int i = m->resident_index;
    resident[i] = resident[--nresident];
    resident[i]->resident_index = i;
    m->resident_index = -1;
    resident_bytes -= m->padded;
    if (!m->loaded)
        resident_unloaded -= m->padded;
    bs_sched_charge(m, -1);
}

/* Makes the shim's D2H stream wait for the work issued so far on the stream slots in
 * mask: events recorded now on each (a wait takes the event as recorded at that
 * moment, so the scratch events can be reused at once). A per-thread default stream
 * cannot be recorded on from another thread: its owner's event after its last
 * operation stands for it. */
static CUresult queue_stream_waits(uint64_t mask)
{
    CUresult r = CUDA_SUCCESS;
    for (int i = 0, e = 1; i < nslots && r == CUDA_SUCCESS; i++) {
        if (!(mask >> i & 1))
            continue;
        if (slots[i].per_thread) {
            r = bs_drv.cuStreamWaitEvent(d2h, slots[i].last, 0);
            continue;
        }
        r = bs_drv.cuEventRecord(scratch[e], slots[i].s);
        if (r == CUDA_SUCCESS)
            r = bs_drv.cuStreamWaitEvent(d2h, scratch[e], 0);
        e++;
    }
    return r;
}

/* Makes the D2H stream wait for all work that used m, before anything that evicts it:
 * the waits its fence queued when the window left its block, or, without one (or used
 * since), the work issued on its streams until now. */
static CUresult queue_user_waits(struct managed *m)
{
    CUresult r = m->fenced ? CUDA_SUCCESS : queue_stream_waits(m->streams_used);
    if (r == CUDA_SUCCESS && m->ready_pending)
        r = bs_drv.cuStreamWaitEvent(d2h, m->ready, 0);
    if (r != CUDA_SUCCESS) /* a stream the application destroyed: wait for everything */
        r = bs_drv.cuCtxSynchronize();
    return r;
}

static CUresult evict(struct managed *m)
{
    CUresult r = queue_user_waits(m);
    int e = MAX_STREAMS + 1;
    if (r != CUDA_SUCCESS)
        return r;
    bs_trace_evict(m, d2h);
    /* Used by kernels, but perhaps unchanged: compare with the page-in fingerprint. */
    /* A failure on the way only costs the elision: the contents are copied back. */
    if (m->dirty && m->fp_in) {
        if (bs_fp_launch(m->fp_slot, 1, m->va, m->size, d2h) == CUDA_SUCCESS &&
            bs_fp_fetch(m->fp_slot, d2h) == CUDA_SUCCESS &&
            wait_queued(d2h, scratch[e]) == CUDA_SUCCESS && bs_fp_equal(m->fp_slot)) {
            m->dirty = false;
            m->host_valid = true;
            bs_stat_add(BS_STAT_WRITEBACK_SKIPPED_BYTES, (int64_t)m->size);
            bs_trace_skipped(m);
        }
    }
    bool copy = m->dirty;
    if (copy) {
        if ((r = ensure_host(m)) != CUDA_SUCCESS)
            return r;
        bs_trace_out_begin(m, d2h);
        if ((r = bs_real.cuMemcpyDtoHAsync_v2(m->host, m->va, m->size, d2h)) != CUDA_SUCCESS)
            return r;
        bs_trace_out_end(m, d2h);
        bs_stat_add(BS_STAT_WRITEBACK_BYTES, (int64_t)m->size);
    }
    if ((r = wait_queued(d2h, scratch[e])) != CUDA_SUCCESS)
        return r;
    if ((r = bs_real.cuMemUnmap(m->va, m->padded)) != CUDA_SUCCESS)
        return r;
    bs_real.cuMemRelease(m->phys);
    m->phys = 0;
    m->host_valid = m->host_valid || copy;
    m->state = m->host_valid ? RES_HOST : RES_EMPTY;
    m->dirty = false;
    m->fp_in = false;
    m->ready_pending = false;
    m->streams_used = 0;
    m->fenced = false;
    resident_del(m);
    bs_stat_add(BS_STAT_EVICTIONS, 1);
    return CUDA_SUCCESS;
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
    for (int i = 0; i < nresident; i++) {
        struct managed *m = resident[i];
        if (m->pinned || m->busy || in_ops(m, keep, nkeep) ||
            (spare_protected && bs_sched_protected(m)))
            continue;
        uint64_t next = m->period ? m->last_tick + m->period : tick;
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

static CUresult make_room(uint64_t need, struct managed *const *keep, int nkeep,
                          const char *what)
{
    while (resident_bytes + unmanaged_bytes + need > vram_limit) {
        struct managed *v = pick_victim(keep, nkeep);
        if (!v && nbusy && !on_pager) {
            /* The pager is releasing memory (or filling it): wait for it and look again. */
            pthread_cond_wait(&page_cv, &lock);
            continue;
        }
        if (!v) {
            char a[32], b[32], c[32], d[32], e[32];
            bs_log_limited(10, BS_LOG_ERROR, "out of VRAM for %s: %s needed, %s in use "
                           "(%s managed and resident, %s unmanaged), limit %s, nothing left "
                           "to evict; raise BLOCKSWAP_VRAM_LIMIT", what,
                           mib(need, a, sizeof(a)),
                           mib(resident_bytes + unmanaged_bytes, b, sizeof(b)),
                           mib(resident_bytes, c, sizeof(c)),
                           mib(unmanaged_bytes, d, sizeof(d)),
                           mib(vram_limit, e, sizeof(e)));
            bs_stat_add(BS_STAT_OOM_REFUSALS, 1);
            return CUDA_ERROR_OUT_OF_MEMORY;
        }
        CUresult r = evict(v);
        if (r != CUDA_SUCCESS)
            return r;
    }
    return CUDA_SUCCESS;
}

static CUresult map_phys(struct managed *m);
static CUresult start_fill(struct managed *m, bool capturing);

static CUresult make_resident(struct managed *m, struct managed *const *keep, int nkeep,
                              bool capturing)
{
    CUresult r = make_room(m->padded, keep, nkeep, "a kernel's working set");
    if (r != CUDA_SUCCESS)
        return r;
    /* make_room may have waited for the pager with the lock released, and the pager
     * may have taken m up meanwhile: then it is the pager's (bs_page_begin looks again). */
    if (m->busy || m->state == RES_DEVICE)
        return CUDA_SUCCESS;
    /* The driver may still refuse (another process took memory): evict and retry. */
    while ((r = bs_real.cuMemCreate(&m->phys, m->padded, &prop, 0)) == CUDA_ERROR_OUT_OF_MEMORY) {
        struct managed *v = pick_victim(keep, nkeep);
        if (!v || evict(v) != CUDA_SUCCESS)
            break;
    }
    if (r != CUDA_SUCCESS) {
        char a[32];
        bs_log_limited(10, BS_LOG_ERROR, "cuMemCreate of %s failed (%s) with nothing left "
                       "to evict; lower BLOCKSWAP_VRAM_LIMIT to what the GPU really has free",
                       mib(m->padded, a, sizeof(a)), cu_err(r));
        return r;
    }
    if ((r = map_phys(m)) != CUDA_SUCCESS)
        return r;
    if (!resident_add(m)) {
        r = CUDA_ERROR_OUT_OF_MEMORY;
        goto unmap;
    }
    if ((r = start_fill(m, capturing)) != CUDA_SUCCESS) {
        resident_del(m);
        goto unmap;
    }
    return CUDA_SUCCESS;
unmap:
    bs_real.cuMemUnmap(m->va, m->padded);
    bs_real.cuMemRelease(m->phys);
    m->phys = 0;
    return r;
}

/* Maps m->phys behind m's VA with access. Outside the lock only while m is busy. */
static CUresult map_phys(struct managed *m)
{
    CUmemAccessDesc acc = { .location = prop.location, .flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE };
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

/* The page-in fingerprint, which eviction compares with to skip copying back a weight
 * that no kernel changed: on the fingerprint stream, after the copy; m->ready then
 * marks both, so the first user waits for the fingerprint too, and when the copy ran
 * ahead of compute, so did the fingerprint and nobody waits. Never on a user's
 * stream: one thread block reading a whole weight would hold up its compute. */
static bool fingerprint_in(struct managed *m)
{
    if (m->fp_slot < 0)
        m->fp_slot = bs_fp_slot_get();
    if (m->fp_slot < 0 || bs_drv.cuStreamWaitEvent(fps, m->ready, 0) != CUDA_SUCCESS ||
        bs_fp_launch(m->fp_slot, 0, m->va, m->size, fps) != CUDA_SUCCESS)
        return false;
    if (bs_drv.cuEventRecord(m->ready, fps) != CUDA_SUCCESS) {
        /* Users would not wait for the fingerprint, nor eviction for its reads. */
        bs_drv.cuCtxSynchronize();
        return false;
    }
    return true;
}

/* Mapped m becomes DEVICE: its contents copied in from host backing, if any. */
static CUresult start_fill(struct managed *m, bool capturing)
{
    CUresult r;
    if (m->state == RES_HOST) {
        if (!m->ready && (r = bs_drv.cuEventCreate(&m->ready, CU_EVENT_DISABLE_TIMING)) != CUDA_SUCCESS)
            return r;
        bs_trace_in_begin(m, h2d);
        if ((r = bs_real.cuMemcpyHtoDAsync_v2(m->va, m->host, m->size, h2d)) != CUDA_SUCCESS)
            return r;
        bs_trace_in_end(m, h2d);
        /* The copy is queued: from here on, failing would leave it writing into memory
         * the caller releases. Without its event, wait for it here instead. */
        m->ready_pending = bs_drv.cuEventRecord(m->ready, h2d) == CUDA_SUCCESS;
        if (!m->ready_pending && (r = bs_drv.cuCtxSynchronize()) != CUDA_SUCCESS)
            return r;
        /* A graph captures what it replays; a weight filled for one is never evicted. */
        m->fp_in = m->ready_pending && !capturing && fingerprint_in(m);
        /* A capturing stream cannot wait on an event from outside the capture. */
        if (capturing && m->ready_pending) {
            if ((r = wait_event(m->ready)) != CUDA_SUCCESS)
                return r;
            m->ready_pending = false;
        }
        bs_stat_add(BS_STAT_PAGE_IN_BYTES, (int64_t)m->size);
    }
    m->state = RES_DEVICE;
    m->dirty = false;
    bs_stat_add(BS_STAT_PAGE_INS, 1);
    return CUDA_SUCCESS;
}

static void note_use(struct managed *m, int slot, bool write)
{
    m->used = true;
    m->fenced = false;
    if (slot >= 0 && !slots[slot].capturing)
        m->streams_used |= 1ull << slot;
    if (write) {
        m->dirty = true;
        m->host_valid = false;
    }
    tick++;
    if (m->last_tick && tick - m->last_tick > 1)
        m->period = tick - m->last_tick;
    m->last_tick = tick;
}

/* ---- what schedule/ drives ---- */

CUresult bs_page_prefetch_locked(struct managed *m)
{
    if (m->state == RES_DEVICE || m->busy)
        return CUDA_SUCCESS;
    return make_resident(m, &m, 1, false);
}

void bs_page_fence_locked(struct managed *m, uint64_t *queued)
{
    if (m->state != RES_DEVICE || m->busy || m->fenced || !d2h)
        return;
    uint64_t todo = m->streams_used & ~*queued;
    if (todo && queue_stream_waits(todo) != CUDA_SUCCESS)
        return; /* its eviction queues the waits itself */
    *queued |= todo;
    m->fenced = true;
}

CUresult bs_page_evict_locked(struct managed *m)
{
    if (m->state != RES_DEVICE || m->pinned || m->busy)
        return CUDA_SUCCESS;
    return evict(m);
}

uint64_t bs_page_limit_locked(void)
{
    return vram_limit;
}

uint64_t bs_page_other_peak_locked(void)
{
    return other_peak;
}


/* ---- the pager thread: window changes off the application's threads ---- */

#define PAGER_BATCH 4096

static void pager_lock(void)
{
    __atomic_store_n(&pager_waiting, 1, __ATOMIC_RELAXED);
    pthread_mutex_lock(&lock);
    __atomic_store_n(&pager_waiting, 0, __ATOMIC_RELAXED);
}

static void wait_idle(struct managed *m)
{
    while (m->busy)
        pthread_cond_wait(&page_cv, &lock);
}

static void busy_begin(struct managed *m)
{
    m->busy = true;
    nbusy++;
}

static void busy_end(struct managed *m)
{
    m->busy = false;
    nbusy--;
}

/* Evicts list[0..n) together: waits and unmaps with the lock released. Returns how
 * many it evicted, or -1 when it did not release the lock (nothing to try). */
static int pager_evict(struct managed **list, int n)
{
    int k = 0, evicted = 0;
    for (int i = 0; i < n; i++) {
        struct managed *m = list[i];
        if (m->state != RES_DEVICE || m->busy || m->pinned || bs_sched_protected(m))
            continue;
        if (!m->done && bs_drv.cuEventCreate(&m->done, CU_EVENT_DISABLE_TIMING) != CUDA_SUCCESS)
            continue;
        if (queue_user_waits(m) != CUDA_SUCCESS)
            continue;
        bs_trace_evict(m, d2h);
        m->fp_check = m->dirty && m->fp_in &&
                      bs_fp_launch(m->fp_slot, 1, m->va, m->size, d2h) == CUDA_SUCCESS &&
                      bs_fp_fetch(m->fp_slot, d2h) == CUDA_SUCCESS;
        if (bs_drv.cuEventRecord(m->done, d2h) != CUDA_SUCCESS) {
            /* It stays resident; the fingerprint queued for it must not outlive that. */
            bs_drv.cuCtxSynchronize();
            m->fp_check = false;
            continue;
        }
        busy_begin(m);
        list[k++] = m;
    }
    n = k;
    if (!n)
        return -1;
    static bool unwaited[PAGER_BATCH]; /* the pager is one thread */
    pthread_mutex_unlock(&lock);
    for (int i = 0; i < n; i++)
        unwaited[i] = wait_event(list[i]->done) != CUDA_SUCCESS;
    pager_lock();
    for (int i = 0; i < n; i++) {
        struct managed *m = list[i];
        if (unwaited[i]) { /* the device is in trouble: leave it resident */
            busy_end(m);
            list[i] = NULL;
            continue;
        }
        if (m->fp_check && bs_fp_equal(m->fp_slot)) {
            m->dirty = false;
            m->host_valid = true;
            bs_stat_add(BS_STAT_WRITEBACK_SKIPPED_BYTES, (int64_t)m->size);
            bs_trace_skipped(m);
        }
        m->wb = false;
        if (m->dirty) {
            bool hosted = ensure_host(m) == CUDA_SUCCESS;
            if (hosted)
                bs_trace_out_begin(m, d2h);
            /* A copy queued but not followed by its event is waited for with the whole
             * context: it must not still be reading when the application writes. */
            if (!hosted ||
                bs_real.cuMemcpyDtoHAsync_v2(m->host, m->va, m->size, d2h) != CUDA_SUCCESS ||
                ((bs_trace_out_end(m, d2h), bs_drv.cuEventRecord(m->done, d2h)) != CUDA_SUCCESS &&
                 bs_drv.cuCtxSynchronize() != CUDA_SUCCESS)) {
                busy_end(m); /* stays resident; a later eviction tries again */
                list[i] = NULL;
                continue;
            }
            m->wb = true;
            bs_stat_add(BS_STAT_WRITEBACK_BYTES, (int64_t)m->size);
        }
    }
    pthread_mutex_unlock(&lock);
    for (int i = 0; i < n; i++) {
        struct managed *m = list[i];
        if (!m)
            continue;
        if (m->wb && wait_event(m->done) != CUDA_SUCCESS) {
            m->wb = m->fp_check = false, m->dirty = true; /* flag: stays resident */
            continue;
        }
        CUresult ur = bs_real.cuMemUnmap(m->va, m->padded);
        if (ur == CUDA_SUCCESS) {
            bs_real.cuMemRelease(m->phys);
        } else {
            bs_log_limited(3, BS_LOG_ERROR, "cuMemUnmap of an evicted allocation failed (%s): "
                           "it stays resident", cu_err(ur));
            m->wb = m->fp_check = false, m->dirty = true; /* flag: unmap failed */
        }
    }
    pager_lock();
    for (int i = 0; i < n; i++) {
        struct managed *m = list[i];
        if (!m)
            continue;
        if (!m->dirty || m->wb) {
            m->phys = 0;
            m->host_valid = m->host_valid || m->wb;
            m->state = m->host_valid ? RES_HOST : RES_EMPTY;
            m->dirty = m->fp_in = m->ready_pending = false;
            m->streams_used = 0;
            m->fenced = false;
            resident_del(m);
            bs_stat_add(BS_STAT_EVICTIONS, 1);
            evicted++;
        }
        busy_end(m);
    }
    pthread_cond_broadcast(&page_cv);
    return evicted;
}

/* Maps and fills list[0..n) ahead of use: the VMM calls with the lock released.
 * Returns whether it released the lock. */
static bool pager_fetch(struct managed **list, int n)
{
    int k = 0;
    for (int i = 0; i < n; i++) {
        struct managed *m = list[i];
        /* The window may have moved on while the evictions were waited for. */
        if (m->state == RES_DEVICE || m->busy || !bs_sched_protected(m))
            continue;
        if (make_room(m->padded, list, n, "prefetch") != CUDA_SUCCESS || !resident_add(m))
            break; /* no room yet: the block is paged in when it is used */
        busy_begin(m);
        list[k++] = m;
    }
    n = k;
    if (!n)
        return false;
    pthread_mutex_unlock(&lock);
    for (int i = 0; i < n; i++) {
        struct managed *m = list[i];
        m->wb = bs_real.cuMemCreate(&m->phys, m->padded, &prop, 0) == CUDA_SUCCESS &&
                map_phys(m) == CUDA_SUCCESS; /* wb: here, "mapped" */
    }
    pager_lock();
    bs_trace_in_batch(true);
    for (int i = 0; i < n; i++) {
        struct managed *m = list[i];
        if (!m->wb || start_fill(m, false) != CUDA_SUCCESS) {
            if (m->wb) {
                bs_real.cuMemUnmap(m->va, m->padded);
                bs_real.cuMemRelease(m->phys);
                m->phys = 0;
            }
            resident_del(m);
        }
        busy_end(m);
    }
    bs_trace_in_batch(false);
    pthread_cond_broadcast(&page_cv);
    return true;
}

static void *pager_main(void *arg)
{
    static struct managed *evict_list[PAGER_BATCH], *fetch_list[PAGER_BATCH];
    on_pager = true;
    /* The application's context, in which the shim's streams and memory live. */
    if (bs_drv.cuCtxSetCurrent(ctx) != CUDA_SUCCESS)
        bs_log(BS_LOG_WARN, "the pager thread cannot use the application's CUDA context");
    pager_lock();
    for (;;) {
        while (!pager_pending || stopping)
            pthread_cond_wait(&pager_cv, &lock);
        pager_pending = false;
        int ne, nf;
        pager_round = true;
        /* Fills first, into the slots free now, then evictions, whose waits for the
         * blocks behind the window overlap the copies just issued; a slot they free
         * is filled in the next turn. Both release the lock, meanwhile the window may
         * move or what the lists hold may be freed: look again after each. */
        for (;;) {
            bs_sched_window_work(evict_list, &ne, fetch_list, &nf, PAGER_BATCH);
            if (pager_fetch(fetch_list, nf))
                bs_sched_window_work(evict_list, &ne, fetch_list, &nf, PAGER_BATCH);
            if (pager_evict(evict_list, ne) <= 0)
                break;
        }
        pager_round = false;
        pthread_cond_broadcast(&page_cv); /* also wakes those waiting for it to be idle */
    }
    return NULL;
}

/* At exit, before the driver tears contexts down (this runs first: it was registered
 * after the application initialised CUDA), the pager finishes what it holds and
 * starts nothing new. */
static void pager_quiesce(void)
{
    pthread_mutex_lock(&lock);
    stopping = true;
    while (nbusy)
        pthread_cond_wait(&page_cv, &lock);
    pthread_mutex_unlock(&lock);
}

bool bs_page_pager_kick(void)
{
    if (stopping || !bs_cfg.pager_thread)
        return false;
    /* The pager has not started on the last window change yet: it looks at the window
     * when it does. A launch that cannot wait for it pages in on demand (the late path
     * of bs_page_begin), within the window's slots. */
    if (pager_pending)
        return true;
    if (!pager_started) {
        pthread_t t;
        pthread_attr_t attr;
        sigset_t all, old;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        /* The application's signals are for its own threads. */
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        int err = pthread_create(&t, &attr, pager_main, NULL);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        pthread_attr_destroy(&attr);
        if (err) {
            bs_log_limited(1, BS_LOG_WARN, "cannot start the pager thread (%s): window "
                           "changes run on the application's thread", strerror(err));
            return false;
        }
        pager_started = true;
        atexit(pager_quiesce);
    }
    pager_pending = true;
    pthread_cond_signal(&pager_cv);
    return true;
}

/* ---- the operations ---- */

bool bs_page_managed_any(void)
{
    return __atomic_load_n(&managed_count, __ATOMIC_RELAXED) != 0;
}

CUresult bs_page_begin(const uint64_t *addrs, int n, uint64_t write_mask, CUstream s,
                       unsigned flags)
{
    struct managed *ms[BS_LAUNCH_MAX_REFS];
    bool writes[BS_LAUNCH_MAX_REFS];
    int nm = 0;
    pthread_mutex_lock(&lock);
    for (int i = 0; i < n && nm < BS_LAUNCH_MAX_REFS; i++) {
        uint64_t base;
        struct managed *m;
        bool w = i >= 64 || (write_mask >> i & 1);
        /* Launch sets hold allocation bases already: skip the second lookup. */
        if (flags & BS_PAGE_BASES)
            base = addrs[i];
        else if (!addrs[i] || !bs_alloc_map_lookup(addrs[i], &base))
            continue;
        if (!(m = find(base)))
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
    if (!nm)
        return CUDA_SUCCESS; /* lock held: the caller's bs_page_end releases it */
    s = norm_stream(s, flags);
    int slot = slot_of(s);
    bool capturing = slot >= 0 && slots[slot].capturing;
    record_slot = slot >= 0 && slots[slot].per_thread && !capturing ? slot : -1;
    CUresult r = CUDA_SUCCESS;
    /* The tracer marks where the stream stood before any waiting; a block found only
     * by the detection that scheduling runs is marked after it. */
    struct managed *tb = NULL;
    bool traced = bs_trace_on(), may_wait = false;
    for (int i = 0; i < nm && traced; i++) {
        if (ms[i]->block >= 0 && !tb)
            tb = ms[i];
        may_wait |= ms[i]->state != RES_DEVICE || ms[i]->busy || ms[i]->ready_pending;
    }
    if (tb)
        bs_trace_launch_begin(tb, s, capturing, may_wait);
    /* Scheduling first: it may evict blocks that are done and prefetch the next ones;
     * anything of this operation it evicts is made resident again below. */
    for (int i = 0; i < nm; i++)
        bs_sched_use(ms[i]);
    for (int i = 0; i < nm && traced && !tb; i++)
        if (ms[i]->block >= 0)
            tb = ms[i];
    if (tb)
        bs_trace_launch_begin(tb, s, capturing, may_wait);
    /* What the pager is working on is waited for (the lock is released meanwhile, so
     * look at all of them again after any wait). A swapped block the pager has not
     * brought in yet is brought in here, but only once the pager is idle and the blocks
     * behind the window are gone, so VRAM stays within what the window promises.
     * make_room may also wait for the pager with the lock released, and meanwhile
     * another thread or the pager may take what this operation already made resident:
     * until everything is resident and idle at once, start over. */
    bool lost;
    do {
        for (;;) {
            struct managed *b = NULL;
            bool late = false;
            for (int i = 0; i < nm && !b; i++)
                if (ms[i]->busy)
                    b = ms[i];
                else if (ms[i]->state != RES_DEVICE && bs_sched_swapped_member(ms[i]))
                    late = true;
            if (b) {
                wait_idle(b);
                continue;
            }
            if (late && (nbusy || pager_pending)) {
                pthread_cond_wait(&page_cv, &lock);
                continue;
            }
            if (late)
                bs_sched_catch_up();
            break;
        }
        for (int i = 0; i < nm && r == CUDA_SUCCESS; i++) {
            struct managed *m = ms[i];
            if (m->state != RES_DEVICE)
                r = make_resident(m, ms, nm, capturing);
            if (r != CUDA_SUCCESS)
                break;
            if (m->ready_pending) {
                if (bs_drv.cuEventQuery(m->ready) == CUDA_SUCCESS)
                    m->ready_pending = false;
                else if (capturing)
                    r = bs_drv.cuEventSynchronize(m->ready), m->ready_pending = r != CUDA_SUCCESS;
                else if (bs_drv.cuStreamWaitEvent(s, m->ready, 0) != CUDA_SUCCESS)
                    r = wait_event(m->ready), m->ready_pending = r != CUDA_SUCCESS;
            }
        }
        lost = false;
        for (int i = 0; i < nm && r == CUDA_SUCCESS && !lost; i++)
            lost = ms[i]->state != RES_DEVICE || ms[i]->busy;
    } while (lost);
    if (r != CUDA_SUCCESS) {
        record_slot = -1;
        bs_trace_launch_cancel();
        pthread_mutex_unlock(&lock);
        return r;
    }
    if (tb)
        bs_trace_launch_ready(); /* what follows on s is the block's compute */
    for (int i = 0; i < nm; i++) {
        struct managed *m = ms[i];
        if (capturing)
            m->pinned = true; /* a graph may replay it at any time: stays resident */
        note_use(m, slot, writes[i]);
        if (slot < 0)
            m->pinned = true; /* too many streams to follow: never evict it */
    }
    return r;
}

void bs_page_lock(void)
{
    pthread_mutex_lock(&lock);
}

void bs_page_unlock(void)
{
    pthread_mutex_unlock(&lock);
}

void bs_page_end(void)
{
    if (bs_trace_on())
        bs_trace_launch_end();
    if (record_slot >= 0) {
        /* Eviction waits on this event for the operation just issued; without it, the
         * operation must be over before anything it used can go. */
        if (bs_drv.cuEventRecord(slots[record_slot].last, CU_STREAM_PER_THREAD) != CUDA_SUCCESS)
            bs_drv.cuCtxSynchronize();
        record_slot = -1;
    }
    pthread_mutex_unlock(&lock);
    if (BS_UNLIKELY(__atomic_load_n(&pager_waiting, __ATOMIC_RELAXED)))
        sched_yield();
}

/* Host-to-device copy into a managed allocation that is not resident: written to its
 * host backing, in the stream's order. Returns BS_PAGE_NOT_HANDLED when dst is not
 * managed or is resident (the caller then goes through bs_page_begin). */
CUresult bs_page_htod(uint64_t dst, const void *src, size_t n, CUstream s, unsigned flags)
{
    uint64_t base;
    if (!bs_alloc_map_lookup(dst, &base))
        return BS_PAGE_NOT_HANDLED;
    pthread_mutex_lock(&lock);
    struct managed *m = find(base);
    CUresult r = BS_PAGE_NOT_HANDLED;
    if (!m || m->state == RES_DEVICE || dst + n > m->va + m->size)
        goto out;
    if ((r = ensure_host(m)) != CUDA_SUCCESS)
        goto out;
    if ((r = wait_stream_point(norm_stream(s, flags))) != CUDA_SUCCESS)
        goto out;
    uint64_t off = dst - m->va;
    if (m->state == RES_EMPTY) { /* fresh device memory reads as zero in the simulator */
        memset(m->host, 0, off);
        memset((char *)m->host + off + n, 0, m->size - off - n);
        if (!m->used)
            bs_sched_loaded(m);
    }
    memcpy((char *)m->host + off, src, n);
    m->state = RES_HOST;
    m->host_valid = true;
    bs_stat_add(BS_STAT_HOST_WRITES, 1);
out:
    pthread_mutex_unlock(&lock);
    return r;
}

/* Device-to-host copy from a managed allocation that is not resident: served from
 * its host backing. Same contract as bs_page_htod. */
CUresult bs_page_dtoh(void *dst, uint64_t src, size_t n, CUstream s, unsigned flags)
{
    uint64_t base;
    if (!bs_alloc_map_lookup(src, &base))
        return BS_PAGE_NOT_HANDLED;
    pthread_mutex_lock(&lock);
    struct managed *m = find(base);
    CUresult r = BS_PAGE_NOT_HANDLED;
    if (!m || m->state == RES_DEVICE || src + n > m->va + m->size)
        goto out;
    if ((r = wait_stream_point(norm_stream(s, flags))) != CUDA_SUCCESS)
        goto out;
    if (m->state == RES_EMPTY)
        memset(dst, 0, n);
    else
        memcpy(dst, (char *)m->host + (src - m->va), n);
    r = CUDA_SUCCESS;
out:
    pthread_mutex_unlock(&lock);
    return r;
}

/* ---- allocation and free ---- */

CUresult bs_page_alloc(CUdeviceptr *dptr, size_t size, int api, CUstream s)
{
    pthread_mutex_lock(&lock);
    CUresult r = setup_locked();
    if (r != CUDA_SUCCESS)
        goto out;
    struct managed *m = calloc(1, sizeof(*m));
    if (!m) {
        r = CUDA_ERROR_OUT_OF_MEMORY;
        goto out;
    }
    m->size = size;
    m->padded = round_up(size, granularity);
    m->resident_index = -1;
    m->stack = m->block = m->tag = m->fp_slot = -1;
    CUdeviceptr va;
    if ((r = bs_drv.cuMemAddressReserve(&va, m->padded, granularity, 0, 0)) != CUDA_SUCCESS) {
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
    unsigned h = hash_va(va);
    m->hash_next = table[h];
    table[h] = m;
    managed_bytes += size;
    __atomic_store_n(&managed_count, managed_count + 1, __ATOMIC_RELAXED);
    *dptr = va;
out:
    pthread_mutex_unlock(&lock);
    if (r == CUDA_SUCCESS)
        bs_control_start(); /* now there is something for blockswapctl to control */
    return r;
}

/* Frees a managed allocation after the work that used it (and, for a stream-ordered
 * free, everything before it on that stream) has completed. BS_PAGE_NOT_HANDLED when
 * ptr is not a managed allocation's base. */
CUresult bs_page_free(uint64_t ptr, CUstream s, unsigned flags)
{
    pthread_mutex_lock(&lock);
    struct managed *m = find(ptr);
    CUresult r = BS_PAGE_NOT_HANDLED;
    if (!m)
        goto out;
    wait_idle(m);
    bs_sched_forget(m);
    if (flags & BS_PAGE_STREAM_ORDERED) {
        int sl = slot_of(norm_stream(s, flags));
        if (sl >= 0) {
            m->streams_used |= 1ull << sl;
            if (slots[sl].per_thread && /* this thread's stream: mark where the free is */
                bs_drv.cuEventRecord(slots[sl].last, CU_STREAM_PER_THREAD) != CUDA_SUCCESS)
                bs_drv.cuCtxSynchronize();
        }
    }
    if (m->state == RES_DEVICE) {
        /* Nothing needs copying back: the contents die with the allocation. */
        m->dirty = false;
        m->host_valid = true;
        if ((r = evict(m)) != CUDA_SUCCESS)
            goto out;
    }
    bs_alloc_map_remove(ptr, NULL);
    struct managed **pp = &table[hash_va(ptr)];
    while (*pp != m)
        pp = &(*pp)->hash_next;
    *pp = m->hash_next;
    if (m->host) {
        bs_drv.cuMemFreeHost(m->host);
        host_bytes -= m->padded;
    }
    if (m->ready)
        bs_drv.cuEventDestroy_v2(m->ready);
    if (m->done)
        bs_drv.cuEventDestroy_v2(m->done);
    bs_fp_slot_put(m->fp_slot);
    bs_drv.cuMemAddressFree(m->va, m->padded);
    managed_bytes -= m->size;
    __atomic_store_n(&managed_count, managed_count - 1, __ATOMIC_RELAXED);
    free(m);
    r = CUDA_SUCCESS;
out:
    pthread_mutex_unlock(&lock);
    return r;
}

/* Unmanaged VRAM (small allocations, the application's own mappings) counts against
 * the same limit: make room before the driver is asked. */
CUresult bs_page_charge(uint64_t bytes, const char *what)
{
    pthread_mutex_lock(&lock);
    CUresult r = CUDA_SUCCESS;
    if (setup_locked() == CUDA_SUCCESS)
        r = make_room(bytes, NULL, 0, what);
    if (r == CUDA_SUCCESS) {
        unmanaged_bytes += bytes;
        if (resident_unloaded + unmanaged_bytes > other_peak)
            other_peak = resident_unloaded + unmanaged_bytes;
        if (resident_bytes + unmanaged_bytes > peak_used)
            peak_used = resident_bytes + unmanaged_bytes;
    }
    pthread_mutex_unlock(&lock);
    return r;
}

void bs_page_uncharge(uint64_t bytes)
{
    pthread_mutex_lock(&lock);
    unmanaged_bytes -= bytes < unmanaged_bytes ? bytes : unmanaged_bytes;
    pthread_mutex_unlock(&lock);
}

void bs_page_capture(CUstream s, unsigned flags, bool on)
{
    pthread_mutex_lock(&lock);
    int slot = slot_of(norm_stream(s, flags));
    if (slot >= 0)
        slots[slot].capturing = on;
    pthread_mutex_unlock(&lock);
}

/* The D2H stream waits for the work still queued on s (the driver completes it after
 * the destroy), so every eviction queued later follows it; the allocations that used s
 * forget its slot, which a new stream may take. Otherwise an eviction would record on a
 * dead handle and synchronise the whole context instead, a new stream given the same
 * handle would pass for s, and once 64 streams had come and gone, what a new one used
 * would be pinned. */
void bs_page_stream_gone(CUstream s)
{
    pthread_mutex_lock(&lock);
    for (int i = 0; i < nslots; i++) {
        if (slots[i].gone || slots[i].per_thread || slots[i].s != s)
            continue;
        if (d2h && (bs_drv.cuEventRecord(scratch[1], s) != CUDA_SUCCESS ||
                    bs_drv.cuStreamWaitEvent(d2h, scratch[1], 0) != CUDA_SUCCESS))
            bs_drv.cuCtxSynchronize(); /* s is not what the application said it was */
        uint64_t keep = ~(1ull << i);
        for (unsigned h = 0; h < BS_ARRAY_SIZE(table); h++)
            for (struct managed *m = table[h]; m; m = m->hash_next)
                m->streams_used &= keep;
        slots[i].gone = true;
    }
    pthread_mutex_unlock(&lock);
}

/* Keeps the managed allocation containing addr resident (pin) or lets it go again.
 * For memory that kernels reach only through pointers stored in device memory,
 * which no interposer can see. */
int bs_page_pin(uint64_t addr, bool pin)
{
    uint64_t base;
    if (!bs_alloc_map_lookup(addr, &base))
        return -ENOENT;
    pthread_mutex_lock(&lock);
    struct managed *m = find(base);
    int err = m ? 0 : -ENOENT;
    if (m)
        wait_idle(m);
    if (m && pin && m->state != RES_DEVICE) {
        CUresult r = make_resident(m, &m, 1, false);
        if (r == CUDA_SUCCESS && m->ready_pending && bs_drv.cuEventSynchronize(m->ready) == CUDA_SUCCESS)
            m->ready_pending = false;
        if (r != CUDA_SUCCESS)
            err = r == CUDA_ERROR_OUT_OF_MEMORY ? -ENOMEM : -EIO;
    }
    if (m && !err) {
        m->pinned = pin;
        /* It may be written through pointers blockswap cannot see. */
        if (pin)
            m->dirty = true, m->host_valid = false;
    }
    pthread_mutex_unlock(&lock);
    return err;
}

int bs_page_tag(uint64_t addr, int block)
{
    uint64_t base;
    if (!bs_alloc_map_lookup(addr, &base))
        return -ENOENT;
    pthread_mutex_lock(&lock);
    struct managed *m = find(base);
    if (m)
        bs_sched_tag(m, block);
    pthread_mutex_unlock(&lock);
    return m ? 0 : -ENOENT;
}

int bs_page_is_resident(uint64_t addr)
{
    uint64_t base;
    if (!bs_alloc_map_lookup(addr, &base))
        return -ENOENT;
    pthread_mutex_lock(&lock);
    struct managed *m = find(base);
    int res = m ? m->state == RES_DEVICE : -ENOENT;
    pthread_mutex_unlock(&lock);
    return res;
}

void bs_page_stats(struct blockswap_stats *st)
{
    pthread_mutex_lock(&lock);
    st->managed_allocations = managed_count;
    st->managed_bytes = managed_bytes;
    st->resident_bytes = resident_bytes;
    st->unmanaged_bytes = unmanaged_bytes;
    st->host_backing_bytes = host_bytes;
    st->vram_limit = ready ? vram_limit : 0;
    st->peak_vram_bytes = peak_used;
    st->peak_host_backing_bytes = peak_host;
    struct bs_trace_totals t;
    bs_trace_totals(&t);
    st->steps_traced = t.steps;
    st->transfer_in_ns = t.in_ns;
    st->transfer_out_ns = t.out_ns;
    st->compute_ns = t.compute_ns;
    st->stall_ns = t.stall_ns;
    bs_sched_stats(st);
    pthread_mutex_unlock(&lock);
}

/* pre: free_b and total hold the driver's figures. */
void bs_page_meminfo(size_t *free_b, size_t *total)
{
    if (bs_cfg.meminfo == BS_MEMINFO_REAL)
        return;
    pthread_mutex_lock(&lock);
    if (setup_locked() == CUDA_SUCCESS) {
        uint64_t used = resident_bytes + unmanaged_bytes;
        uint64_t vram_free = vram_limit > used ? vram_limit - used : 0;
        if (bs_cfg.meminfo == BS_MEMINFO_LIMIT) {
            *free_b = vram_free;
            *total = vram_limit;
        } else {
            /* Resident memory without host backing yet will need it on eviction. */
            uint64_t host_used = host_bytes;
            for (int i = 0; i < nresident; i++)
                if (!resident[i]->host)
                    host_used += resident[i]->padded;
            uint64_t host_free = host_limit > host_used ? host_limit - host_used : 0;
            *free_b = vram_free + host_free;
            *total = vram_limit + host_limit;
        }
    }
    pthread_mutex_unlock(&lock);
}

void bs_page_reset(void)
{
    pthread_mutex_init(&lock, NULL);
    pthread_cond_init(&page_cv, NULL);
    pthread_cond_init(&pager_cv, NULL);
    nbusy = 0;
    pager_started = pager_pending = pager_round = stopping = false; /* threads do not survive fork */
    ready = false;
    h2d = d2h = fps = NULL; /* the parent's: setup_locked makes the child's own */
    memset(scratch, 0, sizeof(scratch));
    memset(table, 0, sizeof(table));
    nresident = nslots = 0;
    resident_bytes = unmanaged_bytes = host_bytes = managed_bytes = managed_count = 0;
    resident_unloaded = other_peak = peak_used = peak_host = 0;
    bs_sched_reset();
    bs_fp_reset();
    bs_trace_reset();
}

/* ---- control: blockswapctl's evict, trim and views (control/control.c) ---- */

/* The control thread has no context of its own: it works in the application's. Waits
 * until the pager holds nothing and has no window change queued, so what follows is
 * not undone by work the pager had already been given. */
static bool ctl_enter_locked(void)
{
    if (!ready)
        return false;
    bs_drv.cuCtxSetCurrent(ctx);
    while (nbusy || pager_round || (pager_pending && !stopping))
        pthread_cond_wait(&page_cv, &lock);
    return true;
}

/* Every resident managed allocation goes to the host after the work that used it,
 * through the ordinary eviction (only what changed is copied back); pinned ones stay. */
int bs_page_ctl_evict(struct bs_ctl_evict *out)
{
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&lock);
    if (!ctl_enter_locked())
        goto out;
    for (int i = 0; i < nresident;) {
        struct managed *m = resident[i];
        uint64_t b = m->padded;
        if (m->pinned) {
            out->pinned++, out->pinned_bytes += b, i++;
            continue;
        }
        CUresult r = evict(m);
        if (r != CUDA_SUCCESS) {
            bs_log_limited(3, BS_LOG_ERROR, "blockswapctl evict: an allocation of %llu bytes "
                           "stays resident: eviction failed (%s)", (unsigned long long)b,
                           cu_err(r));
            out->failed++, out->failed_bytes += b, i++;
            continue;
        }
        out->evicted++, out->evicted_bytes += b; /* resident[i] is now another one */
    }
out:
    pthread_mutex_unlock(&lock);
    return 0;
}

/* Host backing is released where nothing needs it: stale copies (the device copy
 * changed), allocations never written, and resident memory that stays resident. A
 * resident allocation whose host copy was valid then counts as changed, so its next
 * eviction copies it back (once: from then on elision works again). Swapped blocks
 * keep theirs: they are evicted every step. */
int bs_page_ctl_trim(struct bs_ctl_trim *out)
{
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&lock);
    if (!ctl_enter_locked())
        goto out;
    for (unsigned h = 0; h < BS_ARRAY_SIZE(table); h++) {
        for (struct managed *m = table[h]; m; m = m->hash_next) {
            if (!m->host || m->busy || m->state == RES_HOST)
                continue;
            if (m->state == RES_DEVICE && bs_sched_ctl_host_needed(m)) {
                out->kept++, out->kept_bytes += m->padded;
                continue;
            }
            /* A page-in copy still reading the host backing. */
            if (m->ready_pending) {
                if (bs_drv.cuEventQuery(m->ready) != CUDA_SUCCESS)
                    continue;
                m->ready_pending = false;
            }
            bs_drv.cuMemFreeHost(m->host);
            m->host = NULL;
            host_bytes -= m->padded;
            out->freed++, out->freed_bytes += m->padded;
            if (m->state == RES_DEVICE && m->host_valid)
                m->dirty = true;
            m->host_valid = false;
            /* The fingerprint would say "unchanged" and skip the copy that is now due. */
            m->fp_in = false;
        }
    }
out:
    pthread_mutex_unlock(&lock);
    return 0;
}

int bs_page_ctl_set_blocks_to_swap(uint64_t k)
{
    pthread_mutex_lock(&lock);
    int r = bs_sched_ctl_set_k(k);
    pthread_mutex_unlock(&lock);
    return r;
}

size_t bs_page_ctl_blocks_json(char *buf, size_t cap)
{
    pthread_mutex_lock(&lock);
    size_t n = bs_sched_ctl_json(buf, cap);
    pthread_mutex_unlock(&lock);
    return n;
}
