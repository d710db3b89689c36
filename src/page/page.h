/* page/page.h: the managed-allocation record. page/ owns its residency fields and
 * schedule/ owns `sched`; each writes only its own, trace/ reads both. All of it is
 * read and written under the page lock. */
#ifndef BS_PAGE_PAGE_H
#define BS_PAGE_PAGE_H

#include "bs.h"

enum residency { RES_EMPTY, RES_HOST, RES_DEVICE };

/* schedule/'s part of a managed allocation (written by schedule/ only). */
struct bs_sched_member {
    int stack;   /* which model's stack it belongs to, -1 none */
    int block;   /* index in its stack's execution order, -1 outside any block */
    int tag;     /* blockswap_tag_block, -1 none */
    bool loaded; /* filled from the host before any kernel used it: a weight */
    bool used;   /* some launch pointed into it */
};

struct managed {
    /* page/'s (written by page/ only) */
    uint64_t va, size, padded;
    enum residency state;
    bool dirty;      /* the device copy may differ from the host copy */
    bool host_valid; /* the host backing holds the contents */
    bool pinned;     /* never evicted: captured into a CUDA graph, or blockswap_pin */
    void *host;      /* host backing, allocated on first need */
    bool host_pinned; /* ...pinned (cuMemHostAlloc), else pageable (malloc) */
    CUmemGenericAllocationHandle phys;
    CUevent ready;   /* recorded after the page-in copy (and its fingerprint) */
    bool ready_pending;
    uint64_t streams_used; /* stream slots that used it since it became resident */
    uint64_t last_tick, period;
    int resident_index;    /* in page/'s resident set, -1 when not in it */
    int fp_slot;     /* page/fingerprint.c's slot, -1 none */
    bool fp_in;      /* the slot holds the fingerprint taken at page-in from host backing */
    /* The pager thread works on it outside the lock: everyone else waits. */
    bool busy;
    /* The D2H stream already waits for the work that used it (queued when the window
     * left its block); a later use clears it. */
    bool fenced;
    CUevent done;    /* an eviction's progress on the D2H stream */
    /* File backing (fileback.c): the host loaded bytes [fb_lo, fb_hi) from fb_file at
     * offset + fb_delta. With nothing else written (no anonymous bytes in
     * [anon_lo, anon_hi), no conflicting range: fb_mixed), the file stands for host
     * backing: nothing is kept in memory for them. */
    struct bs_file *fb_file;
    uint64_t fb_lo, fb_hi, anon_lo, anon_hi;
    int64_t fb_delta;
    bool fb_mixed;
    struct managed *hash_next;
    /* schedule/'s */
    struct bs_sched_member sched;
};

#endif
