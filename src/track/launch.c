/* track/launch.c: for every kernel launch, the set of tracked allocations its
 * parameters point into: by-value pointers, pointers inside structs, interior
 * pointers, and TMA descriptors recorded at encode time. Owns the per-function
 * parameter-layout cache and the tensor-map table. On the launch path after a
 * kernel's first launch: no lock, no allocation, O(parameter bytes). */
#define _GNU_SOURCE
#include "bs.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define MAX_PARAMS 1024
#define TENSOR_MAP_BYTES 128

/* ---- per-function parameter layout, cached ---- */

struct layout {
    uint32_t nparams; /* 0 with known=false: cuFuncGetParamInfo unavailable */
    bool known;
    struct { uint32_t off, size; } p[];
};

struct fentry {
    CUfunction key;
    struct layout *layout;
};

struct ftable {
    uint32_t mask;
    uint32_t used;
    struct ftable *retired; /* older tables, kept: a reader may still hold them */
    struct fentry e[];
};

static struct ftable *ftab;
static pthread_mutex_t ftab_lock = PTHREAD_MUTEX_INITIALIZER;

static inline uint32_t hash_ptr(const void *p)
{
    uint64_t x = (uint64_t)(uintptr_t)p;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return (uint32_t)x;
}

static struct ftable *ftable_new(uint32_t cap, struct ftable *retired)
{
    struct ftable *t = calloc(1, sizeof(*t) + cap * sizeof(struct fentry));
    if (t) {
        t->mask = cap - 1;
        t->retired = retired;
    }
    return t;
}

static const struct layout *ftable_get(CUfunction f)
{
    struct ftable *t = __atomic_load_n(&ftab, __ATOMIC_ACQUIRE);
    if (!t)
        return NULL;
    for (uint32_t i = hash_ptr(f) & t->mask;; i = (i + 1) & t->mask) {
        CUfunction k = __atomic_load_n(&t->e[i].key, __ATOMIC_ACQUIRE);
        if (k == f)
            return __atomic_load_n(&t->e[i].layout, __ATOMIC_ACQUIRE);
        if (!k)
            return NULL;
    }
}

static void ftable_put_locked(struct ftable *t, CUfunction f, struct layout *l)
{
    for (uint32_t i = hash_ptr(f) & t->mask;; i = (i + 1) & t->mask) {
        if (!t->e[i].key || t->e[i].key == f) {
            __atomic_store_n(&t->e[i].layout, l, __ATOMIC_RELEASE);
            if (!t->e[i].key) {
                __atomic_store_n(&t->e[i].key, f, __ATOMIC_RELEASE);
                t->used++;
            }
            return;
        }
    }
}

/* A failure that may pass (the driver short of memory, or failing for a reason it
 * does not name) is asked once more and, if it persists, leaves the layout unknown
 * for now. Any other answer is the driver's word on this handle (no such parameter,
 * the other kind of handle, not supported): it is kept, as on drivers whose answers
 * for some handles no one has seen yet, refusing their launches would be worse. */
static bool param_info_transient(CUresult r)
{
    return r == CUDA_ERROR_OUT_OF_MEMORY || r == CUDA_ERROR_UNKNOWN;
}

static CUresult param_info(bool kernel, CUfunction f, uint32_t i, size_t *off, size_t *size)
{
    CUresult r = CUDA_ERROR_NOT_SUPPORTED;
    for (int attempt = 0; attempt < 2; attempt++) {
        if (!kernel && bs_drv.cuFuncGetParamInfo)
            r = bs_drv.cuFuncGetParamInfo(f, i, off, size);
        else if (kernel && bs_drv.cuKernelGetParamInfo)
            r = bs_drv.cuKernelGetParamInfo((CUkernel)f, i, off, size);
        if (!param_info_transient(r))
            break;
    }
    return r;
}

static bool param_info_final(CUresult r)
{
    return !param_info_transient(r);
}

/* Asks the driver for f's parameters; f may also be a CUkernel (the library API
 * that libcudart 12+ uses), which cuKernelGetParamInfo describes. The answer for index
 * 0 tells which: CUDA_ERROR_INVALID_VALUE is "no such parameter" (none at all), a
 * handle or support error is a handle of the other kind, or no layout to be had.
 * NULL when the driver failed otherwise (the layout is not known *now*: nothing is
 * cached, and the launch is refused rather than run unscanned) or out of memory. */
