/* The virtual timeline: agents (host + streams) with their vector clocks and end
 * times, the three engines (compute, H2D, D2H), legacy NULL-stream and per-thread
 * default-stream rules, events, and every way the host synchronises. */
#include "sim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Per-thread default streams, one per (thread, context); tied to a state generation
 * like the context stack, so a forked child does not reuse its parent's. */
#define PT_MAX 8
static __thread struct {
    unsigned gen;
    int n;
    struct sim_ctx *ctx[PT_MAX];
    struct sim_stream *s[PT_MAX];
} tls_pt;

/* ---- agents -------------------------------------------------------------------- */

struct sim_agent *cudasim_agent(uint32_t i) { return &G.agents[i]; }

/* Operations an agent remembers for ordering by virtual issue time. Beyond this many
 * the oldest count as issued before anything (an approximation: see
 * docs/simulator.md, Threads and virtual time). */
#define MARKS_MAX 4096u

/* Notes an operation (or a wait) of a, issued at virtual time `issue`, ending at `end`. */
static void mark(struct sim_agent *a, uint64_t issue, uint64_t end)
{
    if (a->nmarks == a->capmarks && a->capmarks < MARKS_MAX) {
        uint32_t cap = a->capmarks ? a->capmarks * 2 : 16;
        struct sim_mark *m = malloc(cap * sizeof(*m));
        if (!m)
            abort();
        /* Unroll the ring, oldest first. */
        for (uint32_t i = 0; i < a->nmarks; i++)
            m[i] = a->marks[(a->head + i) % a->capmarks];
        free(a->marks);
        a->marks = m;
        a->capmarks = cap;
        a->head = 0;
    }
    uint64_t prev = a->floor;
    if (a->nmarks)
        prev = a->marks[(a->head + a->nmarks - 1) % a->capmarks].pmax;
    if (a->nmarks == a->capmarks) {
        a->floor = SIM_MAX(a->floor, a->marks[a->head].end);
        a->head = (a->head + 1) % a->capmarks;
        a->nmarks--;
    }
    a->marks[(a->head + a->nmarks) % a->capmarks] =
        (struct sim_mark){ .issue = issue, .end = end, .pmax = SIM_MAX(prev, end) };
    a->nmarks++;
    a->last_end = SIM_MAX(a->last_end, end);
}

/* When a's operations issued at virtual time t or before end: what an operation
 * issued at t waits for. Operations another thread issued at a later virtual time are
 * in t's future, even if the lock admitted them first. */
static uint64_t end_at(const struct sim_agent *a, uint64_t t)
{
    uint64_t r = a->floor;
    for (uint32_t k = a->nmarks; k-- > 0;) {
        const struct sim_mark *m = &a->marks[(a->head + k) % a->capmarks];
        if (m->issue <= t)
            r = SIM_MAX(r, m->end);
        uint64_t before = k ? a->marks[(a->head + k - 1) % a->capmarks].pmax : a->floor;
        if (r >= before)
            break; /* nothing older ends later */
    }
    return r;
}

static void marks_free(struct sim_agent *a)
{
    free(a->marks);
    a->marks = NULL;
    a->nmarks = a->capmarks = a->head = 0;
}

uint32_t cudasim_agent_new(const char *name, struct sim_ctx *ctx, bool blocking)
{
    if (G.nagents == G.capagents) {
        uint32_t cap = G.capagents ? G.capagents * 2 : 16;
        struct sim_agent *a = realloc(G.agents, cap * sizeof(*a));
        if (!a)
            abort();
        G.agents = a;
        G.capagents = cap;
    }
    uint32_t i = G.nagents++;
    struct sim_agent *a = &G.agents[i];
    memset(a, 0, sizeof(*a));
    snprintf(a->name, sizeof(a->name), "%s", name);
    a->ctx = ctx;
    a->live = true;
    a->blocking = blocking;
    /* A new stream starts where its creator is: whatever the host did before creating
     * it precedes all of its work. Its creation counts as issued at time 0, i.e. in
     * every thread's past: a thread can only hold the handle once it exists. */
    if (i > 0) {
        cudasim_vc_copy(&a->vc, &G.agents[0].vc);
        mark(a, 0, cudasim_now());
    }
    return i;
}

