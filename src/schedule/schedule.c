/* schedule/schedule.c: transformer stacks. Finds the blocks of each model, from what the
 * shim sees (weights: allocations filled from the host before any kernel used them, in
 * the order they were filled, whose sizes repeat with a period) or from the
 * application's tags; then applies BLOCKSWAP_BLOCKS_TO_SWAP, BLOCKSWAP_SWAP_PLACEMENT and
 * BLOCKSWAP_PREFETCH to the stack in use: k of its N blocks (spread evenly, or the last
 * k) stream through a window of d = BLOCKSWAP_PREFETCH + 1 blocks, the others stay
 * resident. A stack not in use protects nothing, so a second model (WAN 2.2's HIGH then
 * LOW) takes the VRAM over by itself. Decides only: page/ calls it under the page lock
 * and acts on its answers (what to fence, evict and fetch); it touches no memory and
 * calls no driver. */
#define _GNU_SOURCE
#include "bs.h"
#include "blockswap.h"
#include "schedule/schedule.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_PERIOD 256
#define MIN_BLOCKS 4
#define MAX_STACKS 8

struct stack {
    struct managed **members; /* in load order; member->sched.block says which block */
    int nmembers;
    int index; /* in the order stacks were found: 0 is the first model detected */
    /* blockswapctl changed what this stack's k or window comes from (CTL_* bits): they
     * are chosen again at the start of its next step, the first block entered with a
     * lower index than the last one entered (a new pass over the stack). */
    unsigned ctl_pending;
    int nblocks, nswap, window, current; /* current: the block last entered, or -1 */
    bool spread; /* swapped blocks spread evenly through the stack, else the last nswap */
    uint64_t block_max, outside;
    /* Per block: members[lo..hi) holds all its members (among members of other blocks
     * or none only where the load order interleaved them), and how many of them hold
     * VRAM (in page/'s resident set: mapped, being filled, or being evicted). */
    int *lo, *hi, *charged;
};

/* schedule/'s state, all of it (under the page lock). */
static struct sched_state {
    struct managed **order; /* weights, in the order they were loaded */
    int norder, cap_order, examined; /* order[0..examined) was looked at already */
    struct managed **tagged;
    int ntagged, cap_tagged;
    bool tags_dirty;
    struct stack stacks[MAX_STACKS];
    int nstacks, active;
    /* Blocks to swap and blocks ahead in force: BLOCKSWAP_BLOCKS_TO_SWAP and
     * BLOCKSWAP_PREFETCH, until blockswapctl sets them. */
    uint64_t k, prefetch;
    bool k_set, prefetch_set;
    /* page/'s budget, as it last said (bs_sched_budget). */
    uint64_t limit, other_peak;
    /* The figures of the last stack in use, for the summary after its model was freed. */
    struct { uint64_t blocks, swapped, block_bytes; } last_used;
    /* Blocks to swap blockswapctl set for one stack (--stack: by index in the order
     * found), over S.k and the configuration's list. */
    uint64_t stack_k[BS_MAX_STACK_COUNTS];
    unsigned stack_k_set; /* bit i: stack_k[i] */
    int nfound;           /* stacks found so far: the next one's index */
    /* The block last entered: a stack's next step begins at a lower index. */
    int ctl_last_stack, ctl_last_block;
} S = { .active = -1, .ctl_last_stack = -1, .ctl_last_block = -1 };

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

/* Removes m from v; returns its index, or -1. */
static int drop(struct managed **v, int *n, struct managed *m)
{
    for (int i = 0; i < *n; i++) {
        if (v[i] == m) {
            memmove(&v[i], &v[i + 1], (size_t)(*n - i - 1) * sizeof(*v));
            (*n)--;
            return i;
        }
    }
    return -1;
}

enum { CTL_K = 1, CTL_PREFETCH = 2, CTL_BUDGET = 4 };

/* Blocks to swap for the stack found index-th: blockswapctl's for it, blockswapctl's for
 * all, or BLOCKSWAP_BLOCKS_TO_SWAP's (its list item). */
static uint64_t k_setting(int index)
{
    if (index < BS_MAX_STACK_COUNTS && (S.stack_k_set >> index & 1))
        return S.stack_k[index];
    return S.k_set ? S.k : bs_config_blocks_to_swap(&bs_cfg, index);
}

static uint64_t prefetch_setting(void)
{
    return S.prefetch_set ? S.prefetch : bs_cfg.prefetch;
}