static struct layout *layout_query(CUfunction f)
{
    size_t off[MAX_PARAMS], size[MAX_PARAMS];
    uint32_t n = 0;
    bool known = false;
    CUresult r = param_info(false, f, 0, &off[0], &size[0]);
    if (r == CUDA_SUCCESS || r == CUDA_ERROR_INVALID_VALUE) {
        known = true;
        while (r == CUDA_SUCCESS && ++n < MAX_PARAMS)
            r = param_info(false, f, n, &off[n], &size[n]);
    } else if (param_info_final(r) && bs_drv.cuKernelGetParamInfo) {
        r = param_info(true, f, 0, &off[0], &size[0]);
        known = r == CUDA_SUCCESS || r == CUDA_ERROR_INVALID_VALUE;
        while (r == CUDA_SUCCESS && ++n < MAX_PARAMS)
            r = param_info(true, f, n, &off[n], &size[n]);
    }
    if (r != CUDA_SUCCESS && !param_info_final(r))
        return NULL;
    struct layout *l = malloc(sizeof(*l) + n * sizeof(l->p[0]));
    if (!l)
        return NULL;
    l->nparams = n;
    l->known = known;
    for (uint32_t i = 0; i < n; i++) {
        l->p[i].off = (uint32_t)off[i];
        l->p[i].size = (uint32_t)size[i];
    }
    return l;
}

/* First launch of f: ask the driver, then publish. Slow path, may allocate. */
static const struct layout *layout_of(CUfunction f)
{
    const struct layout *l = ftable_get(f);
    if (BS_LIKELY(l))
        return l;
    struct layout *nl = layout_query(f);
    if (!nl)
        return NULL;
    pthread_mutex_lock(&ftab_lock);
    struct ftable *t = ftab;
    if (!t || (t->used + 1) * 2 > t->mask + 1) {
        struct ftable *g = ftable_new(t ? (t->mask + 1) * 2 : 256, t);
        if (g && t)
            for (uint32_t i = 0; i <= t->mask; i++)
                if (t->e[i].key)
                    ftable_put_locked(g, t->e[i].key, t->e[i].layout);
        if (g) {
            __atomic_store_n(&ftab, g, __ATOMIC_RELEASE);
            t = g;
        }
    }
    /* Another thread may have published f while we asked the driver: keep its
     * layout (readers may hold it) and drop ours. */
    const struct layout *won = ftable_get(f);
    if (won) {
        pthread_mutex_unlock(&ftab_lock);
        free(nl);
        return won;
    }
    if (t && (t->used + 1) * 2 <= t->mask + 1)
        ftable_put_locked(t, f, nl);
    pthread_mutex_unlock(&ftab_lock);
    return nl; /* if it could not be published it is leaked: out of memory anyway */
}

/* CUfunction handles die with their module: start a fresh cache. The old tables
 * stay allocated (a concurrent launch may be reading them). */
void bs_launch_forget_functions(void)
{
    pthread_mutex_lock(&ftab_lock);
    struct ftable *t = ftab;
    if (t) {
        struct ftable *g = ftable_new(t->mask + 1, t);
        if (g)
            __atomic_store_n(&ftab, g, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&ftab_lock);
}

/* ---- tensor maps: descriptor bytes -> global address, direct-mapped ---- */

#define TM_SLOTS 2048
struct tm_slot {
    unsigned seq;
    uint64_t addr;
    uint64_t desc[TENSOR_MAP_BYTES / 8];
};
static struct tm_slot tm[TM_SLOTS];
static pthread_mutex_t tm_lock = PTHREAD_MUTEX_INITIALIZER;

static uint32_t hash_desc(const uint64_t *w)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (int i = 0; i < TENSOR_MAP_BYTES / 8; i++) {
        h ^= w[i];
        h *= 0x100000001b3ULL;
    }
    return (uint32_t)(h ^ (h >> 32)) & (TM_SLOTS - 1);
}

