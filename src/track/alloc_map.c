/* track/alloc_map.c: the live device allocations, found from any interior address
 * in O(1): a 3-level radix table over 2 MiB chunks of the address space, each chunk
 * holding a small sorted bucket of the allocations that overlap it.
 * Readers (the launch path) take no lock and allocate nothing: a sequence counter
 * tells them to retry, and no memory a reader may touch is ever returned to malloc
 * (buckets are recycled by size class, nodes live until fork or exit). */
#define _GNU_SOURCE
#include "bs.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define CHUNK_SHIFT 21
#define L3_BITS 14 /* address bits 21..34 */
#define L2_BITS 15 /* address bits 35..49 */
#define L1_BITS 14 /* address bits 50..63 */
#define MAX_CLASS 16 /* buckets of up to 65536 spans */

struct span {
    uint64_t base, end;
    struct bs_alloc_rec *rec; /* writer side only: readers never follow it */
};

struct bucket {
    uint32_t n;
    uint32_t cls; /* capacity is 1 << cls, fixed for the life of the memory */
    struct bucket *next_free;
    struct span s[];
};

struct leaf {
    struct bucket *slot[1u << L3_BITS];
};

struct mid {
    struct leaf *slot[1u << L2_BITS];
};

static struct mid *top[1u << L1_BITS];
static unsigned seq;
static pthread_mutex_t writer = PTHREAD_MUTEX_INITIALIZER;
static struct bucket *free_buckets[MAX_CLASS + 1];
static uint64_t lo_bound = UINT64_MAX, hi_bound;
static uint64_t live_count, live_bytes, peak_bytes;

static inline uint64_t chunk_of(uint64_t addr) { return addr >> CHUNK_SHIFT; }
static inline unsigned i1(uint64_t c) { return (unsigned)(c >> (L2_BITS + L3_BITS)); }
static inline unsigned i2(uint64_t c) { return (unsigned)(c >> L3_BITS) & ((1u << L2_BITS) - 1); }
static inline unsigned i3(uint64_t c) { return (unsigned)c & ((1u << L3_BITS) - 1); }

#if defined(__x86_64__)
#define cpu_relax() __builtin_ia32_pause()
#elif defined(__aarch64__)
#define cpu_relax() __asm__ volatile("yield" ::: "memory")
#else
#define cpu_relax() ((void)0)
#endif

#define LOAD(p) __atomic_load_n(&(p), __ATOMIC_RELAXED)
#define STORE(p, v) __atomic_store_n(&(p), (v), __ATOMIC_RELAXED)
/* Node pointers are published with release and read with acquire: a node's zeroed
 * (calloc) or copied contents are then visible to a reader that finds it, which the
 * seqlock alone does not say to ThreadSanitizer (on x86 both are plain moves). */
#define LOAD_NODE(p) __atomic_load_n(&(p), __ATOMIC_ACQUIRE)
#define PUBLISH(p, v) __atomic_store_n(&(p), (v), __ATOMIC_RELEASE)

/* ---- reader side ---- */

static bool lookup_once(uint64_t addr, uint64_t *base)
{
    uint64_t c = chunk_of(addr);
    struct mid *m = LOAD_NODE(top[i1(c)]);
    if (!m)
        return false;
    struct leaf *l = LOAD_NODE(m->slot[i2(c)]);
    if (!l)
        return false;
    struct bucket *b = LOAD_NODE(l->slot[i3(c)]);
    if (!b)
        return false;
    uint32_t n = LOAD(b->n), cap = 1u << (LOAD(b->cls) & 31);
    if (n > cap || cap > (1u << MAX_CLASS))
        return false; /* torn read of a recycled bucket: the seq check retries */
    /* Last span whose base <= addr. */
    uint32_t lo = 0, hi = n;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        if (LOAD(b->s[mid].base) <= addr)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == 0)
        return false;
    uint64_t sb = LOAD(b->s[lo - 1].base), se = LOAD(b->s[lo - 1].end);
    if (addr >= se)
        return false;
    *base = sb;
    return true;
}

bool bs_alloc_map_lookup(uint64_t addr, uint64_t *base)
{
    if (addr < LOAD(lo_bound) || addr >= LOAD(hi_bound))
        return false;
    for (;;) {
        unsigned s = __atomic_load_n(&seq, __ATOMIC_ACQUIRE);
        if (BS_UNLIKELY(s & 1)) {
            cpu_relax();
            continue;
        }
        uint64_t b = 0;
        bool found = lookup_once(addr, &b);
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        if (BS_LIKELY(LOAD(seq) == s)) {
            if (found)
                *base = b;
            return found;
        }
    }
}

/* ---- writer side (mutex held, seq odd) ---- */

static struct bucket *bucket_get(uint32_t cls)
{
    struct bucket *b = free_buckets[cls];
    if (b) {
        free_buckets[cls] = b->next_free;
        return b;
    }
    b = calloc(1, sizeof(*b) + (sizeof(struct span) << cls));
    if (b) /* readers load it atomically, racing with this store (the seqlock sorts it out) */
        STORE(b->cls, cls);
    return b;
}