static void remember(const struct stack *st)
{
    S.last_used.blocks = (uint64_t)st->nblocks;
    S.last_used.swapped = (uint64_t)st->nswap;
    S.last_used.block_bytes = st->block_max;
}

static void stack_free(int i)
{
    struct stack *st = &S.stacks[i];
    if (S.active == i)
        remember(st);
    for (int j = 0; j < st->nmembers; j++)
        st->members[j]->sched.block = st->members[j]->sched.stack = -1;
    free(st->members);
    free(st->lo);
    S.stacks[i] = S.stacks[--S.nstacks];
    for (int j = 0; j < S.stacks[i].nmembers && i < S.nstacks; j++)
        S.stacks[i].members[j]->sched.stack = i;
    if (S.active == i)
        S.active = -1;
    else if (S.active == S.nstacks)
        S.active = i;
}

/* Weights needed in VRAM with k blocks swapped. */
static uint64_t weights_need(const struct stack *st, int k)
{
    int d = k ? (st->window < k ? st->window : k) : 0;
    return (uint64_t)(st->nblocks - k + d) * st->block_max + st->outside;
}

/* Chooses k from BLOCKSWAP_BLOCKS_TO_SWAP (this stack's value) and the budget, and says
 * what it chose: "<pre>stack <index>: <verb>N blocks ...". A stack not in use gives its
 * VRAM up, so each may count on all the room there is. */
static void choose_k(struct stack *st, const char *pre, const char *verb, int per_block)
{
    char a[32], b[32], c[32], e[32];
    uint64_t limit = S.limit, headroom = S.other_peak;
    uint64_t room = limit > headroom ? limit - headroom : 0;
    uint64_t want = k_setting(st->index);
    int n = st->nblocks, k = 0;
    st->window = (int)prefetch_setting() + 1; /* the block computing and those ahead */
    if (want == BS_SIZE_AUTO) {
        while (k < n && weights_need(st, k) > room)
            k++;
    } else {
        k = want > (uint64_t)n ? n : (int)want;
        int fit = k;
        while (fit < n && weights_need(st, fit) > room)
            fit++;
        if (fit != k)
            bs_log(BS_LOG_WARN, "BLOCKSWAP_BLOCKS_TO_SWAP=%d needs %s of VRAM for weights, but "
                   "the limit leaves %s after %s for activations; using %d, the nearest that fits "
                   "(stack %d)", k, bs_size_str(weights_need(st, k), a, sizeof(a)), bs_size_str(room, b, sizeof(b)),
                   bs_size_str(headroom, c, sizeof(c)), fit, st->index);
        k = fit;
    }
    if (weights_need(st, k) > room)
        bs_log(BS_LOG_WARN, "even with all %d blocks swapped the weights need %s of VRAM and "
               "the limit leaves %s: expect paging on demand; raise BLOCKSWAP_VRAM_LIMIT",
               n, bs_size_str(weights_need(st, k), a, sizeof(a)), bs_size_str(room, b, sizeof(b)));
    st->nswap = k;
    st->spread = bs_cfg.placement == BS_PLACEMENT_SPREAD;
    st->current = -1;
    char which[48];
    if (k == 0 || k == n)
        snprintf(which, sizeof(which), "%s%d", k ? "all " : "", k);
    else if (st->spread)
        snprintf(which, sizeof(which), "%d spread evenly", k);
    else
        snprintf(which, sizeof(which), "the last %d", k);
    bs_log(BS_LOG_INFO, "%sstack %d: %s%d blocks of up to %s (%d allocations each), %s outside "
           "them; swapping %s (BLOCKSWAP_BLOCKS_TO_SWAP=%s, BLOCKSWAP_SWAP_PLACEMENT=%s), window "
           "%d (%d block%s ahead): weights need %s of VRAM", pre, st->index, verb, n,
           bs_size_str(st->block_max, a, sizeof(a)), per_block, bs_size_str(st->outside, b, sizeof(b)), which,
           want == BS_SIZE_AUTO ? "auto" : "set", st->spread ? "spread" : "last",
           st->window, st->window - 1, st->window == 2 ? "" : "s",
           bs_size_str(weights_need(st, k), e, sizeof(e)));
}

/* Makes a stack of v[0..n): members with m->sched.block set (>= 0) are in blocks, the rest
 * (embeddings, head) are outside. */
