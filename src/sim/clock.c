/* Host virtual time: one clock per host thread, and the host cost model that moves it.
 *
 * A thread's clock advances by the host cost of each call it makes (cost classes below,
 * CUDASIM_COST_*), by CUDASIM_API_NS per call, optionally by its measured CPU time
 * between calls (CUDASIM_HOST_CPU=1, not deterministic), and joins (max) the end of the
 * device work it waits for. It never moves because another thread did something: the
 * order in which the simulator's lock admits threads is up to the OS, so anything read
 * from a shared clock would be too. Work a thread issues starts no earlier than its
 * clock (timeline.c). Every charge is also added to the calling entry point's total,
 * which the report lists as host_ns_by_call. */
#include "sim.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const names[] = {
#define SIM_API(base, ver, sym, var) #sym,
#include "exports.def"
#undef SIM_API
};
#define NAMES (sizeof(names) / sizeof(names[0]))

/* Per entry point (the ids fault.c gives, indices into exports.def): its cost class,
 * resolved once, and the virtual ns charged to it. */
static signed char cls_of[NAMES]; /* 0: not resolved yet, else class + 1 */
static uint64_t charged[NAMES];
static uint64_t cpu_charged;

static pthread_key_t thread_key;
static __thread struct sim_thread *tls_thread;

/* ---- cost classes ---------------------------------------------------------------- */

static int classify(const char *sym)
{
    static const struct {
        const char *prefix;
        int cls;
    } map[] = {
        /* Longest prefixes first where one is the start of another. */
        {"cuLaunchHostFunc", SIM_COST_STREAM},
        {"cuLaunch", SIM_COST_LAUNCH},
        {"cuGraphLaunch", SIM_COST_LAUNCH},
        {"cuMemcpy", SIM_COST_COPY},
        {"cuMemset", SIM_COST_MEMSET},
        {"cuEvent", SIM_COST_EVENT},
        {"cuStream", SIM_COST_STREAM},
        {"cuCtxSynchronize", SIM_COST_STREAM},
        {"cuMemCreate", SIM_COST_MEM_CREATE},
        {"cuMemMap", SIM_COST_MEM_MAP},
        {"cuMemSetAccess", SIM_COST_MEM_SET_ACCESS},
        {"cuMemUnmap", SIM_COST_MEM_UNMAP},
        {"cuMemRelease", SIM_COST_MEM_RELEASE},
        {"cuMemAddressReserve", SIM_COST_ADDRESS_RESERVE},
        {"cuMemAddressFree", SIM_COST_ADDRESS_FREE},
    };
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        if (strncmp(sym, map[i].prefix, strlen(map[i].prefix)) == 0)
            return map[i].cls;
    return SIM_COST_NONE;
}

static int class_of(int id)
{
    if (!cls_of[id])
        cls_of[id] = (signed char)(classify(names[id]) + 1);
    return cls_of[id] - 1;
}

/* ---- threads --------------------------------------------------------------------- */

static uint64_t thread_cpu_ns(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0)
        return 0;
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* At thread exit its clock folds into host_retired_ns (for host_time_ns) and the record
 * goes. A record of an earlier generation (a forked child's inherited thread) belongs
 * to bookkeeping the child dropped: left alone. */
static void thread_gone(void *p)
{
    struct sim_thread *t = p;
    pthread_mutex_lock(&G.lock);
    if (t->gen == G.generation) {
        G.host_retired_ns = SIM_MAX(G.host_retired_ns, t->now);
        for (struct sim_thread **pp = &G.threads; *pp; pp = &(*pp)->next)
            if (*pp == t) {
                *pp = t->next;
                free(t);
                break;
            }
    }
    tls_thread = NULL;
    pthread_mutex_unlock(&G.lock);
}

void cudasim_clock_setup(void) { pthread_key_create(&thread_key, thread_gone); }

/* pre: lock held. A thread's first call starts its clock at 0: nothing the simulator
 * can see orders it after another thread's work (the program's own thread creation
 * and locks are invisible), and any other choice would depend on the OS's order. */
struct sim_thread *cudasim_thread(void)
{
    struct sim_thread *t = tls_thread;
    if (t && t->gen == G.generation)
        return t;
    t = calloc(1, sizeof(*t));
    if (!t)
        abort();
    t->gen = G.generation;
    t->call = -1;
    t->index = G.nthreads++;
    t->next = G.threads;
    G.threads = t;
    tls_thread = t;
    pthread_setspecific(thread_key, t);
    return t;
}

uint64_t cudasim_now(void) { return cudasim_thread()->now; }

void cudasim_join(uint64_t t)
{
    struct sim_thread *th = cudasim_thread();
    th->now = SIM_MAX(th->now, t);
}

uint64_t cudasim_host_max(void)
{
    uint64_t m = G.host_retired_ns;
    for (struct sim_thread *t = G.threads; t; t = t->next)
        m = SIM_MAX(m, t->now);
    return m;
}

/* ---- charging -------------------------------------------------------------------- */

static void charge(struct sim_thread *t, int id, uint64_t ns)
{
    t->now += ns;
    if (id >= 0)
        charged[id] += ns;
}

/* pre: lock held, G.initialized. Called once per accepted call of export id. */
void cudasim_charge_call(int id)
{
    struct sim_thread *t = cudasim_thread();
    t->call = id;
    if (G.cfg.host_cpu) {
        uint64_t c = thread_cpu_ns();
        if (t->cpu_marked && c > t->cpu_mark) {
            t->now += c - t->cpu_mark;
            cpu_charged += c - t->cpu_mark;
        }
        t->cpu_marked = false; /* time inside the simulator is not the program's */
    }
    uint64_t ns = G.cfg.api_ns;
    int c = class_of(id);
    if (c != SIM_COST_NONE)
        ns += G.cfg.cost[c].fixed;
    charge(t, id, ns);
}

/* The size-dependent part of a VMM call: per 2 MiB granule, rounded up. */
void cudasim_charge_size(enum sim_cost c, uint64_t bytes)
{
    struct sim_thread *t = cudasim_thread();
    uint64_t gran = bytes / SIM_GRANULARITY + (bytes % SIM_GRANULARITY != 0);
    charge(t, t->call, G.cfg.cost[c].per_2m * gran);
}

/* pre: lock held. End of a call: CPU time from here to the next call is the
 * program's (CUDASIM_HOST_CPU). */
void cudasim_call_end(void)
{
    if (!G.initialized || !G.cfg.host_cpu)
        return;
    struct sim_thread *t = cudasim_thread();
    t->cpu_mark = thread_cpu_ns();
    t->cpu_marked = true;
}

void cudasim_clock_reset_counts(void)
{
    memset(charged, 0, sizeof(charged));
    cpu_charged = 0;
    tls_thread = NULL;
}

void cudasim_clock_report(FILE *f)
{
    fprintf(f, "  \"host_ns_by_call\": {");
    const char *sep = "";
    for (size_t i = 0; i < NAMES; i++) {
        if (!charged[i])
            continue;
        fprintf(f, "%s\n    \"%s\": %llu", sep, names[i], (unsigned long long)charged[i]);
        sep = ",";
    }
    fprintf(f, "%s},\n", *sep ? "\n  " : "");
    fprintf(f, "  \"host_threads\": %llu,\n", (unsigned long long)G.nthreads);
    fprintf(f, "  \"host_cpu_ns\": %llu,\n", (unsigned long long)cpu_charged);
    /* Measured CPU time differs from run to run: so do virtual times that include it. */
    fprintf(f, "  \"deterministic_host_time\": %s,\n", G.cfg.host_cpu ? "false" : "true");
}
