/* schedule/schedule.c: the transformer stack. Finds the blocks, from what the shim sees
 * (weights: allocations filled from the host before any kernel used them, in the order
 * they were filled, whose sizes repeat with a period) or from the application's tags; then applies
 * BLOCKSWAP_BLOCKS_TO_SWAP and BLOCKSWAP_PREFETCH: the first N-k blocks stay resident,
 * the last k stream through a window of d blocks, the next ones copied in while the
 * current one computes. Owns no memory operation: it drives page/, under its lock. */
#define _GNU_SOURCE
#include "bs.h"
#include "blockswap.h"
#include "page/page.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_PERIOD 256
#define MIN_BLOCKS 4

struct block {
    int first, count; /* members: order[first .. first+count) */
    uint64_t bytes;
};

static struct managed **order; /* weights, in the order they were loaded */
static int norder, cap_order;
static struct managed **tagged;
static int ntagged, cap_tagged;
static bool detected, tags_dirty;
static struct block *blocks;
static int nblocks, swap_start, window, current = -1;
static uint64_t block_max, outside;

static bool push(struct managed ***v, int *n, int *cap, struct managed *m)
{
    if (*n == *cap) {
        int ncap = *cap ? *cap * 2 : 256;
        struct managed **nv = realloc(*v, (size_t)ncap * sizeof(*nv));
        if (!nv)
            return false;
        *v = nv;
        *cap = ncap;
    }
    (*v)[(*n)++] = m;
    return true;
}

static void drop(struct managed **v, int *n, struct managed *m)
{
    for (int i = 0; i < *n; i++) {
        if (v[i] == m) {
            memmove(&v[i], &v[i + 1], (size_t)(*n - i - 1) * sizeof(*v));
            (*n)--;
            return;
        }
    }
}

static const char *mib(uint64_t b, char *buf, size_t len)
{
    snprintf(buf, len, b >= (10ull << 30) ? "%.1f GiB" : "%.1f MiB",
             b >= (10ull << 30) ? b / 1073741824.0 : b / 1048576.0);
    return buf;
}

static void forget_blocks(void)
{
    for (int i = 0; i < norder; i++)
        order[i]->block = -1;
    for (int i = 0; i < ntagged; i++)
        tagged[i]->block = -1;
    free(blocks);
    blocks = NULL;
    nblocks = swap_start = 0;
    current = -1;
    detected = false;
}

/* Weights needed in VRAM with k blocks swapped. */
static uint64_t weights_need(int k)
{
    int d = k ? (window < k ? window : k) : 0;
    return (uint64_t)(nblocks - k + d) * block_max + outside;
}

/* Chooses k from BLOCKSWAP_BLOCKS_TO_SWAP and the budget, and says what it chose. */
static void choose_k(const char *how, int members)
{
    char a[32], b[32], c[32], e[32];
    uint64_t limit = bs_page_limit_locked(), headroom = bs_page_other_peak_locked();
    uint64_t room = limit > headroom ? limit - headroom : 0;
    window = (int)(bs_cfg.prefetch < 1 ? 1 : bs_cfg.prefetch);
    int k = 0;
    if (bs_cfg.blocks_to_swap == BS_SIZE_AUTO) {
        while (k < nblocks && weights_need(k) > room)
            k++;
    } else {
        k = bs_cfg.blocks_to_swap > (uint64_t)nblocks ? nblocks : (int)bs_cfg.blocks_to_swap;
        int fit = k;
        while (fit < nblocks && weights_need(fit) > room)
            fit++;
        if (fit != k)
            bs_log(BS_LOG_WARN, "BLOCKSWAP_BLOCKS_TO_SWAP=%d needs %s of VRAM for weights, but "
                   "the limit leaves %s after %s for activations; using %d, the nearest that fits",
                   k, mib(weights_need(k), a, sizeof(a)), mib(room, b, sizeof(b)),
                   mib(headroom, c, sizeof(c)), fit);
        k = fit;
    }
    if (weights_need(k) > room)
        bs_log(BS_LOG_WARN, "even with all %d blocks swapped the weights need %s of VRAM and "
               "the limit leaves %s: expect paging on demand; raise BLOCKSWAP_VRAM_LIMIT",
               nblocks, mib(weights_need(k), a, sizeof(a)), mib(room, b, sizeof(b)));
    swap_start = nblocks - k;
    current = -1;
    bs_log(BS_LOG_INFO, "%s %d blocks of up to %s (%d allocations each), %s outside them; "
           "swapping the last %d (BLOCKSWAP_BLOCKS_TO_SWAP=%s), window %d: weights need %s "
           "of VRAM", how, nblocks, mib(block_max, a, sizeof(a)), members,
           mib(outside, b, sizeof(b)), k,
           bs_cfg.blocks_to_swap == BS_SIZE_AUTO ? "auto" : "set", window,
           mib(weights_need(k), e, sizeof(e)));
}