static struct stack *stack_new(struct managed **v, int n, int nblocks)
{
    if (S.nstacks == MAX_STACKS)
        stack_free(0); /* the oldest model gives way */
    struct stack *st = &S.stacks[S.nstacks];
    memset(st, 0, sizeof(*st));
    st->members = malloc((size_t)n * sizeof(*st->members));
    st->lo = malloc((size_t)nblocks * 3 * sizeof(*st->lo)); /* lo, hi and charged */
    if (!st->members || !st->lo) {
        free(st->members);
        free(st->lo);
        for (int i = 0; i < n; i++)
            v[i]->sched.block = -1;
        return NULL;
    }
    st->hi = st->lo + nblocks;
    st->charged = st->hi + nblocks;
    for (int j = 0; j < nblocks; j++)
        st->lo[j] = n, st->hi[j] = 0, st->charged[j] = 0;
    memcpy(st->members, v, (size_t)n * sizeof(*v));
    st->nmembers = n;
    st->index = S.nfound++;
    st->nblocks = nblocks;
    st->current = -1;
    uint64_t *bytes = calloc((size_t)nblocks, sizeof(*bytes));
    for (int i = 0; i < n; i++) {
        int b = v[i]->sched.block;
        v[i]->sched.stack = S.nstacks;
        if (b < 0) {
            st->outside += v[i]->padded;
            continue;
        }
        if (bytes)
            bytes[b] += v[i]->padded;
        if (i < st->lo[b])
            st->lo[b] = i;
        st->hi[b] = i + 1;
        st->charged[b] += v[i]->resident_index >= 0;
    }
    for (int j = 0; j < nblocks && bytes; j++)
        if (bytes[j] > st->block_max)
            st->block_max = bytes[j];
    free(bytes);
    return &S.stacks[S.nstacks++];
}

/* Looks at the weights loaded since the last look: the longest stretch of the load
 * order whose sizes repeat with period p gives blocks of p allocations each. Models are
 * loaded parameter by parameter in module order, which is the order blocks run in;
 * embeddings before and the head after stay outside. It runs at the first launch after
 * loading, so the budget of the chosen k holds from the first step on. */
static void detect(void)
{
    struct managed **v = S.order + S.examined;
    int n = S.norder - S.examined;
    S.examined = S.norder;
    /* Small segments (a caching allocator packs biases and norms of many blocks into
     * shared 2 MiB segments, filled as loading reaches them) would break the period
     * wherever a new one starts: only allocations of at least 1/8 of the largest
     * take part; the rest stay outside the blocks. */
    uint64_t largest = 0;
    for (int i = 0; i < n; i++)
        if (v[i]->padded > largest)
            largest = v[i]->padded;
    struct managed **f = malloc((size_t)(n ? n : 1) * sizeof(*f));
    if (!f)
        return;
    int nf = 0;
    for (int i = 0; i < n; i++) {
        v[i]->sched.block = -1;
        if (v[i]->padded * 8 >= largest)
            f[nf++] = v[i];
    }
    int best_p = 0, best_first = 0, best_len = 0;
    for (int p = 1; p <= MAX_PERIOD && 2 * p <= nf; p++) {
        int run = 0;
        for (int i = 0; i + p < nf; i++) {
            run = f[i]->padded == f[i + p]->padded ? run + 1 : 0;
            int len = run + p; /* elements covered: [i - run + 1, i + p] */
            if (len / p >= MIN_BLOCKS && (len / p) * p > best_len) {
                best_len = (len / p) * p;
                best_p = p;
                best_first = i - run + 1;
            }
        }
    }
    if (!best_p) {
        free(f);
        bs_log(BS_LOG_INFO, "no repeated block structure among %d loaded allocations: "
               "paging on demand (tag blocks with blockswap_tag_block to help)", n);
        return;
    }
    for (int i = best_first; i < best_first + best_len; i++)
        f[i]->sched.block = (i - best_first) / best_p;
    free(f);
    struct stack *st = stack_new(v, n, best_len / best_p);
    if (st) {
        choose_k(st, "", "detected ", best_p);
        S.active = (int)(st - S.stacks);
    }
}

static int cmp_tag(const void *a, const void *b)
{
    const struct managed *x = *(struct managed *const *)a, *y = *(struct managed *const *)b;
    return (x->sched.tag > y->sched.tag) - (x->sched.tag < y->sched.tag);
}

