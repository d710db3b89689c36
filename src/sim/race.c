/* The ordering checker: vector clocks per agent (host and each stream), a bounded
 * history of recent accesses per address range, and the two reports built on them:
 * unordered conflicting accesses (races) and releases of memory that unfinished,
 * unsynchronised work still uses. Byte ranges, not pages. */
#include "sim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Histories stay short in practice (same-stream supersession and pruning below); the
 * cap bounds the worst case. Dropping the oldest can only hide a race, never invent
 * one, and is counted in the report as history_dropped. */
#define HIST_PRUNE_AT 64
#define HIST_CAP 1024

/* ---- vector clocks ------------------------------------------------------------- */

static void vc_grow(struct sim_vc *v, uint32_t n)
{
    if (n <= v->n)
        return;
    uint64_t *c = realloc(v->c, n * sizeof(*c));
    if (!c)
        abort(); /* bookkeeping of a few words per stream; nothing sane to do */
    memset(c + v->n, 0, (n - v->n) * sizeof(*c));
    v->c = c;
    v->n = n;
}

uint64_t cudasim_vc_get(const struct sim_vc *v, uint32_t i) { return i < v->n ? v->c[i] : 0; }

void cudasim_vc_set(struct sim_vc *v, uint32_t i, uint64_t x)
{
    vc_grow(v, i + 1);
    v->c[i] = x;
}

void cudasim_vc_join(struct sim_vc *dst, const struct sim_vc *src)
{
    vc_grow(dst, src->n);
    for (uint32_t i = 0; i < src->n; i++)
        if (src->c[i] > dst->c[i])
            dst->c[i] = src->c[i];
}

void cudasim_vc_copy(struct sim_vc *dst, const struct sim_vc *src)
{
    vc_grow(dst, src->n);
    memcpy(dst->c, src->c, src->n * sizeof(*dst->c));
    if (dst->n > src->n)
        memset(dst->c + src->n, 0, (dst->n - src->n) * sizeof(*dst->c));
}

void cudasim_vc_free(struct sim_vc *v)
{
    free(v->c);
    v->c = NULL;
    v->n = 0;
}

/* ---- histories ----------------------------------------------------------------- */

static bool ordered_before(const struct sim_acc *a, const struct sim_vc *vc)
{
    return a->clock <= cudasim_vc_get(vc, a->agent);
}

/* An access every live agent has already seen can never race with anything again. */
static bool ordered_before_all(const struct sim_acc *a)
{
    for (uint32_t i = 0; i < G.nagents; i++) {
        const struct sim_agent *ag = &G.agents[i];
        if (ag->retired || !ag->live)
            continue;
        if (!ordered_before(a, &ag->vc))
            return false;
    }
    return true;
}

static void hist_remove(struct sim_range *r, uint32_t i)
{
    memmove(&r->hist[i], &r->hist[i + 1], (r->nhist - i - 1) * sizeof(r->hist[0]));
    r->nhist--;
}

static void hist_prune(struct sim_range *r)
{
    for (uint32_t i = 0; i < r->nhist;)
        if (ordered_before_all(&r->hist[i]))
            hist_remove(r, i);
        else
            i++;
    while (r->nhist >= HIST_CAP) {
        hist_remove(r, 0);
        G.history_dropped++;
    }
}

static void describe_agent(uint32_t agent, char *buf, size_t len)
{
    snprintf(buf, len, "%s", agent < G.nagents ? G.agents[agent].name : "?");
}

void cudasim_race_access(const struct sim_op_info *op, uintptr_t lo, uintptr_t hi, bool write)
{
    if (!G.cfg.racecheck || lo >= hi)
        return;
    const struct sim_vc *vc = &G.agents[op->agent].vc;
    struct sim_range *r = cudasim_range_find(lo);
    /* An access may span adjacent ranges (neighbouring VMM mappings): split it. */
    while (r && lo < hi) {
        uintptr_t end = SIM_MIN(hi, r->end);
        bool reported = false;
        for (uint32_t i = 0; i < r->nhist;) {
            struct sim_acc *a = &r->hist[i];
            if (a->hi <= lo || a->lo >= end || (!a->write && !write) || ordered_before(a, vc)) {
                /* The same agent's older access inside a newer one at least as strong
                 * is redundant: anything unordered with it is unordered with this. */
                if (a->agent == op->agent && a->lo >= lo && a->hi <= end && (write || !a->write)) {
                    hist_remove(r, i);
                    continue;
                }
                i++;
                continue;
            }
            if (!reported) {
                char an[64], bn[64];
                describe_agent(a->agent, an, sizeof(an));
                describe_agent(op->agent, bn, sizeof(bn));
                uintptr_t olo = SIM_MAX(lo, a->lo), ohi = SIM_MIN(end, a->hi);
                G.races++;
                cudasim_error("race on 0x%llx-0x%llx (%llu bytes): %s %s (%s, op #%llu) on %s and %s %s "
                              "(%s, op #%llu) on %s are not ordered by stream order, an event wait or "
                              "host synchronisation",
                              (unsigned long long)olo, (unsigned long long)ohi,
                              (unsigned long long)(ohi - olo), a->kind, a->name, a->write ? "write" : "read",
                              (unsigned long long)a->seq, an, op->kind, op->name, write ? "write" : "read",
                              (unsigned long long)op->seq, bn);
                reported = true; /* one report per access and range is enough to act on */
            }
            i++;
        }
        if (r->nhist >= HIST_PRUNE_AT)
            hist_prune(r);
        if (r->nhist == r->caphist) {
            uint32_t cap = r->caphist ? r->caphist * 2 : 8;
            struct sim_acc *h = realloc(r->hist, cap * sizeof(*h));
            if (!h)
                abort();
            r->hist = h;
            r->caphist = cap;
        }
        r->hist[r->nhist++] = (struct sim_acc){
            .lo = lo, .hi = end, .clock = op->clock, .end_ns = op->end_ns, .seq = op->seq,
            .kind = op->kind, .name = op->name, .agent = op->agent, .write = write,
        };
        lo = end;
        r = lo < hi ? cudasim_range_find(lo) : NULL;
    }
}