static void measure(void)
{
    block_max = 0;
    for (int j = 0; j < nblocks; j++)
        if (blocks[j].bytes > block_max)
            block_max = blocks[j].bytes;
    outside = 0;
    for (int i = 0; i < norder; i++)
        if (order[i]->block < 0)
            outside += order[i]->padded;
}

/* The longest stretch of the load order whose sizes repeat with period p: blocks of p
 * allocations each. Models are loaded parameter by parameter in module order, which
 * is the order blocks run in; embeddings before and the head after stay outside, and
 * so do small shared segments first filled inside block 0 (they break the period
 * there). Detection runs at the first launch after loading, so the budget of the
 * chosen k holds from the first step on. */
static void detect(void)
{
    detected = true;
    int best_p = 0, best_first = 0, best_len = 0;
    for (int p = 1; p <= MAX_PERIOD && 2 * p <= norder; p++) {
        int run = 0;
        for (int i = 0; i + p < norder; i++) {
            run = order[i]->padded == order[i + p]->padded ? run + 1 : 0;
            int len = run + p; /* elements covered: [i - run + 1, i + p] */
            if (len / p >= MIN_BLOCKS && (len / p) * p > best_len) {
                best_len = (len / p) * p;
                best_p = p;
                best_first = i - run + 1;
            }
        }
    }
    if (!best_p) {
        bs_log(BS_LOG_INFO, "no repeated block structure among %d loaded allocations: "
               "paging on demand (tag blocks with blockswap_tag_block to help)", norder);
        return;
    }
    nblocks = best_len / best_p;
    blocks = calloc((size_t)nblocks, sizeof(*blocks));
    if (!blocks) {
        nblocks = 0;
        return;
    }
    for (int j = 0; j < nblocks; j++) {
        blocks[j].first = best_first + j * best_p;
        blocks[j].count = best_p;
        for (int i = 0; i < best_p; i++) {
            struct managed *m = order[blocks[j].first + i];
            m->block = j;
            blocks[j].bytes += m->padded;
        }
    }
    measure();
    choose_k("detected", best_p);
}

static int cmp_tag(const void *a, const void *b)
{
    const struct managed *x = *(struct managed *const *)a, *y = *(struct managed *const *)b;
    return (x->tag > y->tag) - (x->tag < y->tag);
}

/* Tags take precedence: blocks are the distinct tags, in ascending order. */
static void build_from_tags(void)
{
    tags_dirty = false;
    forget_blocks();
    detected = true;
    qsort(tagged, (size_t)ntagged, sizeof(*tagged), cmp_tag);
    int distinct = 0;
    for (int i = 0; i < ntagged; i++)
        distinct += i == 0 || tagged[i]->tag != tagged[i - 1]->tag;
    blocks = calloc((size_t)(distinct ? distinct : 1), sizeof(*blocks));
    if (!blocks)
        return;
    nblocks = 0;
    int most = 0;
    for (int i = 0; i < ntagged; i++) {
        if (i == 0 || tagged[i]->tag != tagged[i - 1]->tag)
            nblocks++;
        struct block *bl = &blocks[nblocks - 1];
        bl->bytes += tagged[i]->padded;
        if (++bl->count > most)
            most = bl->count;
        tagged[i]->block = nblocks - 1;
    }
    measure();
    choose_k("tagged", most);
}

static bool swapped(int b)
{
    return b >= swap_start && b < nblocks;
}

static int next_swapped(int b)
{
    return b + 1 < nblocks ? b + 1 : swap_start;
}

static bool in_window(int b)
{
    if (current < 0 || !swapped(b))
        return false;
    if (bs_cfg.policy == BS_POLICY_SYNC)
        return b == current;
    for (int i = 0, w = current; i < window; i++, w = next_swapped(w))
        if (w == b)
            return true;
    return false;
}

static void for_members(int b, CUresult (*op)(struct managed *))
{
    if (b < 0 || b >= nblocks)
        return;
    struct managed **v = ntagged ? tagged : order;
    int n = ntagged ? ntagged : norder;
    for (int i = 0; i < n; i++)
        if (v[i]->block == b)
            op(v[i]);
}