/* Tags take precedence: one stack, its blocks the distinct tags in ascending order. */
static void build_from_tags(void)
{
    S.tags_dirty = false;
    while (S.nstacks)
        stack_free(S.nstacks - 1);
    S.nfound = 0; /* the application's tags make the one stack, stack 0 */
    S.examined = S.norder;
    qsort(S.tagged, (size_t)S.ntagged, sizeof(*S.tagged), cmp_tag);
    int nblocks = 0, most = 0, run = 0;
    for (int i = 0; i < S.ntagged; i++) {
        if (i == 0 || S.tagged[i]->sched.tag != S.tagged[i - 1]->sched.tag)
            nblocks++, run = 0;
        S.tagged[i]->sched.block = nblocks - 1;
        if (++run > most)
            most = run;
    }
    if (!nblocks)
        return;
    struct stack *st = stack_new(S.tagged, S.ntagged, nblocks);
    if (st) {
        choose_k(st, "", "tagged ", most);
        S.active = (int)(st - S.stacks);
    }
}

/* Spread: block b is swapped when the running share b*k/N passes a whole number within
 * it, which spaces the k swapped blocks N/k apart and always swaps the last block. */
static bool swapped(const struct stack *st, int b)
{
    if (b < 0 || b >= st->nblocks || st->nswap <= 0)
        return false;
    if (!st->spread)
        return b >= st->nblocks - st->nswap;
    int64_t k = st->nswap, n = st->nblocks;
    return (b + 1) * k / n != b * k / n;
}

/* The next swapped block after b, in execution order, wrapping to the next step. */
static int next_swapped(const struct stack *st, int b)
{
    for (int i = 1; i <= st->nblocks; i++) {
        int j = (b + i) % st->nblocks;
        if (swapped(st, j))
            return j;
    }
    return b;
}

/* The window: the swapped block computing (or, while a resident block computes, the
 * next swapped one) and the ones after it, d in all. */
static int window_start(const struct stack *st)
{
    return swapped(st, st->current) ? st->current : next_swapped(st, st->current);
}

static bool in_window(const struct stack *st, int b)
{
    if (st->current < 0 || !swapped(st, b))
        return false;
    if (bs_cfg.policy == BS_POLICY_SYNC)
        return b == st->current;
    for (int i = 0, w = window_start(st); i < st->window; i++, w = next_swapped(st, w))
        if (w == b)
            return true;
    return false;
}

/* Swapped blocks holding VRAM. A block anywhere, in the window or not, holds a slot
 * from the moment page/ charges its first member (a fill under way) until its last is
 * released (its eviction waits for its kernels, or is under way); the window fills
 * only free slots, so no more than d swapped blocks ever hold VRAM at once, even when
 * the application goes back to an earlier block between steps (a LoRA patch). */
static int slots_held(const struct stack *st)
{
    int held = 0;
    for (int j = 0; j < st->nblocks; j++)
        held += st->charged[j] > 0 && swapped(st, j);
    return held;
}

/* Calls fill(st, w) for each block of the window that may be brought in now, in the
 * order they run: those already holding a slot (to complete them), and others while
 * slots are free. */
static void window_fill(struct stack *st, void (*fill)(struct stack *, int, void *), void *arg)
{
    int held = slots_held(st);
    for (int i = 0, w = window_start(st); i < st->window; i++, w = next_swapped(st, w)) {
        if (st->charged[w] > 0)
            fill(st, w, arg);
        else if (held < st->window)
            held++, fill(st, w, arg);
    }
}

/* Block b starts computing: swapped blocks behind the window are to go (their work is
 * issued and is all that eviction waits for), the ones ahead to be copied in now. */
static unsigned enter(struct stack *st, int b)
{
    if (b == st->current)
        return 0;
    bool resident = !swapped(st, b);
    /* Moving on at a resident block means waiting for the swapped block before it to
     * finish: the pager thread's work, never the launching thread's. */
    if (resident && !bs_cfg.pager_thread)
        return 0;
    st->current = b;
    if (bs_cfg.policy == BS_POLICY_SYNC) /* entered for swapped blocks only */
        return BS_SCHED_SYNC;
    /* The window fills free slots only, so this happens once, after detection, for
     * blocks loaded straight to VRAM: they must not wait for a pager that may lag. */
    if (slots_held(st) > st->window)
        return BS_SCHED_MOVED | BS_SCHED_OVER;
    return BS_SCHED_MOVED | (resident ? BS_SCHED_AT_RESIDENT : 0);
}

