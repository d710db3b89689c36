/* page/pager.c: the pager thread, which moves the swap window off the application's
 * threads: each round fills the window's free slots, then evicts the blocks behind it
 * one at a time, with its waits and VMM calls outside the page lock (what it works on
 * is busy meanwhile). Owns the thread and its per-round scratch. */
#define _GNU_SOURCE
#include "page/internal.h"
#include "trace/trace.h"

#include <sched.h>
#include <signal.h>
#include <string.h>

#define PG bs_pg
#define PAGER_BATCH 4096

BS_TLS bool pg_on_pager;

void pg_pager_lock(void)
{
    __atomic_store_n(&PG.pager_waiting, 1, __ATOMIC_RELAXED);
    pthread_mutex_lock(&PG.lock);
    __atomic_store_n(&PG.pager_waiting, 0, __ATOMIC_RELAXED);
}

void pg_wait_idle(struct managed *m)
{
    while (m->busy)
        pthread_cond_wait(&PG.idle_cv, &PG.lock);
}

void pg_busy_begin(struct managed *m)
{
    m->busy = true;
    PG.nbusy++;
}

void pg_busy_end(struct managed *m)
{
    m->busy = false;
    PG.nbusy--;
}

/* One round's evictions; the pager is one thread. */
static struct eviction ev[PAGER_BATCH];

/* Evicts list[0..n) together through the phases of pg_evict, waiting with the lock
 * released. Returns how many it evicted, or -1 when it did not release the lock
 * (nothing to try). */
static int pager_evict(struct managed **list, int n)
{
    int k = 0, evicted = 0;
    for (int i = 0; i < n; i++) {
        struct managed *m = list[i];
        if (m->state != RES_DEVICE || m->busy || m->pinned || bs_sched_protected(m))
            continue;
        if (!m->done && bs_drv.cuEventCreate(&m->done, CU_EVENT_DISABLE_TIMING) != CUDA_SUCCESS)
            continue;
        ev[k].m = m;
        ev[k].drop = false;
        ev[k].done = m->done;
        if (pg_evict_start(&ev[k]) != CUDA_SUCCESS)
            continue; /* it stays resident */
        pg_busy_begin(m);
        k++;
    }
    n = k;
    if (!n)
        return -1;
    static bool ok[PAGER_BATCH], again[PAGER_BATCH];
    pthread_mutex_unlock(&PG.lock);
    for (int i = 0; i < n; i++)
        ok[i] = pg_wait_event(ev[i].done) == CUDA_SUCCESS; /* else: the device is in trouble */
    pg_pager_lock();
    for (int i = 0; i < n; i++)
        ok[i] = ok[i] && pg_evict_settle(&ev[i], &again[i]) == CUDA_SUCCESS;
    pthread_mutex_unlock(&PG.lock);
    for (int i = 0; i < n; i++)
        ok[i] = ok[i] && (!again[i] || pg_wait_event(ev[i].done) == CUDA_SUCCESS) &&
                pg_evict_release(&ev[i]) == CUDA_SUCCESS;
    pg_pager_lock();
    for (int i = 0; i < n; i++) {
        if (ok[i]) {
            pg_evict_finish(&ev[i]);
            evicted++;
        }
        pg_busy_end(ev[i].m); /* one that failed stays resident; a later eviction tries again */
    }
    pthread_cond_broadcast(&PG.idle_cv);
    return evicted;
}

/* Maps and fills list[0..n) ahead of use: the VMM calls with the lock released.
 * Returns whether it released the lock. */
static bool pager_fetch(struct managed **list, int n)
{
    static bool mapped[PAGER_BATCH], pooled[PAGER_BATCH], created[PAGER_BATCH];
    int k = 0;
    for (int i = 0; i < n; i++) {
        struct managed *m = list[i];
        /* The window may have moved on while the evictions were waited for. */
        if (m->state == RES_DEVICE || m->busy || !bs_sched_protected(m))
            continue;
        bool p = pg_pool_take(m); /* before make_room, so that the room counts it */
        if (pg_make_room(m->padded, list, n, "prefetch") != CUDA_SUCCESS || !pg_resident_add(m)) {
            if (p)
                pg_pool_give(m);
            break; /* no room yet: the block is paged in when it is used */
        }
        pg_busy_begin(m);
        pooled[k] = p;
        list[k++] = m;
    }
    n = k;
    if (!n)
        return false;
    pthread_mutex_unlock(&PG.lock);
    for (int i = 0; i < n; i++) {
        struct managed *m = list[i];
        created[i] = !pooled[i] &&
                     bs_real.cuMemCreate(&m->phys, m->padded, &PG.prop, 0) == CUDA_SUCCESS;
        mapped[i] = (pooled[i] || created[i]) && pg_map(m) == CUDA_SUCCESS;
    }
    pg_pager_lock();
    for (int i = 0; i < n; i++)
        PG.pool.created += created[i];
    bs_trace_in_batch(true);
    for (int i = 0; i < n; i++) {
        struct managed *m = list[i];
        if (!mapped[i] || pg_start_fill(m, false) != CUDA_SUCCESS) {
            if (mapped[i])
                pg_unmap(m);
            pg_resident_del(m);
        }
        pg_busy_end(m);
    }
    bs_trace_in_batch(false);
    pthread_cond_broadcast(&PG.idle_cv);
    return true;
}

static void *pager_main(void *arg)
{
    static struct managed *evict_list[PAGER_BATCH], *fetch_list[PAGER_BATCH];
    pg_on_pager = true;
    /* The application's context, in which the shim's streams and memory live. */
    if (bs_drv.cuCtxSetCurrent(PG.ctx) != CUDA_SUCCESS)
        bs_log(BS_LOG_WARN, "the pager thread cannot use the application's CUDA context");
    pg_pager_lock();
    for (;;) {
        while (!PG.pager.pending || PG.pager.stopping)
            pthread_cond_wait(&PG.pager.cv, &PG.lock);
        PG.pager.pending = false;
        PG.pager.round = true;
        /* Fills first, into the slots free now, then evictions, whose waits for the
         * blocks behind the window overlap the copies just issued; a slot they free
         * is filled in the next turn. Both release the lock, meanwhile the window may
         * move or what the lists hold may be freed: look again after each. */
        for (;;) {
            int nf = bs_sched_plan(BS_PLAN_FETCH, fetch_list, PAGER_BATCH);
            pager_fetch(fetch_list, nf);
            int ne = bs_sched_plan(BS_PLAN_NEXT_OUT, evict_list, PAGER_BATCH);
            if (pager_evict(evict_list, ne) <= 0)
                break;
        }
        PG.pager.round = false;
        pthread_cond_broadcast(&PG.idle_cv); /* also wakes those waiting for it to be idle */
    }
    return NULL;
}

bool pg_pager_kick(void)
{
    if (PG.pager.stopping || !bs_cfg.pager_thread)
        return false;
    /* The pager has not started on the last window change yet: it looks at the window
     * when it does. A launch that cannot wait for it pages in on demand (the late path
     * of bs_page_begin), within the window's slots. */
    if (PG.pager.pending)
        return true;
    if (!PG.pager.started) {
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
        PG.pager.started = true;
    }
    PG.pager.pending = true;
    pthread_cond_signal(&PG.pager.cv);
    return true;
}
