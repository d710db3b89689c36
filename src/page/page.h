/* page/page.h: what page/ shares with schedule/ only: the managed-allocation record and
 * the residency operations that scheduling decisions drive. Callers hold the page lock. */
#ifndef BS_PAGE_PAGE_H
#define BS_PAGE_PAGE_H

#include "bs.h"

enum residency { RES_EMPTY, RES_HOST, RES_DEVICE };

struct managed {
    uint64_t va, size, padded;
    enum residency state;
    bool dirty;      /* the device copy may differ from the host copy */
    bool host_valid; /* the host backing holds the contents */
    bool pinned;     /* never evicted: captured into a CUDA graph */
    void *host;      /* pinned host backing, allocated on first need */
    CUmemGenericAllocationHandle phys;
    CUevent ready;   /* recorded after the page-in copy on the shim's H2D stream */
    bool ready_pending;
    uint64_t streams_used; /* stream slots that used it since it became resident */
    uint64_t last_tick, period;
    int resident_index;
    /* schedule/: */
    int stack;       /* which model's stack it belongs to, -1 none */
    int block;       /* index in its stack's execution order, -1 outside any block */
    int tag;         /* blockswap_tag_block, -1 none */
    bool loaded;     /* filled from the host before any kernel used it: a weight */
    bool used;       /* some launch pointed into it */
    /* page/fingerprint.c: */
    int fp_slot;     /* -1 none */
    bool fp_in;      /* the slot holds the fingerprint taken at page-in from host backing */
    /* The pager thread works on it outside the lock: everyone else waits (page_cv). */
    bool busy;
    bool fp_check, wb;
    /* The D2H stream already waits for the work that used it (queued when the window
     * left its block); a later use clears it. */
    bool fenced;
    CUevent done;    /* the pager's eviction progress */
    struct managed *hash_next;
};

/* Starts making m resident (map, async copy on the shim's stream); callers' streams
 * wait on m->ready when they use it. */
CUresult bs_page_prefetch_locked(struct managed *m);
/* Releases m's VRAM after the work that used it; writes back what may have changed. */
CUresult bs_page_evict_locked(struct managed *m);
/* Queues, on the D2H stream, the waits for the work that used m so far, for an
 * eviction that comes later (the pager's): it then waits for that work only, not for
 * what the application issued after it. Streams in *queued were queued already in this
 * round and are skipped; the ones queued now are added. */
void bs_page_fence_locked(struct managed *m, uint64_t *queued);
uint64_t bs_page_limit_locked(void);
/* VRAM in use by what is not in a block: unmanaged, and managed outside blocks. */
uint64_t bs_page_other_peak_locked(void);

/* ---- page/fingerprint.c ---- */
#define BS_FP_SLOTS 8192 /* managed allocations fingerprinted at once; the rest are copied back */
#define BS_FP_DEVICE_BYTES (BS_FP_SLOTS * 16)
bool bs_fp_setup(void);
int bs_fp_slot_get(void);
void bs_fp_slot_put(int slot);
CUresult bs_fp_launch(int slot, int which, uint64_t va, uint64_t size, CUstream s);
CUresult bs_fp_fetch(int slot, CUstream s);
bool bs_fp_equal(int slot);
void bs_fp_reset(void);

/* Wakes the pager thread to bring residency in line with the schedule's window; false
 * when no thread could be started (the caller then does the work itself). */
bool bs_page_pager_kick(void);

/* ---- schedule/schedule.c ---- */
/* The pager's work: the resident members of one swapped block behind the window, the
 * one left longest ago (to evict), and the absent members of the window's blocks that
 * have a slot (to prefetch), in the order they are needed. */
void bs_sched_window_work(struct managed **evict, int *nevict, struct managed **fetch,
                          int *nfetch, int max);
void bs_sched_loaded(struct managed *m);
/* A launch (or copy) uses m; may detect blocks and prefetch ahead. */
void bs_sched_use(struct managed *m);
/* True when eviction must leave m alone (a resident block, or the swap window). */
bool bs_sched_protected(const struct managed *m);
/* True when m belongs to a swapped block. */
bool bs_sched_swapped_member(const struct managed *m);
/* m joined (+1) or left (-1) the resident set: keeps its block's count of members
 * holding VRAM, which the window's slots are counted from. */
void bs_sched_charge(const struct managed *m, int delta);
/* Evicts, on this thread, the swapped blocks behind the window. */
void bs_sched_catch_up(void);
void bs_sched_forget(struct managed *m);
void bs_sched_tag(struct managed *m, int block);
void bs_sched_stats(struct blockswap_stats *st);
void bs_sched_reset(void);
/* control: blockswapctl's view and settings. */
bool bs_sched_ctl_host_needed(const struct managed *m);
int bs_sched_ctl_set_k(uint64_t k);
size_t bs_sched_ctl_json(char *buf, size_t cap);

#endif
