/* page/internal.h: page/'s state, one struct, and what its files share: residency.c
 * (budget, victims, map, fill, the one eviction path), pager.c (its thread), ops.c (the
 * entry points interpose/ calls), admin.c (pin, tag, stats, control). Nobody outside
 * page/ includes this. */
#ifndef BS_PAGE_INTERNAL_H
#define BS_PAGE_INTERNAL_H

#include "bs.h"
#include "page/page.h"
#include "schedule/schedule.h"

#include <pthread.h>

#define PG_MAX_STREAMS 64
#define PG_HASH_BITS 12
/* Scratch events: [0] a stream's point, [1] a destroyed stream, [2..] the stream waits
 * of one fence or eviction, and the last, the progress of an eviction on the launching
 * thread (which needs no event of its own, so it cannot fail for lack of one). */
#define PG_SCRATCH (PG_MAX_STREAMS + 3)
#define PG_SCRATCH_EVICT (PG_SCRATCH - 1)

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

/* A physical handle kept for reuse (pool.c). */
struct pool_entry {
    uint64_t size;
    CUmemGenericAllocationHandle handle;
};

struct page_state {
    pthread_mutex_t lock;
    pthread_cond_t idle_cv;  /* an allocation stopped being busy, or the pager went idle */
    int nbusy;               /* allocations the pager works on outside the lock */
    /* Set while the pager waits for the lock: launch paths hand it over when they end,
     * or a busy application thread could keep it from the pager indefinitely. */
    int pager_waiting;
    struct {
        pthread_cond_t cv;   /* the pager has work */
        bool started, pending, stopping;
        bool round;          /* between the fills and evictions of one window change */
    } pager;

    /* Set-up, in the application's current context. */
    bool ready;
    CUcontext ctx;
    CUstream h2d, d2h, fps; /* the shim's own streams: copies in, evictions, fingerprints */
    CUevent scratch[PG_SCRATCH];
    size_t granularity;
    CUmemAllocationProp prop;

    /* The budget, in bytes. */
    uint64_t vram_limit, host_limit, pinned_limit;
    uint64_t pinned_bytes, peak_pinned; /* the pinned part of host_bytes */
    uint64_t staging_reserve;           /* what the staging ring may pin of pinned_limit */
    uint64_t resident_bytes, unmanaged_bytes, host_bytes, managed_bytes, managed_count;
    /* Activations and the like: unmanaged plus resident managed memory that was not
     * loaded from the host. Its peak is the headroom block scheduling leaves. */
    uint64_t resident_unloaded, other_peak;
    uint64_t peak_used, peak_host; /* high-water marks of resident + unmanaged, host_bytes */
    uint64_t tick;                 /* uses, for the victim choice */

    struct stream_slot slots[PG_MAX_STREAMS];
    int nslots;
    struct managed **resident; /* the resident set: mapped, being filled or evicted */
    int nresident, cap_resident;
    struct managed *table[1u << PG_HASH_BITS]; /* every managed allocation, by base */

    /* Physical memory unmapped and kept for the next fill of its size (pool.c). */
    struct {
        struct pool_entry *v;
        int n, cap;
        uint64_t bytes;                     /* counted against the budget */
        uint64_t created, reused, released; /* handles, since start */
    } pool;
};
extern struct page_state bs_pg;

/* ---- residency.c (the launch path's helpers inline here) ---- */
static inline unsigned pg_hash_va(uint64_t va)
{
    return (unsigned)((va >> 21) * 0x9e3779b97f4a7c15ULL >> (64 - PG_HASH_BITS));
}

static inline struct managed *pg_find(uint64_t va)
{
    for (struct managed *m = bs_pg.table[pg_hash_va(va)]; m; m = m->hash_next)
        if (m->va == va)
            return m;
    return NULL;
}

/* A use of m on stream slot `slot` (-1: not followed), writing it or not. */
static inline void pg_note_use(struct managed *m, int slot, bool write)
{
    m->fenced = false;
    if (slot >= 0 && !bs_pg.slots[slot].capturing)
        m->streams_used |= 1ull << slot;
    if (write) {
        m->dirty = true;
        m->host_valid = false;
    }
    bs_pg.tick++;
    if (m->last_tick && bs_pg.tick - m->last_tick > 1)
        m->period = bs_pg.tick - m->last_tick;
    m->last_tick = bs_pg.tick;
}

void pg_insert(struct managed *m);
void pg_remove(struct managed *m);
const char *pg_err(CUresult r);
CUstream pg_norm_stream(CUstream s, unsigned flags);
/* The slot of stream s (made on first use), or -1 when none is left. */
int pg_slot_of(CUstream s);
CUresult pg_setup_locked(void);
CUresult pg_ensure_host(struct managed *m);
/* Frees m's host backing, pinned or pageable. */
void pg_host_free(struct managed *m);
/* Blocks until ev completed; falls back to the whole context when it cannot. */
CUresult pg_wait_event(CUevent ev);
/* Blocks until the point the application reached on s is done. */
CUresult pg_wait_stream_point(CUstream s);
bool pg_resident_add(struct managed *m);
void pg_resident_del(struct managed *m);
/* Unmanaged VRAM joins the budget (its peaks too). */
void pg_unmanaged_add(uint64_t bytes);
/* Makes room for need bytes within the limit, evicting victims other than keep[]. */
CUresult pg_make_room(uint64_t need, struct managed *const *keep, int nkeep, const char *what);
CUresult pg_make_resident(struct managed *m, struct managed *const *keep, int nkeep,
                          bool capturing);