void cudasim_timeline_reset(void)
{
    G.nagents = 0;
    cudasim_agent_new("host", NULL, false);
    cudasim_vc_set(&G.agents[0].vc, 0, 1);
}

/* ---- streams ------------------------------------------------------------------- */

void cudasim_stream_describe(const struct sim_stream *s, char *buf, size_t len)
{
    switch (s->kind) {
    case SIM_STREAM_LEGACY: snprintf(buf, len, "legacy stream"); break;
    case SIM_STREAM_PER_THREAD: snprintf(buf, len, "per-thread stream %p", (void *)s); break;
    case SIM_STREAM_USER: snprintf(buf, len, "stream %p", (void *)s); break;
    }
}

struct sim_stream *cudasim_stream_make(struct sim_ctx *ctx, enum sim_stream_kind kind, unsigned flags,
                                       int prio)
{
    struct sim_stream *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->magic = SIM_MAGIC_STREAM;
    s->kind = kind;
    s->ctx = ctx;
    s->flags = flags;
    s->priority = prio;
    char name[48];
    cudasim_stream_describe(s, name, sizeof(name));
    bool blocking = kind != SIM_STREAM_LEGACY && !(flags & CU_STREAM_NON_BLOCKING);
    s->agent = cudasim_agent_new(name, ctx, blocking);
    if (kind != SIM_STREAM_LEGACY) {
        s->next = ctx->streams;
        ctx->streams = s;
    }
    return s;
}

static struct sim_stream *per_thread_stream(struct sim_ctx *ctx)
{
    if (tls_pt.gen != G.generation) {
        tls_pt.gen = G.generation;
        tls_pt.n = 0;
    }
    for (int i = 0; i < tls_pt.n; i++)
        if (tls_pt.ctx[i] == ctx)
            return tls_pt.s[i];
    struct sim_stream *s = cudasim_stream_make(ctx, SIM_STREAM_PER_THREAD, 0, 0);
    if (!s)
        return NULL;
    /* Beyond PT_MAX contexts per thread the oldest slot is reused; its stream stays
     * valid in the context's list. */
    int slot = tls_pt.n < PT_MAX ? tls_pt.n++ : 0;
    tls_pt.ctx[slot] = ctx;
    tls_pt.s[slot] = s;
    return s;
}

/* Handle 0 means the legacy stream, or the per-thread stream for _ptsz/_ptds entry
 * points; CU_STREAM_LEGACY and CU_STREAM_PER_THREAD name them explicitly. */
CUresult cudasim_stream_resolve(CUstream h, bool pt, struct sim_stream **out)
{
    struct sim_ctx *ctx = cudasim_current_ctx();
    struct sim_stream *s;
    if (h == NULL)
        s = pt ? per_thread_stream(ctx) : ctx->legacy;
    else if (h == CU_STREAM_LEGACY)
        s = ctx->legacy;
    else if (h == CU_STREAM_PER_THREAD)
        s = per_thread_stream(ctx);
    else {
        s = (struct sim_stream *)h;
        if (s->magic != SIM_MAGIC_STREAM)
            return CUDA_ERROR_INVALID_HANDLE;
    }
    if (!s)
        return CUDA_ERROR_OUT_OF_MEMORY;
    if (s->ctx->sticky)
        return s->ctx->sticky;
    *out = s;
    return CUDA_SUCCESS;
}

/* ---- ordering ------------------------------------------------------------------ */

static struct sim_agent *A(const struct sim_stream *s) { return &G.agents[s->agent]; }

/* Legacy NULL-stream rule: its ops wait for all earlier work of blocking streams of
 * its context, and blocking streams' later ops wait for it. Joins those agents'
 * clocks into s and returns the time they end. */
static uint64_t join_implicit(struct sim_stream *s, uint64_t now)
{
    struct sim_agent *me = A(s);
    uint64_t t = 0;
    if (s->kind == SIM_STREAM_LEGACY) {
        for (uint32_t i = 1; i < G.nagents; i++) {
            struct sim_agent *a = &G.agents[i];
            if (a == me || !a->blocking || a->retired || a->ctx != s->ctx)
                continue;
            t = SIM_MAX(t, end_at(a, now));
            cudasim_vc_join(&me->vc, &a->vc);
        }
    } else if (me->blocking) {
        struct sim_agent *l = A(s->ctx->legacy);
        t = end_at(l, now);
        cudasim_vc_join(&me->vc, &l->vc);
    }
    return t;
}