void bs_tensormap_record(const CUtensorMap *map, const void *global_address)
{
    uint64_t w[TENSOR_MAP_BYTES / 8];
    _Static_assert(sizeof(CUtensorMap) == TENSOR_MAP_BYTES, "CUtensorMap is 128 bytes");
    memcpy(w, map, sizeof(w));
    struct tm_slot *s = &tm[hash_desc(w)];
    pthread_mutex_lock(&tm_lock);
    __atomic_store_n(&s->seq, s->seq + 1, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    for (int i = 0; i < TENSOR_MAP_BYTES / 8; i++)
        __atomic_store_n(&s->desc[i], w[i], __ATOMIC_RELAXED);
    __atomic_store_n(&s->addr, (uint64_t)(uintptr_t)global_address, __ATOMIC_RELAXED);
    __atomic_store_n(&s->seq, s->seq + 1, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&tm_lock);
    bs_stat_add(BS_STAT_TENSOR_MAPS, 1);
}

uint64_t bs_tensormap_lookup(const void *desc)
{
    uint64_t w[TENSOR_MAP_BYTES / 8];
    memcpy(w, desc, sizeof(w));
    const struct tm_slot *s = &tm[hash_desc(w)];
    for (;;) {
        unsigned q = __atomic_load_n(&s->seq, __ATOMIC_ACQUIRE);
        if (q & 1)
            continue;
        bool same = true;
        for (int i = 0; i < TENSOR_MAP_BYTES / 8 && same; i++)
            same = __atomic_load_n(&s->desc[i], __ATOMIC_RELAXED) == w[i];
        uint64_t addr = __atomic_load_n(&s->addr, __ATOMIC_RELAXED);
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        if (__atomic_load_n(&s->seq, __ATOMIC_RELAXED) == q)
            return same ? addr : 0;
    }
}

/* ---- scanning ---- */

static inline void set_add(struct bs_launch_set *set, uint64_t base)
{
    for (int i = 0; i < set->n; i++)
        if (set->bases[i] == base)
            return;
    if (set->n < BS_LAUNCH_MAX_REFS)
        set->bases[set->n++] = base;
    else
        set->overflow = true;
}

static inline void check_word(uint64_t v, struct bs_launch_set *set)
{
    uint64_t base;
    if (bs_alloc_map_lookup(v, &base))
        set_add(set, base);
}

void bs_scan_bytes(const unsigned char *p, size_t len, struct bs_launch_set *set)
{
    for (size_t o = 0; o + 8 <= len; o += 8) {
        uint64_t v;
        memcpy(&v, p + o, 8);
        check_word(v, set);
    }
}

static void scan_param(const unsigned char *p, uint32_t size, struct bs_launch_set *set)
{
    if (size == TENSOR_MAP_BYTES) {
        uint64_t a = bs_tensormap_lookup(p);
        if (a)
            check_word(a, set);
    }
    bs_scan_bytes(p, size, set);
}

/* The packed argument buffer of the `extra` launch form, if any. */
static const unsigned char *extra_buffer(void **extra, size_t *len)
{
    const unsigned char *buf = NULL;
    *len = 0;
    for (int i = 0; extra && extra[i] != CU_LAUNCH_PARAM_END && i < 64; i += 2) {
        if (extra[i] == CU_LAUNCH_PARAM_BUFFER_POINTER)
            buf = extra[i + 1];
        else if (extra[i] == CU_LAUNCH_PARAM_BUFFER_SIZE && extra[i + 1])
            *len = *(const size_t *)extra[i + 1];
    }
    return buf;
}

int bs_launch_scan(CUfunction f, void **kernel_params, void **extra,
                   uint64_t scan_limit, struct bs_launch_set *set)
{
    set->n = 0;
    set->overflow = false;
    const struct layout *l = layout_of(f);
    uint64_t budget = scan_limit;

    if (kernel_params) {
        if (!l)
            return -EAGAIN;
        if (!l->known)
            return -ENOTSUP;
        for (uint32_t i = 0; i < l->nparams && budget; i++) {
            uint32_t sz = l->p[i].size;
            if (sz > budget)
                sz = (uint32_t)budget;
            budget -= sz;
            if (kernel_params[i])
                scan_param(kernel_params[i], sz, set);
        }
        return 0;
    }

    size_t len;
    const unsigned char *buf = extra_buffer(extra, &len);
    if (!buf)
        return extra ? -ENOTSUP : 0; /* no parameters at all */
    if (len > budget)
        len = budget;
    if (l && l->known && l->nparams) {
        for (uint32_t i = 0; i < l->nparams; i++)
            if (l->p[i].off < len)
                scan_param(buf + l->p[i].off,
                           l->p[i].off + l->p[i].size <= len ? l->p[i].size
                                                             : (uint32_t)(len - l->p[i].off),
                           set);
        return 0;
    }
    /* No layout: every pointer-aligned word, and every 64-aligned descriptor. */
    for (size_t o = 0; o + TENSOR_MAP_BYTES <= len; o += 64) {
        uint64_t a = bs_tensormap_lookup(buf + o);
        if (a)
            check_word(a, set);
    }
    bs_scan_bytes(buf, len, set);
    return 0;
}

/* ---- per-thread result of the last launch ---- */

static BS_TLS struct bs_launch_set *tls_set;
static BS_TLS bool tls_launched;
static pthread_key_t set_key;
static pthread_once_t set_key_once = PTHREAD_ONCE_INIT;

static void make_key(void)
{
    pthread_key_create(&set_key, free);
}

static struct bs_launch_set *thread_set(void)
{
    struct bs_launch_set *s = tls_set;
    if (BS_LIKELY(s))
        return s;
    pthread_once(&set_key_once, make_key);
    s = calloc(1, sizeof(*s));
    if (s) {
        pthread_setspecific(set_key, s);
        tls_set = s;
    }
    return s;
}

const struct bs_launch_set *bs_launch_observe(CUfunction f, void **kernel_params,
                                             void **extra)
{
    struct bs_launch_set *set = thread_set();
    if (BS_UNLIKELY(!set))
        return NULL;
    tls_launched = true;
    int err = bs_launch_scan(f, kernel_params, extra, bs_cfg.scan_limit, set);
    if (err == -EAGAIN) {
        bs_stat_add(BS_STAT_LAUNCHES, 1);
        bs_stat_add(BS_STAT_LAUNCHES_UNSCANNED, 1);
        bs_log_limited(3, BS_LOG_ERROR, "cannot read the parameter layout of a kernel now "
                       "(cuFuncGetParamInfo failed twice, or out of memory): the launch is "
                       "refused rather than run on memory that may not be resident");
        return NULL;
    }
    if (err < 0) {
        bs_stat_add(BS_STAT_LAUNCHES_UNSCANNED, 1);
        bs_log_limited(3, BS_LOG_WARN, "cannot read the parameter layout of a kernel "
                       "(cuFuncGetParamInfo failed): memory it uses is not seen");
    }
    /* Allocations past the table are not made resident: treated as not scanned. */
    if (BS_UNLIKELY(set->overflow)) {
        bs_stat_add(BS_STAT_LAUNCHES, 1);
        bs_stat_add(BS_STAT_LAUNCHES_UNSCANNED, 1);
        bs_log_limited(1, BS_LOG_ERROR, "a kernel's parameters point into at least %d tracked "
                       "allocations, more than the %d one launch can follow: while blockswap "
                       "manages memory the launch is refused (CUDA_ERROR_OUT_OF_MEMORY) "
                       "rather than run on memory that may not be resident; split the launch, "
                       "or pass the pointers in device memory and pin what they point to "
                       "(blockswap_pin)",
                       BS_LAUNCH_MAX_REFS + 1, BS_LAUNCH_MAX_REFS);
        return NULL;
    }
    bs_stat_add(BS_STAT_LAUNCHES, 1);
    if (set->n)
        bs_stat_add(BS_STAT_LAUNCH_REFS, set->n);
    return set;
}

int bs_launch_last(uint64_t *bases, int max)
{
    if (!tls_launched || !tls_set)
        return -ENODATA;
    int n = tls_set->n;
    for (int i = 0; i < n && i < max; i++)
        bases[i] = tls_set->bases[i];
    return n;
}

void bs_launch_reset(void)
{
    pthread_mutex_init(&ftab_lock, NULL);
    pthread_mutex_init(&tm_lock, NULL);
    ftab = NULL; /* the parent's tables are leaked in the child, never freed under a reader */
    memset(tm, 0, sizeof(tm));
}