static void bucket_put(struct bucket *b)
{
    STORE(b->n, 0);
    b->next_free = free_buckets[b->cls];
    free_buckets[b->cls] = b;
}

static struct bucket **slot_for(uint64_t c, bool create)
{
    struct mid *m = top[i1(c)];
    if (!m) {
        if (!create || !(m = calloc(1, sizeof(*m))))
            return NULL;
        PUBLISH(top[i1(c)], m);
    }
    struct leaf *l = m->slot[i2(c)];
    if (!l) {
        if (!create || !(l = calloc(1, sizeof(*l))))
            return NULL;
        PUBLISH(m->slot[i2(c)], l);
    }
    return &l->slot[i3(c)];
}

static int bucket_add(uint64_t c, const struct span *sp)
{
    struct bucket **slot = slot_for(c, true);
    if (!slot)
        return -ENOMEM;
    struct bucket *b = *slot;
    if (!b || b->n == (1u << b->cls)) {
        uint32_t cls = b ? b->cls + 1 : 0;
        if (cls > MAX_CLASS)
            return -ENOSPC;
        struct bucket *nb = bucket_get(cls);
        if (!nb)
            return -ENOMEM;
        if (b) {
            for (uint32_t i = 0; i < b->n; i++) {
                STORE(nb->s[i].base, b->s[i].base);
                STORE(nb->s[i].end, b->s[i].end);
                nb->s[i].rec = b->s[i].rec;
            }
            STORE(nb->n, b->n);
        }
        PUBLISH(*slot, nb);
        if (b)
            bucket_put(b);
        b = nb;
    }
    uint32_t pos = b->n;
    while (pos > 0 && b->s[pos - 1].base > sp->base) {
        STORE(b->s[pos].base, b->s[pos - 1].base);
        STORE(b->s[pos].end, b->s[pos - 1].end);
        b->s[pos].rec = b->s[pos - 1].rec;
        pos--;
    }
    STORE(b->s[pos].base, sp->base);
    STORE(b->s[pos].end, sp->end);
    b->s[pos].rec = sp->rec;
    STORE(b->n, b->n + 1);
    return 0;
}

static void bucket_del(uint64_t c, uint64_t base)
{
    struct bucket **slot = slot_for(c, false);
    struct bucket *b = slot ? *slot : NULL;
    if (!b)
        return;
    for (uint32_t i = 0; i < b->n; i++) {
        if (b->s[i].base != base)
            continue;
        for (uint32_t j = i + 1; j < b->n; j++) {
            STORE(b->s[j - 1].base, b->s[j].base);
            STORE(b->s[j - 1].end, b->s[j].end);
            b->s[j - 1].rec = b->s[j].rec;
        }
        STORE(b->n, b->n - 1);
        if (b->n == 0) {
            STORE(*slot, NULL);
            bucket_put(b);
        }
        return;
    }
}

/* The record whose span contains addr, writer side. */
static struct bs_alloc_rec *find_locked(uint64_t addr)
{
    struct bucket **slot = slot_for(chunk_of(addr), false);
    struct bucket *b = slot ? *slot : NULL;
    if (!b)
        return NULL;
    for (uint32_t i = 0; i < b->n; i++)
        if (addr >= b->s[i].base && addr < b->s[i].end)
            return b->s[i].rec;
    return NULL;
}

/* A record of chunk c overlapping [lo, hi) (and of the given api, unless 0). */
static struct bs_alloc_rec *overlap_locked(uint64_t c, uint64_t lo, uint64_t hi, int api)
{
    struct bucket **slot = slot_for(c, false);
    struct bucket *b = slot ? *slot : NULL;
    for (uint32_t i = 0; b && i < b->n; i++)
        if (b->s[i].base < hi && b->s[i].end > lo && (!api || b->s[i].rec->api == api))
            return b->s[i].rec;
    return NULL;
}

static void write_begin(void)
{
    pthread_mutex_lock(&writer);
    STORE(seq, seq + 1);
    __atomic_thread_fence(__ATOMIC_RELEASE);
}

static void write_end(void)
{
    __atomic_store_n(&seq, seq + 1, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&writer);
}

static void remove_locked(struct bs_alloc_rec *rec)
{
    uint64_t last = chunk_of(rec->base + rec->size - 1);
    for (uint64_t c = chunk_of(rec->base); c <= last; c++)
        bucket_del(c, rec->base);
    live_count--;
    live_bytes -= rec->size;
    free(rec);
}