bool bs_sched_swapped_member(const struct managed *m)
{
    return m->sched.stack >= 0 && m->sched.stack == S.active &&
           swapped(&S.stacks[m->sched.stack], m->sched.block);
}

struct work { struct managed **list; int n, max; };

static void add(struct work *w, struct managed *m)
{
    if (w->n < w->max)
        w->list[w->n++] = m;
}

static void collect_absent(struct stack *st, int b, void *arg)
{
    struct work *w = arg;
    for (int i = st->lo[b]; i < st->hi[b]; i++)
        if (st->members[i]->sched.block == b && st->members[i]->state != RES_DEVICE)
            add(w, st->members[i]);
}

/* The members of block j that hold VRAM, resident and idle when `idle`. */
static void collect_block(struct stack *st, int j, bool idle, struct work *w)
{
    for (int x = st->lo[j]; x < st->hi[j]; x++) {
        struct managed *m = st->members[x];
        if (m->sched.block == j && m->resident_index >= 0 &&
            (!idle || (m->state == RES_DEVICE && !m->busy && !m->pinned)))
            add(w, m);
    }
}

int bs_sched_plan(enum bs_plan what, struct managed **list, int max)
{
    struct work w = { list, 0, max };
    if (S.active < 0 || S.stacks[S.active].current < 0)
        return 0;
    struct stack *st = &S.stacks[S.active];
    switch (what) {
    case BS_PLAN_BEHIND:
        for (int j = 0; j < st->nblocks; j++)
            if (st->charged[j] > 0 && swapped(st, j) && !in_window(st, j))
                collect_block(st, j, false, &w);
        break;
    case BS_PLAN_NEXT_OUT:
        /* One block at a time, the one left longest ago (the first after the window,
         * going round): its slot is filled before the pager waits for the next. */
        for (int i = 1; i <= st->nblocks && !w.n; i++) {
            int j = (st->current + i) % st->nblocks;
            if (st->charged[j] > 0 && swapped(st, j) && !in_window(st, j))
                collect_block(st, j, true, &w);
        }
        break;
    case BS_PLAN_FETCH:
        window_fill(st, collect_absent, &w);
        break;
    case BS_PLAN_SYNC_OUT:
        for (int j = 0; j < st->nblocks; j++)
            if (j != st->current && swapped(st, j))
                collect_block(st, j, true, &w);
        break;
    case BS_PLAN_SYNC_IN:
        collect_absent(st, st->current, &w);
        break;
    }
    return w.n;
}

void bs_sched_budget(uint64_t limit, uint64_t other_peak)
{
    S.limit = limit;
    S.other_peak = other_peak;
}

void bs_sched_charge(const struct managed *m, int delta)
{
    if (m->sched.stack >= 0 && m->sched.block >= 0)
        S.stacks[m->sched.stack].charged[m->sched.block] += delta;
}

void bs_sched_loaded(struct managed *m)
{
    if (!m->sched.loaded && !m->sched.used && push(&S.order, &S.norder, &S.cap_order, m))
        m->sched.loaded = true;
}

static void ctl_see_block(const struct managed *m); /* control, at the end */

uint64_t bs_sched_prefetch(void)
{
    return prefetch_setting();
}

unsigned bs_sched_use(struct managed *m)
{
    m->sched.used = true;
    if (S.tags_dirty)
        build_from_tags();
    else if (!S.ntagged && S.norder - S.examined >= 2 * MIN_BLOCKS)
        detect(); /* a model (or another) was loaded since the last look */
    if (m->sched.stack < 0)
        return 0;
    S.active = m->sched.stack;
    if (m->sched.block >= 0)
        ctl_see_block(m);
    /* Entering a resident block moves the window on too: the swapped block before it
     * has all its work issued, so its slot goes to the next one a block earlier. */
    struct stack *st = &S.stacks[S.active];
    if (m->sched.block >= 0 && st->nswap &&
        (swapped(st, m->sched.block) || bs_cfg.policy == BS_POLICY_STREAM))
        return enter(st, m->sched.block);
    return 0;
}

bool bs_sched_protected(const struct managed *m)
{
    if (m->sched.stack < 0 || m->sched.stack != S.active || m->sched.block < 0)
        return false;
    const struct stack *st = &S.stacks[m->sched.stack];
    return !swapped(st, m->sched.block) || in_window(st, m->sched.block);
}

