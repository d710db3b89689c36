/* Unit: the swap window's promise. schedule.c runs against a fake page/ that acts on
 * its answers as page/ does (residency.c's pg_follow_schedule, ops.c's late path) and a
 * fake pager that runs its rounds as pager.c does (fill the window's free slots, then
 * evict the block left longest ago, one at a time, until nothing is left to evict),
 * whose fills and evictions stay in flight for a while, in random interleavings with
 * the application's launches, including a launch that goes back to an earlier block
 * between steps (a LoRA patch): never more than d swapped blocks hold VRAM, and with a
 * pager that keeps up, every swapped block is in VRAM before its launch. */
#include "bs.h"
#include "schedule/schedule.h"
#include "cutest.h"

#include <stdlib.h>
#include <string.h>

struct bs_config bs_cfg;

#define NB 8
#define PER 3 /* allocations per block */
#define WINDOW 2
#define MAXL (NB * PER)

static struct managed mem[NB][PER];
static bool swapped_block[NB];
static bool pager_pending;   /* kicked, its round not started */
static struct managed *inflight[MAXL];
static int ninflight;
static unsigned seed;

static unsigned rnd(unsigned n)
{
    seed = seed * 1103515245u + 12345u;
    return (seed >> 16) % n;
}

/* ---- the fake page/: residency is the resident set, as residency.c charges it ---- */

static void charge(struct managed *m)
{
    m->resident_index = 0;
    bs_sched_charge(m, 1);
}

static void uncharge(struct managed *m)
{
    m->resident_index = -1;
    bs_sched_charge(m, -1);
}

static void make_resident(struct managed *m)
{
    if (m->state != RES_DEVICE && !m->busy) {
        charge(m);
        m->state = RES_DEVICE;
    }
}

static void evict_if_idle(struct managed *m)
{
    if (m->state == RES_DEVICE && !m->busy && !m->pinned) {
        m->state = RES_HOST;
        uncharge(m);
    }
}

/* pager.c's kick: a pager kicked and not started yet looks at the window when it does. */
static bool pager_kick(void)
{
    pager_pending = true;
    return true;
}

static void catch_up(void)
{
    struct managed *l[MAXL];
    int n = bs_sched_plan(BS_PLAN_BEHIND, l, MAXL);
    for (int i = 0; i < n; i++)
        evict_if_idle(l[i]);
}

/* residency.c's pg_follow_schedule (fences are no-ops here). */
static void follow(unsigned act)
{
    struct managed *l[MAXL];
    if (!(act & BS_SCHED_MOVED) || pager_kick() || (act & BS_SCHED_AT_RESIDENT))
        return;
    catch_up();
    int n = bs_sched_plan(BS_PLAN_FETCH, l, MAXL);
    for (int i = 0; i < n; i++)
        make_resident(l[i]);
}

/* ---- the fake pager: one thread, as pager.c. Its work stays in flight (busy, and
 * charged: VRAM held) until completed one by one, in any order. ---- */

static enum { IDLE, FETCHING, EVICTING } phase;

/* pager_fetch: make_room and resident_add come before the unlocked VMM calls. */
static bool start_fetches(void)
{
    struct managed *fe[MAXL];
    int nf = bs_sched_plan(BS_PLAN_FETCH, fe, MAXL);
    for (int i = 0; i < nf; i++) {
        struct managed *m = fe[i];
        if (m->state != RES_DEVICE && !m->busy && bs_sched_protected(m)) {
            charge(m);
            m->busy = true, inflight[ninflight++] = m;
        }
    }
    return ninflight > 0;
}

/* pager_evict: the block left longest ago; it holds its VRAM till done. */
static bool start_evictions(void)
{
    struct managed *ev[MAXL];
    int ne = bs_sched_plan(BS_PLAN_NEXT_OUT, ev, MAXL);
    for (int i = 0; i < ne; i++) {
        struct managed *m = ev[i];
        if (m->state == RES_DEVICE && !m->busy && !m->pinned && !bs_sched_protected(m))
            m->busy = true, inflight[ninflight++] = m;
    }
    return ninflight > 0;
}

/* The round's next turn once nothing is in flight: after fills, evictions; after
 * evictions, fills again; a turn with nothing to evict ends the round. */
static void next_turn(bool after_fills)
{
    if (!after_fills && start_fetches()) {
        phase = FETCHING;
        return;
    }
    phase = start_evictions() ? EVICTING : IDLE;
}

/* One piece of the pager's progress. */
static void pager_step(void)
{
    if (phase == IDLE) {
        if (!pager_pending)
            return;
        pager_pending = false;
        next_turn(false);
        return;
    }
    int i = (int)rnd((unsigned)ninflight);
    struct managed *m = inflight[i];
    inflight[i] = inflight[--ninflight];
    m->busy = false;
    if (m->state == RES_DEVICE) { /* an eviction */
        m->state = RES_HOST;
        uncharge(m);
    } else {
        m->state = RES_DEVICE;
    }
    if (!ninflight)
        next_turn(phase == FETCHING);
}

