/* schedule/schedule.h: what schedule/ decides for page/. page/ calls these under the
 * page lock and acts on the answers; schedule/ touches no memory and calls no driver. */
#ifndef BS_SCHEDULE_SCHEDULE_H
#define BS_SCHEDULE_SCHEDULE_H

#include "page/page.h"

struct blockswap_stats;

/* bs_sched_use's answer: what the use asks of page/ now (0: nothing). */
#define BS_SCHED_MOVED 1u       /* the window moved: fence what it left (BS_PLAN_BEHIND),
                                 * then bring residency in line: the pager's round, or
                                 * on this thread, evict BS_PLAN_BEHIND, fetch BS_PLAN_FETCH */
#define BS_SCHED_AT_RESIDENT 2u /* ...at a resident block: only the pager does the rest */
#define BS_SCHED_OVER 8u        /* ...with more swapped blocks in VRAM than the window
                                 * holds (loaded straight to VRAM before detection):
                                 * those behind it go now, on the launching thread */
#define BS_SCHED_SYNC 4u        /* BLOCKSWAP_POLICY=sync: wait for the device, copy
                                 * BS_PLAN_SYNC_OUT back (changed or not) and evict it, then
                                 * fill BS_PLAN_SYNC_IN and wait for it */

/* The allocations a decision names. */
enum bs_plan {
    BS_PLAN_BEHIND,   /* members of swapped blocks behind the window holding VRAM */
    BS_PLAN_NEXT_OUT, /* the resident idle members of the one block behind left longest
                       * ago: the pager's next eviction */
    BS_PLAN_FETCH,    /* absent members of the window's blocks that have a slot (or may
                       * take a free one), in the order they are needed */
    BS_PLAN_SYNC_OUT, /* resident idle members of the other swapped blocks */
    BS_PLAN_SYNC_IN,  /* the absent members of the block entered */
};
/* Writes up to max allocations of `what` into list; returns how many. */
int bs_sched_plan(enum bs_plan what, struct managed **list, int max);

/* A launch (or copy) uses m: may detect blocks and move the window. */
unsigned bs_sched_use(struct managed *m);
/* page/'s budget: the VRAM limit and the peak of what is not in blocks (activations),
 * which block scheduling leaves as headroom. */
void bs_sched_budget(uint64_t limit, uint64_t other_peak);
/* m was filled from the host before any kernel used it: a weight, in load order. */
void bs_sched_loaded(struct managed *m);
/* True when eviction must leave m alone (a resident block, or the swap window). */
bool bs_sched_protected(const struct managed *m);
/* True when m belongs to a swapped block of the stack in use. */
bool bs_sched_swapped_member(const struct managed *m);
/* m joined (+1) or left (-1) page/'s resident set: keeps its block's count of members
 * holding VRAM, which the window's slots are counted from. */
void bs_sched_charge(const struct managed *m, int delta);
void bs_sched_forget(struct managed *m);
void bs_sched_tag(struct managed *m, int block);
void bs_sched_stats(struct blockswap_stats *st);
void bs_sched_reset(void);
/* control: blockswapctl's view and settings. */
bool bs_sched_ctl_host_needed(const struct managed *m);
/* k, or BS_SIZE_AUTO, for the stack found stack-th (0 to BS_MAX_STACK_COUNTS - 1), or
 * for all (-1). Returns 1 when a stack it concerns exists (it applies at that stack's
 * next step), 0 when it is only used by the stacks found later. */
int bs_sched_ctl_set_k(uint64_t k, int stack);
/* Blocks ahead (the window less one), the same way. */
int bs_sched_ctl_set_prefetch(uint64_t prefetch);
/* page/'s VRAM limit changed: k and the window are chosen again at the next step.
 * Returns 1 then, 0 when there is no stack yet. */
int bs_sched_ctl_budget_changed(void);
/* BLOCKSWAP_PREFETCH, or blockswapctl's value once applied. */
uint64_t bs_sched_prefetch(void);
size_t bs_sched_ctl_json(char *buf, size_t cap);

#endif