/* Maps m->phys behind m's VA with access; outside the lock only while m is busy. */
CUresult pg_map(struct managed *m);
/* Undoes pg_map (a fill that failed); the handle is pooled. */
void pg_unmap(struct managed *m);
/* Mapped m becomes DEVICE: its contents copied in from host backing, if any. */
CUresult pg_start_fill(struct managed *m, bool capturing);
/* Copies [off, off+n) of m in through the staging ring, fill() reading each piece;
 * the pager releases the lock meanwhile (m busy). */
CUresult pg_fill_staged(struct managed *m, uint64_t off, size_t n,
                        int (*fill)(void *ctx, uint64_t off, void *buf, size_t len), int *err);
/* Waits until m's page-in (and its fingerprint) is done. */
CUresult pg_fill_wait(struct managed *m);
/* Queues on the D2H stream the waits for the work that used m so far (see pg_evict). */
void pg_fence(struct managed *m, uint64_t *queued);

/* One eviction, in phases, so that the pager can wait with the lock released and the
 * launching thread without: start (lock held) queues the waits for m's users, the
 * fingerprint or the write-back, and records e->done; settle (lock held, e->done
 * reached) compares the fingerprint and queues the write-back it finds due; release
 * (e->done reached, lock held or m busy) unmaps; finish (lock held) updates the state.
 * A phase that fails leaves m resident and unchanged for a later eviction. */
struct eviction {
    struct managed *m;
    bool drop;     /* release the physical memory rather than pool it (a free) */
    CUevent done;  /* its progress on the D2H stream: m->done for the pager */
    bool fp_check; /* the fingerprint at eviction was queued */
    bool copied;   /* the write-back was queued */
};
CUresult pg_evict_start(struct eviction *e);
/* Sets *again when it queued a write-back: wait for e->done again before release. */
CUresult pg_evict_settle(struct eviction *e, bool *again);
CUresult pg_evict_release(struct eviction *e);
void pg_evict_finish(struct eviction *e);
/* All phases on this thread, lock held throughout; the physical memory is pooled. */
CUresult pg_evict(struct managed *m);
/* The same for an allocation being freed: its physical memory goes back to the driver. */
CUresult pg_evict_for_free(struct managed *m);
/* Evicts m when it is resident, idle and not pinned; `copy` copies it back changed or
 * not (the sync policy's way). */
CUresult pg_evict_if_idle(struct managed *m, bool copy);
/* Acts on bs_sched_use's answer. */
void pg_follow_schedule(unsigned act);
/* Evicts, on this thread, the swapped blocks behind the window. */
void pg_catch_up(void);

/* residency.c: the page-in fingerprint of m on the fingerprint stream, after m->ready;
 * records m->ready after it. Whether it was taken. */
bool pg_fingerprint_in(struct managed *m);

/* ---- fileback.c ---- */
/* The host copied [off, off+n) of m from src: notes whether a file holds those bytes.
 * Returns whether the file now stands for every byte the host wrote into m. */
bool pg_fb_note(struct managed *m, uint64_t off, const void *src, size_t n);
static inline bool pg_fb_backed(const struct managed *m)
{
    return m->fb_file && !m->fb_mixed && m->anon_lo >= m->anon_hi;
}
/* Forgets m's file for good: its host backing or VRAM holds the contents from now on. */
void pg_fb_drop(struct managed *m);
/* Reads m's file range into anonymous host backing (made now), then drops the file. */
CUresult pg_fb_materialize(struct managed *m);
/* Queues m's page-in from its file through the staging ring on the H2D stream. */
CUresult pg_fb_fill(struct managed *m);
/* A host copy out of m while it is not resident: [off, off+n) from the file. */
CUresult pg_fb_read(struct managed *m, uint64_t off, void *dst, size_t n);

/* ---- pool.c ---- */
/* Takes a pooled handle of m's size into m->phys; false when there is none. */
bool pg_pool_take(struct managed *m);
/* Keeps m->phys (unmapped) for reuse. */
void pg_pool_give(struct managed *m);
/* Releases pooled handles, oldest first, until want bytes are freed; returns how many. */
uint64_t pg_pool_release(uint64_t want);
/* cuMemCreate for m->phys; when the driver is short, gives the pool back and retries. */
CUresult pg_phys_create(struct managed *m);

/* ---- pager.c ---- */
extern BS_TLS bool pg_on_pager;
/* Wakes the pager to bring residency in line with the window; false when no thread
 * could be started (the caller then does the work itself). */
bool pg_pager_kick(void);
void pg_pager_lock(void);
void pg_wait_idle(struct managed *m);
void pg_busy_begin(struct managed *m);
void pg_busy_end(struct managed *m);

/* ---- fingerprint.c ---- */
#define BS_FP_SLOTS 8192 /* managed allocations fingerprinted at once; the rest are copied back */
#define BS_FP_DEVICE_BYTES (BS_FP_SLOTS * 16)
bool bs_fp_setup(void);
int bs_fp_slot_get(void);
void bs_fp_slot_put(int slot);
CUresult bs_fp_launch(int slot, int which, uint64_t va, uint64_t size, CUstream s);
CUresult bs_fp_fetch(int slot, CUstream s);
bool bs_fp_equal(int slot);
void bs_fp_reset(void);

#endif