/* The pager works until it is idle (what a launch waiting on idle_cv sees). */
static void pager_drain(void)
{
    while (pager_pending || phase != IDLE)
        pager_step();
}

/* ---- the promise ---- */

static int slots_in_use(void)
{
    int held = 0;
    for (int b = 0; b < NB; b++) {
        bool any = false;
        for (int j = 0; j < PER; j++)
            any |= mem[b][j].resident_index >= 0;
        held += swapped_block[b] && any;
    }
    return held;
}

static int worst;

static void check_promise(void)
{
    int held = slots_in_use();
    if (held > worst)
        worst = held;
}

/* A launch that reads block b's weights, as bs_page_begin handles it. Returns true when
 * every one was in VRAM and idle already (nothing to wait for). */
static bool launch(int b)
{
    bool ready = true;
    for (int j = 0; j < PER; j++) {
        follow(bs_sched_use(&mem[b][j]));
        check_promise();
    }
    /* ops.c's wait_for_pager: what the pager works on is waited for; a swapped member
     * not in VRAM waits for the pager to be idle, then the blocks behind go. */
    bool busy = false, late = false;
    for (int j = 0; j < PER; j++) {
        struct managed *m = &mem[b][j];
        ready &= !m->busy && m->state == RES_DEVICE;
        busy |= m->busy;
        late |= m->state != RES_DEVICE && bs_sched_swapped_member(m);
    }
    if (busy || late)
        pager_drain();
    if (late) {
        catch_up();
        check_promise();
    }
    for (int j = 0; j < PER; j++) { /* make_ready */
        make_resident(&mem[b][j]);
        check_promise();
    }
    return ready;
}

/* The pager moves at random: it may start its round, finish some of its work, or lag. */
static void pager_wander(void)
{
    for (int i = rnd(5); i > 0; i--) {
        pager_step();
        check_promise();
    }
}

static void setup(int placement)
{
    memset(mem, 0, sizeof(mem));
    for (int b = 0; b < NB; b++)
        for (int j = 0; j < PER; j++) {
            struct managed *m = &mem[b][j];
            m->size = m->padded = 1 << 20;
            m->state = RES_HOST;
            m->host_valid = true;
            m->resident_index = m->fp_slot = -1;
            m->sched.stack = m->sched.block = m->sched.tag = -1;
            bs_sched_tag(m, b);
        }
    bs_cfg.blocks_to_swap = 4;
    bs_cfg.prefetch = WINDOW - 1; /* blocks ahead of the one computing */
    bs_cfg.policy = BS_POLICY_STREAM;
    bs_cfg.placement = placement;
    bs_cfg.pager_thread = true;
    for (int b = 0; b < NB; b++)
        swapped_block[b] = placement == BS_PLACEMENT_SPREAD ? b % 2 == 1 : b >= NB - 4;
    bs_sched_budget(1ull << 40, 0);
    pager_pending = false;
    phase = IDLE;
    ninflight = 0;
    worst = 0;
}

static void teardown(void)
{
    pager_drain();
    for (int b = 0; b < NB; b++)
        for (int j = 0; j < PER; j++)
            bs_sched_forget(&mem[b][j]);
}

/* Steps over the blocks in order, a patch of an earlier swapped block after step 1,
 * with the pager at random between launches. */
static void random_run(int placement, unsigned s)
{
    seed = s;
    setup(placement);
    for (int step = 0; step < 4; step++) {
        for (int b = 0; b < NB; b++) {
            launch(b);
            pager_wander();
        }
        if (step == 1) {
            int back = (int)rnd(NB);
            while (!swapped_block[back])
                back = (back + 1) % NB;
            launch(back);
            pager_wander();
        }
    }
    CHECK(worst <= WINDOW);
    teardown();
}

/* A pager that keeps up (its round and all its work done between launches) has every
 * swapped block in VRAM before its launch once the first step taught the order. */
static void prompt_pager(int placement)
{
    setup(placement);
    int late = 0;
    for (int step = 0; step < 3; step++)
        for (int b = 0; b < NB; b++) {
            bool ready = launch(b);
            if (step > 0 && swapped_block[b] && !ready)
                late++;
            pager_drain();
            check_promise();
        }
    CHECK(late == 0);
    CHECK(worst == WINDOW); /* the window was used, not left empty */
    teardown();
}

int main(void)
{
    bs_log_set_level(BS_LOG_ERROR);
    prompt_pager(BS_PLACEMENT_SPREAD);
    prompt_pager(BS_PLACEMENT_LAST);
    for (unsigned s = 1; s <= 3000; s++) {
        random_run(BS_PLACEMENT_SPREAD, s);
        random_run(BS_PLACEMENT_LAST, s);
    }
    return 0;
}