void bs_sched_tag(struct managed *m, int block)
{
    if (m->sched.tag < 0 && block >= 0)
        push(&S.tagged, &S.ntagged, &S.cap_tagged, m);
    else if (m->sched.tag >= 0 && block < 0)
        drop(S.tagged, &S.ntagged, m);
    m->sched.tag = block < 0 ? -1 : block;
    S.tags_dirty = true;
}

/* A freed weight ends its model's stack: the model is being unloaded. What is still
 * loaded of it stays paged on demand; a reload is a new stack. */
void bs_sched_forget(struct managed *m)
{
    if (m->sched.stack >= 0)
        stack_free(m->sched.stack);
    if (m->sched.loaded) {
        int i = drop(S.order, &S.norder, m);
        if (i >= 0 && i < S.examined)
            S.examined--;
    }
    if (m->sched.tag >= 0) {
        drop(S.tagged, &S.ntagged, m);
        S.tags_dirty = true;
    }
}

void bs_sched_stats(struct blockswap_stats *st)
{
    const struct stack *s = S.active >= 0 ? &S.stacks[S.active] : S.nstacks ? &S.stacks[S.nstacks - 1] : NULL;
    if (s)
        remember(s);
    st->blocks = S.last_used.blocks;
    st->blocks_swapped = S.last_used.swapped;
    st->block_bytes = S.last_used.block_bytes;
}

void bs_sched_reset(void)
{
    S.order = S.tagged = NULL;
    S.norder = S.cap_order = S.examined = S.ntagged = S.cap_tagged = 0;
    memset(S.stacks, 0, sizeof(S.stacks));
    S.nstacks = S.nfound = 0; /* a forked child finds its own stacks, from stack 0 */
    S.active = -1;
    S.tags_dirty = false;
    memset(&S.last_used, 0, sizeof(S.last_used));
}

/* ---- control: blockswapctl's view of the stacks and its blocks-to-swap ---- */

static int most_per_block(const struct stack *st)
{
    int most = 0, *count = calloc((size_t)st->nblocks, sizeof(*count));
    for (int i = 0; i < st->nmembers && count; i++)
        if (st->members[i]->sched.block >= 0 && ++count[st->members[i]->sched.block] > most)
            most = count[st->members[i]->sched.block];
    free(count);
    return most;
}

static void ctl_apply(struct stack *st)
{
    unsigned what = st->ctl_pending;
    st->ctl_pending = 0;
    char how[96];
    snprintf(how, sizeof(how), "blockswapctl set %s%s%s%s%s, from this step: ",
             what & CTL_K ? "blocks-to-swap" : "",
             what & CTL_K && what & (CTL_PREFETCH | CTL_BUDGET) ? " and " : "",
             what & CTL_PREFETCH ? "prefetch" : "",
             what & CTL_PREFETCH && what & CTL_BUDGET ? " and " : "",
             what & CTL_BUDGET ? "vram-limit" : "");
    choose_k(st, how, "", most_per_block(st));
}

/* On the launch path: a load, two compares and two stores unless a change is pending. */
static void ctl_see_block(const struct managed *m)
{
    struct stack *st = &S.stacks[m->sched.stack];
    if (BS_UNLIKELY(st->ctl_pending) && m->sched.stack == S.ctl_last_stack &&
        m->sched.block < S.ctl_last_block)
        ctl_apply(st);
    S.ctl_last_stack = m->sched.stack;
    S.ctl_last_block = m->sched.block;
}

/* A change is in force at once for stacks found later; the stacks it concerns (index
 * `only`, or all when -1) choose k and the window again at their next step. Returns 1
 * when one of them exists, else 0. */
static int ctl_pend(unsigned what, int only)
{
    int pending = 0;
    for (int i = 0; i < S.nstacks; i++) {
        if (only < 0 || S.stacks[i].index == only) {
            S.stacks[i].ctl_pending |= what;
            pending = 1;
        }
    }
    return pending;
}

int bs_sched_ctl_set_k(uint64_t k, int stack)
{
    if (stack < 0) {
        S.k = k; /* one value for every stack: it replaces the list */
        S.k_set = true;
        S.stack_k_set = 0;
    } else {
        S.stack_k[stack] = k;
        S.stack_k_set |= 1u << stack;
    }
    return ctl_pend(CTL_K, stack);
}