int bs_alloc_map_insert(const struct bs_alloc_rec *in)
{
    if (!in->size || in->base + in->size < in->base)
        return -EINVAL;
    struct bs_alloc_rec *rec = malloc(sizeof(*rec));
    if (!rec)
        return -ENOMEM;
    *rec = *in;
    uint64_t first = chunk_of(rec->base), last = chunk_of(rec->base + rec->size - 1);
    int err = 0;

    write_begin();
    /* The driver never hands out live memory twice: an overlap is a record whose
     * free we did not see (a destroyed context or pool). Drop it. */
    for (uint64_t c = first; c <= last; c++) {
        struct bs_alloc_rec *stale;
        while ((stale = overlap_locked(c, rec->base, rec->base + rec->size, 0))) {
            bs_log_limited(5, BS_LOG_DEBUG, "dropping stale record 0x%llx+%llu",
                           (unsigned long long)stale->base, (unsigned long long)stale->size);
            remove_locked(stale);
        }
    }
    struct span sp = { rec->base, rec->base + rec->size, rec };
    uint64_t c;
    for (c = first; c <= last; c++)
        if ((err = bucket_add(c, &sp)) < 0)
            break;
    if (err < 0) {
        for (uint64_t u = first; u < c; u++)
            bucket_del(u, rec->base);
        free(rec);
    } else {
        live_count++;
        live_bytes += rec->size;
        if (live_bytes > peak_bytes)
            peak_bytes = live_bytes;
        if (rec->base < lo_bound)
            STORE(lo_bound, rec->base);
        if (sp.end > hi_bound)
            STORE(hi_bound, sp.end);
    }
    write_end();
    if (err < 0)
        bs_log_limited(3, BS_LOG_WARN, "cannot track allocation 0x%llx (%llu bytes): %s; "
                       "it will not be managed", (unsigned long long)in->base,
                       (unsigned long long)in->size, strerror(-err));
    return err;
}

int bs_alloc_map_remove(uint64_t base, struct bs_alloc_rec *removed)
{
    int err = -ENOENT;
    write_begin();
    struct bs_alloc_rec *rec = find_locked(base);
    if (rec && rec->base == base) {
        if (removed)
            *removed = *rec;
        remove_locked(rec);
        err = 0;
    }
    write_end();
    return err;
}

uint64_t bs_alloc_map_remove_range(uint64_t base, uint64_t size, int api)
{
    uint64_t bytes = 0;
    if (!size)
        return 0;
    write_begin();
    uint64_t last = chunk_of(base + size - 1);
    for (uint64_t c = chunk_of(base); c <= last; c++) {
        struct bs_alloc_rec *rec;
        while ((rec = overlap_locked(c, base, base + size, api))) {
            bytes += rec->size;
            remove_locked(rec);
        }
    }
    write_end();
    return bytes;
}

int bs_alloc_map_find(uint64_t addr, struct bs_alloc_rec *out)
{
    pthread_mutex_lock(&writer);
    struct bs_alloc_rec *rec = find_locked(addr);
    if (rec)
        *out = *rec;
    pthread_mutex_unlock(&writer);
    return rec ? 0 : -ENOENT;
}

void bs_alloc_map_stats(uint64_t *count, uint64_t *bytes, uint64_t *peak)
{
    pthread_mutex_lock(&writer);
    *count = live_count;
    *bytes = live_bytes;
    *peak = peak_bytes;
    pthread_mutex_unlock(&writer);
}

/* Frees everything; only for a single-threaded moment (the child after fork, tests). */
void bs_alloc_map_reset(void)
{
    pthread_mutex_init(&writer, NULL);
    for (unsigned a = 0; a < BS_ARRAY_SIZE(top); a++) {
        struct mid *m = top[a];
        if (!m)
            continue;
        for (unsigned b = 0; b < BS_ARRAY_SIZE(m->slot); b++) {
            struct leaf *l = m->slot[b];
            if (!l)
                continue;
            for (unsigned c = 0; c < BS_ARRAY_SIZE(l->slot); c++) {
                struct bucket *bk = l->slot[c];
                if (!bk)
                    continue;
                /* A record spans several chunks: free it from its first one. */
                for (uint32_t i = 0; i < bk->n; i++)
                    if (chunk_of(bk->s[i].base) == ((uint64_t)a << (L2_BITS + L3_BITS) |
                                                    (uint64_t)b << L3_BITS | c))
                        free(bk->s[i].rec);
                free(bk);
            }
            free(l);
        }
        free(m);
        top[a] = NULL;
    }
    for (unsigned k = 0; k <= MAX_CLASS; k++) {
        while (free_buckets[k]) {
            struct bucket *n = free_buckets[k]->next_free;
            free(free_buckets[k]);
            free_buckets[k] = n;
        }
    }
    seq = 0;
    lo_bound = UINT64_MAX;
    hi_bound = 0;
    live_count = live_bytes = peak_bytes = 0;
}

void bs_alloc_map_atfork_prepare(void)
{
    pthread_mutex_lock(&writer);
}

void bs_alloc_map_atfork_parent(void)
{
    pthread_mutex_unlock(&writer);
}