/* Host-side release (cuMemFree, cuMemUnmap, ...). By default order-based: every
 * remembered use must be ordered before the release by what the host learned through
 * its own synchronisation (cuStreamSynchronize, cuEventSynchronize or a successful
 * cuEventQuery/cuStreamQuery, cuCtxSynchronize, a synchronous call); whether the use
 * happens to be over in virtual time does not matter, since on hardware nothing
 * bounds how late it runs. CUDASIM_RACE=time keeps the old, weaker rule: only uses
 * still running at the host's virtual present count. */
void cudasim_race_host_release(const char *api, struct sim_range *r, uintptr_t lo, uintptr_t hi)
{
    const struct sim_vc *host = &G.agents[0].vc;
    for (uint32_t i = 0; i < r->nhist; i++) {
        const struct sim_acc *a = &r->hist[i];
        if (a->hi <= lo || a->lo >= hi || ordered_before(a, host))
            continue;
        if (G.cfg.race_time && a->end_ns <= cudasim_now())
            continue;
        char an[64];
        describe_agent(a->agent, an, sizeof(an));
        G.in_use_frees++;
        if (G.cfg.race_time)
            cudasim_error("%s of 0x%llx-0x%llx while %s %s (op #%llu) on %s may still use "
                          "0x%llx-0x%llx: it ends at %llu ns, the host is at %llu ns and has not "
                          "synchronised with it (cuStreamSynchronize, cuEventSynchronize or "
                          "cuCtxSynchronize first)",
                          api, (unsigned long long)lo, (unsigned long long)hi, a->kind, a->name,
                          (unsigned long long)a->seq, an, (unsigned long long)a->lo,
                          (unsigned long long)a->hi, (unsigned long long)a->end_ns,
                          (unsigned long long)cudasim_now());
        else
            cudasim_error("%s of 0x%llx-0x%llx while %s %s (op #%llu) on %s, which uses "
                          "0x%llx-0x%llx, is not ordered before the release: the host has not "
                          "synchronised with it (cuStreamSynchronize, cuEventSynchronize on an "
                          "event recorded after it, or cuCtxSynchronize first); it ends at %llu ns "
                          "in virtual time, the host is at %llu ns",
                          api, (unsigned long long)lo, (unsigned long long)hi, a->kind, a->name,
                          (unsigned long long)a->seq, an, (unsigned long long)a->lo,
                          (unsigned long long)a->hi, (unsigned long long)a->end_ns,
                          (unsigned long long)cudasim_now());
        return; /* one report per release */
    }
}

void cudasim_race_stream_release(const char *api, struct sim_range *r, uint32_t agent,
                                 const struct sim_vc *vc)
{
    for (uint32_t i = 0; i < r->nhist; i++) {
        const struct sim_acc *a = &r->hist[i];
        if (ordered_before(a, vc))
            continue;
        char an[64], bn[64];
        describe_agent(a->agent, an, sizeof(an));
        describe_agent(agent, bn, sizeof(bn));
        G.in_use_frees++;
        cudasim_error("%s of 0x%llx-0x%llx on %s while %s %s (op #%llu) on %s, which uses "
                      "0x%llx-0x%llx, is not ordered before the free (record an event after it "
                      "and cuStreamWaitEvent on the freeing stream)",
                      api, (unsigned long long)r->start, (unsigned long long)r->end, bn, a->kind,
                      a->name, (unsigned long long)a->seq, an, (unsigned long long)a->lo,
                      (unsigned long long)a->hi);
        return;
    }
}

void cudasim_race_drop(struct sim_range *r, uintptr_t lo, uintptr_t hi)
{
    (void)lo;
    (void)hi;
    free(r->hist);
    r->hist = NULL;
    r->nhist = r->caphist = 0;
}