uint64_t cudasim_tl_order(struct sim_stream *s, enum sim_engine_id eng, uint64_t dur, uint64_t *end)
{
    struct sim_agent *me = A(s);
    /* Host program order: everything the host did or learned before issuing. The
     * vector clocks follow the order the lock admitted the calls (what really
     * happened); times follow virtual issue times (end_at). */
    cudasim_vc_join(&me->vc, &G.agents[0].vc);
    uint64_t now = cudasim_now();
    uint64_t t = SIM_MAX(now, end_at(me, now));
    t = SIM_MAX(t, join_implicit(s, now));
    cudasim_vc_set(&me->vc, s->agent, cudasim_vc_get(&me->vc, s->agent) + 1);
    if (eng == SIM_ENG_COMPUTE && s->priority < 0) {
        /* A GPU dispatches the thread blocks of a stream of higher priority ahead of
         * the ones waiting, on SMs the others leave free: such kernels start when their
         * stream and events allow, and neither queue behind the default-priority ones
         * nor delay them. */
        G.prio_free_at = SIM_MAX(G.prio_free_at, t + dur);
        G.prio_busy_ns += dur;
    } else if (eng != SIM_ENG_NONE) {
        /* One queue per engine, served in issue order. */
        t = SIM_MAX(t, G.eng[eng].free_at);
        G.eng[eng].free_at = t + dur;
        G.eng[eng].busy_ns += dur;
    }
    mark(me, now, t + dur);
    *end = t + dur;
    return t;
}

static void host_learn(struct sim_agent *a)
{
    cudasim_join(a->last_end);
    cudasim_vc_join(&G.agents[0].vc, &a->vc);
}

/* The host waits for everything issued to s so far: host time moves to its end and
 * the host learns its clock. Waiting on the legacy stream waits like a marker op on
 * it would, i.e. also for earlier work of the blocking streams. */
void cudasim_host_wait_stream(struct sim_stream *s)
{
    host_learn(A(s));
    if (s->kind == SIM_STREAM_LEGACY)
        for (uint32_t i = 1; i < G.nagents; i++) {
            struct sim_agent *a = &G.agents[i];
            if (a->blocking && !a->retired && a->ctx == s->ctx)
                host_learn(a);
        }
}

/* Device-wide wait. Dead streams are joined one last time and then retired, so
 * their bookkeeping stops costing anything. */
void cudasim_host_wait_all(void)
{
    for (uint32_t i = 1; i < G.nagents; i++) {
        struct sim_agent *a = &G.agents[i];
        if (a->retired)
            continue;
        host_learn(a);
        if (!a->live) {
            a->retired = true;
            cudasim_vc_free(&a->vc);
            marks_free(a);
        }
    }
    for (int e = 0; e < SIM_ENG_COUNT; e++)
        cudasim_join(G.eng[e].free_at);
    cudasim_join(G.prio_free_at);
}

static bool stream_pending(struct sim_stream *s)
{
    uint64_t now = cudasim_now();
    if (A(s)->last_end > now)
        return true;
    if (s->kind == SIM_STREAM_LEGACY)
        for (uint32_t i = 1; i < G.nagents; i++) {
            struct sim_agent *a = &G.agents[i];
            if (a->blocking && !a->retired && a->ctx == s->ctx && a->last_end > now)
                return true;
        }
    return false;
}

/* ---- stream API ---------------------------------------------------------------- */

CUresult cudasim_stream_create(CUstream *ph, unsigned flags, int prio)
{
    if (!ph || (flags & ~(unsigned)CU_STREAM_NON_BLOCKING))
        return CUDA_ERROR_INVALID_VALUE;
    /* Priorities clamp to the range cuCtxGetStreamPriorityRange reports, as real. */
    prio = SIM_MAX(-5, SIM_MIN(0, prio));
    struct sim_stream *s = cudasim_stream_make(cudasim_current_ctx(), SIM_STREAM_USER, flags, prio);
    if (!s)
        return CUDA_ERROR_OUT_OF_MEMORY;
    *ph = (CUstream)s;
    return CUDA_SUCCESS;
}