int bs_sched_ctl_set_prefetch(uint64_t prefetch)
{
    S.prefetch = prefetch;
    S.prefetch_set = true;
    return ctl_pend(CTL_PREFETCH, -1);
}

int bs_sched_ctl_budget_changed(void)
{
    return ctl_pend(CTL_BUDGET, -1);
}

/* The host copy of a resident m is needed soon: it is in a swapped block (evicted every
 * step), or in a model not in use (whose VRAM goes when the other one runs). */
bool bs_sched_ctl_host_needed(const struct managed *m)
{
    if (m->sched.stack < 0)
        return false;
    if (m->sched.stack != S.active)
        return true;
    return m->sched.block >= 0 && swapped(&S.stacks[m->sched.stack], m->sched.block);
}


static void k_json(struct bs_buf *b, const char *key, uint64_t k)
{
    if (k == BS_SIZE_AUTO)
        bs_buf_add(b, "\"%s\":\"auto\"", key);
    else
        bs_buf_add(b, "\"%s\":%llu", key, (unsigned long long)k);
}

/* "stacks":[...] and the blocks-to-swap setting, for blockswapctl status: per stack its
 * shape and k, per block whether it is swapped, resident (every member in VRAM) and its
 * resident bytes. Like snprintf, returns the length the whole text needs. */
size_t bs_sched_ctl_json(char *buf, size_t cap)
{
    struct bs_buf b = { buf, cap, 0 };
    if (cap)
        buf[0] = '\0';
    /* Top level: what the next stack found gets, and what the stack in use takes at its
     * next step. */
    const struct stack *in_use = S.active >= 0 ? &S.stacks[S.active] : NULL;
    unsigned pending = in_use ? in_use->ctl_pending : 0;
    k_json(&b, "blocks_to_swap_setting", k_setting(S.nfound));
    bs_buf_add(&b, ",");
    if (pending & CTL_K)
        k_json(&b, "blocks_to_swap_pending", k_setting(in_use->index));
    else
        bs_buf_add(&b, "\"blocks_to_swap_pending\":null");
    bs_buf_add(&b, ",\"prefetch_setting\":%llu,", (unsigned long long)prefetch_setting());
    if (pending & CTL_PREFETCH)
        bs_buf_add(&b, "\"prefetch_pending\":%llu", (unsigned long long)prefetch_setting());
    else
        bs_buf_add(&b, "\"prefetch_pending\":null");
    bs_buf_add(&b, ",\"stacks\":[");
    for (int s = 0; s < S.nstacks; s++) {
        const struct stack *st = &S.stacks[s];
        uint64_t *bytes = calloc((size_t)st->nblocks * 2, sizeof(*bytes));
        if (!bytes) {
            bs_buf_add(&b, "%s{\"error\":\"out of memory\"}", s ? "," : "");
            continue;
        }
        for (int i = 0; i < st->nmembers; i++) {
            const struct managed *m = st->members[i];
            if (m->sched.block < 0)
                continue;
            bytes[2 * m->sched.block] += m->padded;
            if (m->state == RES_DEVICE)
                bytes[2 * m->sched.block + 1] += m->padded;
        }
        bs_buf_add(&b, "%s{\"stack\":%d,", s ? "," : "", st->index);
        k_json(&b, "blocks_to_swap_setting", k_setting(st->index));
        bs_buf_add(&b, ",\"pending\":%s,\"active\":%s,\"blocks\":%d,\"blocks_swapped\":%d,"
               "\"window\":%d,\"block_bytes\":%llu,\"outside_bytes\":%llu,\"current\":%d,"
               "\"per_block\":[", st->ctl_pending ? "true" : "false",
               s == S.active ? "true" : "false", st->nblocks,
               st->nswap, st->window, (unsigned long long)st->block_max,
               (unsigned long long)st->outside, st->current);
        for (int j = 0; j < st->nblocks; j++)
            bs_buf_add(&b, "%s{\"block\":%d,\"swapped\":%s,\"resident\":%s,\"bytes\":%llu,"
                   "\"resident_bytes\":%llu}", j ? "," : "", j, swapped(st, j) ? "true" : "false",
                   bytes[2 * j + 1] == bytes[2 * j] ? "true" : "false",
                   (unsigned long long)bytes[2 * j], (unsigned long long)bytes[2 * j + 1]);
        bs_buf_add(&b, "]}");
        free(bytes);
    }
    bs_buf_add(&b, "]");
    return b.len;
}