static CUresult evict_with_copy(struct managed *m)
{
    m->dirty = true; /* the Python nodes copy every block back, changed or not */
    m->fp_in = false;
    return bs_page_evict_locked(m);
}

static CUresult fill_and_wait(struct managed *m)
{
    CUresult r = bs_page_prefetch_locked(m);
    if (r == CUDA_SUCCESS && m->ready_pending && bs_drv.cuEventSynchronize(m->ready) == CUDA_SUCCESS)
        m->ready_pending = false;
    return r;
}

/* A swapped block starts computing: blocks behind the window go (their work is
 * issued and is all that eviction waits for), the ones ahead are copied in now. */
static void enter(int b)
{
    if (b == current)
        return;
    current = b;
    if (bs_cfg.policy == BS_POLICY_SYNC) {
        /* Device-wide synchronisation, copy back, copy in, block by block. */
        bs_drv.cuCtxSynchronize();
        for (int j = swap_start; j < nblocks; j++)
            if (j != b)
                for_members(j, evict_with_copy);
        for_members(b, fill_and_wait);
        return;
    }
    if (bs_page_pager_kick())
        return; /* the pager thread does the rest; see bs_sched_window_work */
    bs_sched_catch_up();
    for (int i = 0, w = b; i < window; i++, w = next_swapped(w))
        for_members(w, bs_page_prefetch_locked);
}

void bs_sched_catch_up(void)
{
    for (int j = swap_start; j < nblocks; j++)
        if (!in_window(j))
            for_members(j, bs_page_evict_locked);
}

bool bs_sched_swapped_member(const struct managed *m)
{
    return detected && m->block >= 0 && swapped(m->block);
}

static void collect(int b, bool resident, struct managed **out, int *n, int max)
{
    struct managed **v = ntagged ? tagged : order;
    int count = ntagged ? ntagged : norder;
    for (int i = 0; i < count && *n < max; i++)
        if (v[i]->block == b && (v[i]->state == RES_DEVICE) == resident)
            out[(*n)++] = v[i];
}

void bs_sched_window_work(struct managed **evict, int *nevict, struct managed **fetch,
                          int *nfetch, int max)
{
    *nevict = *nfetch = 0;
    if (!detected || current < 0)
        return;
    for (int j = swap_start; j < nblocks; j++)
        if (!in_window(j))
            collect(j, true, evict, nevict, max);
    for (int i = 0, w = current; i < window; i++, w = next_swapped(w))
        collect(w, false, fetch, nfetch, max);
}

void bs_sched_loaded(struct managed *m)
{
    if (!m->loaded && push(&order, &norder, &cap_order, m))
        m->loaded = true;
}

void bs_sched_use(struct managed *m)
{
    m->used = true;
    if (tags_dirty)
        build_from_tags();
    else if (!detected && !ntagged && norder >= 2 * MIN_BLOCKS)
        detect();
    if (m->block >= 0 && swapped(m->block))
        enter(m->block);
}

bool bs_sched_protected(const struct managed *m)
{
    return detected && m->block >= 0 && (!swapped(m->block) || in_window(m->block));
}

void bs_sched_tag(struct managed *m, int block)
{
    if (m->tag < 0 && block >= 0)
        push(&tagged, &ntagged, &cap_tagged, m);
    else if (m->tag >= 0 && block < 0)
        drop(tagged, &ntagged, m);
    m->tag = block < 0 ? -1 : block;
    tags_dirty = true;
}

/* A freed weight ends the structure found; it is found again once the next model's
 * weights have all been used. */
void bs_sched_forget(struct managed *m)
{
    if (m->block >= 0)
        forget_blocks();
    if (m->loaded)
        drop(order, &norder, m);
    if (m->tag >= 0) {
        drop(tagged, &ntagged, m);
        tags_dirty = true;
    }
}

void bs_sched_stats(struct blockswap_stats *st)
{
    st->blocks = (uint64_t)nblocks;
    st->blocks_swapped = (uint64_t)(nblocks - swap_start);
    st->block_bytes = block_max;
}

void bs_sched_reset(void)
{
    order = tagged = NULL;
    norder = cap_order = ntagged = cap_tagged = 0;
    blocks = NULL;
    nblocks = swap_start = 0;
    current = -1;
    detected = tags_dirty = false;
}