/* Work already issued completes (the timeline keeps the agent); the handle dies. */
CUresult cudasim_stream_destroy(CUstream h)
{
    struct sim_stream *s = (struct sim_stream *)h;
    if (!s || h == CU_STREAM_LEGACY || h == CU_STREAM_PER_THREAD || s->magic != SIM_MAGIC_STREAM ||
        s->kind != SIM_STREAM_USER)
        return CUDA_ERROR_INVALID_HANDLE;
    struct sim_ctx *ctx = s->ctx;
    for (struct sim_stream **pp = &ctx->streams; *pp; pp = &(*pp)->next)
        if (*pp == s) {
            *pp = s->next;
            break;
        }
    A(s)->live = false;
    s->magic = SIM_MAGIC_DEAD;
    /* Kept, not freed: a handle used after its destruction then reads as dead and is
     * answered with CUDA_ERROR_INVALID_HANDLE, instead of reading freed memory. */
    s->next = G.dead_streams;
    G.dead_streams = s;
    return CUDA_SUCCESS;
}

CUresult cudasim_stream_synchronize(CUstream h, bool pt)
{
    struct sim_stream *s;
    CUresult r = cudasim_stream_resolve(h, pt, &s);
    if (r)
        return r;
    if (s->capture)
        return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
    cudasim_host_wait_stream(s);
    return CUDA_SUCCESS;
}

/* A poll that finds work pending moves host time to its completion but reports
 * NOT_READY this once; the next poll succeeds and synchronises. Polling loops thus
 * terminate, and only a successful query counts as having waited. */
CUresult cudasim_stream_query(CUstream h, bool pt)
{
    struct sim_stream *s;
    CUresult r = cudasim_stream_resolve(h, pt, &s);
    if (r)
        return r;
    if (stream_pending(s)) {
        uint64_t t = A(s)->last_end;
        if (s->kind == SIM_STREAM_LEGACY)
            for (uint32_t i = 1; i < G.nagents; i++) {
                struct sim_agent *a = &G.agents[i];
                if (a->blocking && !a->retired && a->ctx == s->ctx)
                    t = SIM_MAX(t, a->last_end);
            }
        cudasim_join(t);
        return CUDA_ERROR_NOT_READY;
    }
    cudasim_host_wait_stream(s);
    return CUDA_SUCCESS;
}

CUresult cudasim_stream_wait_event(CUstream h, CUevent he, unsigned flags, bool pt)
{
    struct sim_stream *s;
    struct sim_event *e = (struct sim_event *)he;
    CUresult r = cudasim_stream_resolve(h, pt, &s);
    if (r)
        return r;
    if (!e || e->magic != SIM_MAGIC_EVENT)
        return CUDA_ERROR_INVALID_HANDLE;
    if (s->capture)
        return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
    (void)flags;
    if (!e->recorded)
        return CUDA_SUCCESS; /* waiting on a never-recorded event is a no-op, as real */
    struct sim_agent *a = A(s);
    mark(a, cudasim_now(), e->time); /* later work issued from now on waits for it */
    cudasim_vc_join(&a->vc, &e->vc);
    return CUDA_SUCCESS;
}

CUresult cudasim_stream_get_flags(CUstream h, unsigned *flags, bool pt)
{
    struct sim_stream *s;
    CUresult r = cudasim_stream_resolve(h, pt, &s);
    if (r)
        return r;
    if (!flags)
        return CUDA_ERROR_INVALID_VALUE;
    *flags = s->flags;
    return CUDA_SUCCESS;
}

CUresult cudasim_stream_get_priority(CUstream h, int *prio, bool pt)
{
    struct sim_stream *s;
    CUresult r = cudasim_stream_resolve(h, pt, &s);
    if (r)
        return r;
    if (!prio)
        return CUDA_ERROR_INVALID_VALUE;
    *prio = s->priority;
    return CUDA_SUCCESS;
}

CUresult cudasim_stream_get_ctx(CUstream h, CUcontext *pctx, bool pt)
{
    struct sim_stream *s;
    CUresult r = cudasim_stream_resolve(h, pt, &s);
    if (r)
        return r;
    if (!pctx)
        return CUDA_ERROR_INVALID_VALUE;
    *pctx = (CUcontext)s->ctx;
    return CUDA_SUCCESS;
}

CUresult cudasim_stream_get_id(CUstream h, unsigned long long *id, bool pt)
{
    struct sim_stream *s;
    CUresult r = cudasim_stream_resolve(h, pt, &s);
    if (r)
        return r;
    if (!id)
        return CUDA_ERROR_INVALID_VALUE;
    *id = s->agent;
    return CUDA_SUCCESS;
}

CUresult cudasim_ctx_synchronize(void)
{
    cudasim_host_wait_all();
    return CUDA_SUCCESS;
}

/* ---- events -------------------------------------------------------------------- */

CUresult cudasim_event_create(CUevent *ph, unsigned flags)
{
    if (!ph || (flags & ~(unsigned)(CU_EVENT_BLOCKING_SYNC | CU_EVENT_DISABLE_TIMING | CU_EVENT_INTERPROCESS)))
        return CUDA_ERROR_INVALID_VALUE;
    struct sim_event *e = calloc(1, sizeof(*e));
    if (!e)
        return CUDA_ERROR_OUT_OF_MEMORY;
    e->magic = SIM_MAGIC_EVENT;
    e->ctx = cudasim_current_ctx();
    e->flags = flags;
    *ph = (CUevent)e;
    return CUDA_SUCCESS;
}

static CUresult event_get(CUevent h, struct sim_event **out)
{
    struct sim_event *e = (struct sim_event *)h;
    if (!e || e->magic != SIM_MAGIC_EVENT)
        return CUDA_ERROR_INVALID_HANDLE;
    *out = e;
    return CUDA_SUCCESS;
}

/* An event is a zero-length op on its stream: its timestamp is when all earlier work
 * there is done, its clock what that work had seen. */
CUresult cudasim_event_record(CUevent h, CUstream hs, unsigned flags, bool pt)
{
    struct sim_event *e;
    struct sim_stream *s;
    CUresult r = event_get(h, &e);
    if (r)
        return r;
    if ((r = cudasim_stream_resolve(hs, pt, &s)))
        return r;
    if (s->capture)
        return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
    (void)flags;
    uint64_t end;
    e->time = cudasim_tl_order(s, SIM_ENG_NONE, 0, &end);
    cudasim_vc_copy(&e->vc, &A(s)->vc);
    e->recorded = true;
    return CUDA_SUCCESS;
}

CUresult cudasim_event_synchronize(CUevent h)
{
    struct sim_event *e;
    CUresult r = event_get(h, &e);
    if (r)
        return r;
    if (e->recorded) {
        cudasim_join(e->time);
        cudasim_vc_join(&G.agents[0].vc, &e->vc);
    }
    return CUDA_SUCCESS;
}

CUresult cudasim_event_query(CUevent h)
{
    struct sim_event *e;
    CUresult r = event_get(h, &e);
    if (r)
        return r;
    if (!e->recorded)
        return CUDA_SUCCESS;
    if (e->time > cudasim_now()) {
        cudasim_join(e->time);
        return CUDA_ERROR_NOT_READY;
    }
    cudasim_vc_join(&G.agents[0].vc, &e->vc);
    return CUDA_SUCCESS;
}

CUresult cudasim_event_elapsed(float *ms, CUevent ha, CUevent hb)
{
    struct sim_event *a, *b;
    if (!ms)
        return CUDA_ERROR_INVALID_VALUE;
    if (event_get(ha, &a) || event_get(hb, &b))
        return CUDA_ERROR_INVALID_HANDLE;
    if ((a->flags | b->flags) & CU_EVENT_DISABLE_TIMING)
        return CUDA_ERROR_INVALID_HANDLE;
    if (!a->recorded || !b->recorded)
        return CUDA_ERROR_INVALID_HANDLE;
    if (a->time > cudasim_now() || b->time > cudasim_now())
        return CUDA_ERROR_NOT_READY;
    *ms = (float)(((double)b->time - (double)a->time) / 1e6);
    return CUDA_SUCCESS;
}

CUresult cudasim_event_destroy(CUevent h)
{
    struct sim_event *e;
    CUresult r = event_get(h, &e);
    if (r)
        return r;
    e->magic = SIM_MAGIC_DEAD;
    cudasim_vc_free(&e->vc);
    free(e);
    return CUDA_SUCCESS;
}
