/* trace/trace.c: BLOCKSWAP_TRACE. Times each block's copy in, compute, stall and
 * write-back with CUDA events on the GPU's own clock, step by step, and writes them as
 * a text log (one line per block per step) and/or a Chrome trace-event timeline; keeps
 * the totals that the summary and blockswap_get_stats report. Called by page/ under its
 * lock; records nothing on a capturing stream; never allocates after the first step. */
#define _GNU_SOURCE
#include "bs.h"
#include "blockswap.h"
#include "schedule/schedule.h"
#include "trace/trace.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The GPU-clock points of one block in one step. */
enum ev {
    EV_IN0, EV_IN1,      /* first copy-in issued, last copy-in done (shim H2D stream) */
    EV_END,              /* its last kernel so far ends */
    EV_OUT0, EV_OUT1,    /* write-back (shim D2H stream) */
    EV_EVICT,            /* the work that used it is done: its VRAM may go */
    EV_COUNT
};
/* Waits of the compute stream for the block: pair i is where the stream stood before a
 * launch that might wait (its weights absent or still being copied) and where it stood
 * when the launch could go. Pair 0 is the block's first launch, always recorded: its
 * start is the block's start. */
#define MAX_WAITS 16

struct rec {
    int step;            /* -1: copied in for a compute that has not started yet */
    int block;
    bool swapped, live;
    unsigned have;       /* bit per enum ev recorded */
    uint64_t in_bytes, out_bytes, skipped_bytes;
    uint64_t in_from[3];  /* in_bytes by where the page-in read: pinned, pageable, file */
    int evicted;
    int nwait;           /* completed pairs */
    int launches;        /* launches touching the block so far */
    bool wait_open;      /* wait[nwait][0] recorded, [1] not yet */
    CUevent ev[EV_COUNT];
    CUevent wait[MAX_WAITS][2];
};

#define NRECS 4096       /* block records in flight: three steps of 1365 blocks */
#define MAX_BLOCKS 1024  /* per stack; blocks beyond are not traced */
#define NSTEPS 8         /* steps whose base event is kept */
#define EMIT_LAG 2       /* step s is written once step s + 2 starts (its evictions are done) */

static bool on;                 /* tracing configured and files open */
static bool failed;             /* a driver call of the tracer failed: it stopped */
static int text_fd = -1, json_fd = -1;
static struct rec recs[NRECS];
static int rec_next;            /* ring cursor */
static int pending_in[MAX_BLOCKS], current[MAX_BLOCKS]; /* rec index + 1, 0 none */
/* Launches that touched each block in its last step: the one that ends it is known in
 * advance, so EV_END is recorded once per block, not after every launch. */
static int learned[MAX_BLOCKS];
static int cur_stack = -1, cur_block = -1, step = -1, emitted = 0;
static CUstream cur_stream;     /* where the current block computes */
static bool end_due;            /* bs_trace_launch_end records EV_END */
static CUevent step_base[NSTEPS];
static double step_abs_ms[NSTEPS]; /* GPU time of each step's base since trace start */
static uint64_t dropped, waits_lost;
static bool forked;             /* in a child: trace only to paths of its own (%p) */

/* Totals of the steps after the first, and of the first (which loads): see emit_step. */
static struct bs_trace_totals tot, tot_first;

static char path_text[260], path_json[260];

/* ---- output ---- */

static void out(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void out(int fd, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (n < 0 || fd < 0)
        return;
    if ((size_t)n >= sizeof(buf))
        n = sizeof(buf) - 1;
    for (const char *p = buf; n > 0;) {
        ssize_t w = write(fd, p, (size_t)n);
        if (w <= 0)
            return;
        p += w;
        n -= (int)w;
    }
}

/* O_NOFOLLOW: never through a planted symlink; 0600: traces hold addresses and timings.
 * O_NONBLOCK, then only a regular file or a character device (/dev/null): a FIFO there
 * would block the application in open() or in a write, for good. */
static int open_out(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0600);
    int err = fd < 0 ? errno : 0;
    struct stat st;
    if (fd >= 0 && (fstat(fd, &st) != 0 || !(S_ISREG(st.st_mode) || S_ISCHR(st.st_mode)) ||
                    fcntl(fd, F_SETFL, 0) != 0 || (S_ISREG(st.st_mode) && ftruncate(fd, 0) != 0)))
        err = EINVAL;
    if (err) {
        if (fd >= 0)
            close(fd);
        bs_log(BS_LOG_ERROR, "cannot write the trace file %s (%s): tracing is off; "
               "set BLOCKSWAP_TRACE to a writable path", path,
               err == EINVAL ? "not a regular file" : strerror(err));
        return -1;
    }
    return fd;
}

/* Copies src to dst, replacing "%p" with the process id. */
static int expand(const char *src, size_t len, char *dst, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        char tmp[24];
        const char *piece = tmp;
        size_t plen;
        if (src[i] == '%' && i + 1 < len && src[i + 1] == 'p') {
            plen = (size_t)snprintf(tmp, sizeof(tmp), "%d", (int)getpid());
            i++;
        } else {
            tmp[0] = src[i];
            plen = 1;
        }
        if (o + plen >= cap)
            return -ENAMETOOLONG;
        memcpy(dst + o, piece, plen);
        o += plen;
    }
    dst[o] = '\0';
    return 0;
}

static bool ends_with_json(const char *s, size_t len)
{
    return len >= 5 && strncmp(s + len - 5, ".json", 5) == 0;
}

int bs_trace_parse_paths(const char *spec, char *text, size_t text_cap, char *json,
                         size_t json_cap)
{
    if (!spec || !text || !json || !text_cap || !json_cap)
        return -EINVAL;
    text[0] = json[0] = '\0';
    size_t n = strlen(spec);
    if (!n)
        return 0;
    const char *comma = memchr(spec, ',', n);
    const char *part[2] = { spec, comma ? comma + 1 : NULL };
    size_t plen[2] = { comma ? (size_t)(comma - spec) : n, comma ? n - (size_t)(comma - spec) - 1 : 0 };
    for (int i = 0; i < (comma ? 2 : 1); i++) {
        if (!plen[i] || memchr(part[i], ',', plen[i]))
            return -EINVAL; /* an empty path, or more than two */
        bool js = ends_with_json(part[i], plen[i]);
        char *dst = js ? json : text;
        if (dst[0])
            return -EINVAL; /* two of the same kind */
        int err = expand(part[i], plen[i], dst, js ? json_cap : text_cap);
        if (err)
            return err;
    }
    return 0;
}

/* ---- set-up ---- */

bool bs_trace_live;

static void set_live(void)
{
    bs_trace_live = on && !failed;
}

void bs_trace_setup(void)
{
    if (!bs_cfg.trace[0] || on || (forked && !strstr(bs_cfg.trace, "%p")))
        return;
    int err = bs_trace_parse_paths(bs_cfg.trace, path_text, sizeof(path_text), path_json,
                                   sizeof(path_json));
    if (err) {
        bs_log(BS_LOG_ERROR, "BLOCKSWAP_TRACE=%s is not valid (%s): tracing is off; give one "
               "path, or a text path and a .json path separated by a comma", bs_cfg.trace,
               err == -ENAMETOOLONG ? "a path is too long" : "expected one or two paths, "
               "at most one ending in .json");
        return;
    }
    /* The device, so that a reader can tell a real GPU's clock from the simulator's. */
    char dev_name[128] = "unknown device";
    CUdevice dev;
    if (bs_drv.cuCtxGetDevice && bs_drv.cuDeviceGetName &&
        bs_drv.cuCtxGetDevice(&dev) == CUDA_SUCCESS &&
        bs_drv.cuDeviceGetName(dev_name, sizeof(dev_name), dev) == CUDA_SUCCESS) {
        for (char *c = dev_name; *c; c++)
            if (*c == '"' || *c == '\\' || (unsigned char)*c < 0x20)
                *c = ' '; /* it goes into JSON */
    }
    if (path_text[0] && (text_fd = open_out(path_text)) >= 0)
        out(text_fd, "# blockswap %s trace, pid %d, device: %s; per block per step, times "
            "from CUDA events on the GPU clock (ms); bytes exact; see docs/tracing.md\n",
            BS_VERSION, (int)getpid(), dev_name);
    if (path_json[0] && (json_fd = open_out(path_json)) >= 0) {
        int pid = (int)getpid();
        out(json_fd, "{\"displayTimeUnit\":\"ms\",\"otherData\":{\"tool\":\"blockswap\","
            "\"version\":\"%s\",\"clock\":\"gpu\",\"device\":\"%s\"},\"traceEvents\":[\n"
            "{\"ph\":\"M\",\"pid\":%d,\"name\":\"process_name\",\"args\":{\"name\":\"blockswap %d\"}}",
            BS_VERSION, dev_name, pid, pid);
        static const char *const lanes[] = { "steps", "compute", "copy in (host to device)",
                                             "copy out (device to host)" };
        for (int i = 0; i < 4; i++)
            out(json_fd, ",\n{\"ph\":\"M\",\"pid\":%d,\"tid\":%d,\"name\":\"thread_name\","
                "\"args\":{\"name\":\"%s\"}},\n{\"ph\":\"M\",\"pid\":%d,\"tid\":%d,"
                "\"name\":\"thread_sort_index\",\"args\":{\"sort_index\":%d}}",
                pid, i, lanes[i], pid, i, i);
    }
    on = text_fd >= 0 || json_fd >= 0;
    set_live();
    if (on) {
        bs_log(BS_LOG_INFO, "tracing to %s%s%s", path_text, path_text[0] && path_json[0] ? " and " : "",
               path_json);
    }
}



static void stop(const char *what, CUresult r)
{
    if (failed)
        return;
    failed = true;
    set_live();
    bs_log(BS_LOG_WARN, "tracing stopped: %s failed (CUDA error %d); the application "
           "is not affected", what, (int)r);
}

static bool record_ev(CUevent *ev, CUstream s)
{
    CUresult res;
    if (!*ev && (res = bs_drv.cuEventCreate(ev, CU_EVENT_DEFAULT)) != CUDA_SUCCESS) {
        stop("cuEventCreate", res);
        return false;
    }
    if ((res = bs_drv.cuEventRecord(*ev, s)) != CUDA_SUCCESS) {
        stop("cuEventRecord", res);
        return false;
    }
    return true;
}

static bool record(struct rec *r, enum ev e, CUstream s)
{
    if (!record_ev(&r->ev[e], s))
        return false;
    r->have |= 1u << e;
    return true;
}

static struct rec *rec_get(int idx1)
{
    return idx1 ? &recs[idx1 - 1] : NULL;
}

/* A fresh record for block b, or NULL when the ring is full of unwritten ones. */
static struct rec *rec_new(int b)
{
    for (int tries = 0; tries < NRECS; tries++) {
        struct rec *r = &recs[rec_next];
        rec_next = (rec_next + 1) % NRECS;
        if (r->live)
            continue;
        r->live = true;
        r->step = -1;
        r->block = b;
        r->have = 0;
        r->swapped = false;
        r->in_bytes = r->out_bytes = r->skipped_bytes = 0;
        memset(r->in_from, 0, sizeof(r->in_from));
        r->evicted = 0;
        r->nwait = 0;
        r->launches = 0;
        r->wait_open = false;
        return r;
    }
    dropped++;
    return NULL;
}

static int idx1(const struct rec *r)
{
    return r ? (int)(r - recs) + 1 : 0;
}

/* The block of m in the traced stack, or -1. */
static int block_of(const struct managed *m)
{
    if (m->sched.stack < 0 || m->sched.block < 0 || m->sched.block >= MAX_BLOCKS)
        return -1;
    return m->sched.stack == cur_stack || cur_stack < 0 ? m->sched.block : -1;
}

/* ---- copies ---- */

/* A copy for block b belongs to its compute in this step while that is going on (the
 * block is paged in on demand), otherwise to its next compute. */
static struct rec *copy_rec(int b)
{
    struct rec *r = rec_get(current[b]);
    if (b == cur_block && r && r->step == step)
        return r;
    return rec_get(pending_in[b]);
}

/* Within a batch of copies (the pager's window fill), a block's end event is recorded
 * once, when the next block's copies start or the batch ends. */
static bool batching;
static struct rec *in_deferred;
static CUstream in_deferred_stream;

static void in_flush(void)
{
    if (in_deferred && bs_trace_on())
        record(in_deferred, EV_IN1, in_deferred_stream);
    in_deferred = NULL;
}

void bs_trace_in_batch(bool begin)
{
    if (!begin)
        in_flush();
    batching = begin;
}

void bs_trace_in_begin(struct managed *m, CUstream s)
{
    int b = block_of(m);
    if (!bs_trace_on() || b < 0)
        return;
    if (in_deferred && in_deferred != copy_rec(b))
        in_flush();
    struct rec *r = copy_rec(b);
    if (!r && (r = rec_new(b)))
        pending_in[b] = idx1(r);
    if (r && !(r->have & 1u << EV_IN0))
        record(r, EV_IN0, s);
}

void bs_trace_in_end(struct managed *m, CUstream s)
{
    int b = block_of(m);
    if (!bs_trace_on() || b < 0)
        return;
    struct rec *r = copy_rec(b);
    if (!r)
        return;
    r->in_bytes += m->size;
    r->in_from[m->host ? (m->host_pinned ? 0 : 1) : 2] += m->size;
    if (batching) {
        in_deferred = r;
        in_deferred_stream = s;
    } else {
        record(r, EV_IN1, s);
    }
}

/* The record that eviction and write-back of m belong to: its last compute. */
static struct rec *rec_out(const struct managed *m)
{
    int b = block_of(m);
    if (b < 0)
        return NULL;
    struct rec *r = rec_get(current[b]);
    return r ? r : rec_get(pending_in[b]);
}

void bs_trace_out_begin(struct managed *m, CUstream s)
{
    struct rec *r = bs_trace_on() ? rec_out(m) : NULL;
    if (r && !(r->have & 1u << EV_OUT0))
        record(r, EV_OUT0, s);
}

void bs_trace_out_end(struct managed *m, CUstream s)
{
    struct rec *r = bs_trace_on() ? rec_out(m) : NULL;
    if (r && record(r, EV_OUT1, s))
        r->out_bytes += m->size;
}

void bs_trace_skipped(struct managed *m)
{
    struct rec *r = bs_trace_on() ? rec_out(m) : NULL;
    if (r)
        r->skipped_bytes += m->size;
}

void bs_trace_evict(struct managed *m, CUstream s)
{
    struct rec *r = bs_trace_on() ? rec_out(m) : NULL;
    if (!r)
        return;
    if (!(r->have & 1u << EV_EVICT))
        record(r, EV_EVICT, s);
    r->evicted++;
}

/* ---- steps and emission ---- */

static bool has(const struct rec *r, enum ev e)
{
    return r->have & 1u << e;
}

/* Whether r's events have all happened. Each stream completes in order, so the last
 * event r has on each of the three streams tells: its compute stream's end, its last
 * copy in, and its write-back or eviction mark. */
static bool rec_ready(struct rec *r)
{
    CUevent last[3] = {
        has(r, EV_END) ? r->ev[EV_END] : r->nwait ? r->wait[r->nwait - 1][1] : NULL,
        has(r, EV_IN1) ? r->ev[EV_IN1] : NULL,
        has(r, EV_OUT1) ? r->ev[EV_OUT1] : has(r, EV_EVICT) ? r->ev[EV_EVICT] : NULL,
    };
    for (int i = 0; i < 3; i++)
        if (last[i] && bs_drv.cuEventQuery(last[i]) == CUDA_ERROR_NOT_READY)
            return false;
    return true;
}

/* ms from a to b on the GPU clock; false when either is missing. */
static bool span(CUevent a, CUevent b, double *ms)
{
    float f = 0;
    if (!a || !b || bs_drv.cuEventElapsedTime(&f, a, b) != CUDA_SUCCESS)
        return false;
    *ms = f;
    return true;
}


/* GPU time of event ev since trace start, in ms. */
static bool at_ev(CUevent ev, int s, double *ms)
{
    double rel;
    if (!span(step_base[s % NSTEPS], ev, &rel))
        return false;
    *ms = step_abs_ms[s % NSTEPS] + rel;
    return true;
}

static bool at(const struct rec *r, enum ev e, int s, double *ms)
{
    return has(r, e) && at_ev(r->ev[e], s, ms);
}

static void json_slice(int tid, const char *name, int b, int s, double t0, double t1,
                       const char *cat, const char *extra)
{
    if (json_fd < 0 || t1 < t0 || t1 < 0)
        return;
    /* The first step's one move of blocks loaded straight to VRAM may start before the
     * step does (the copy-out stream waits for nothing else): drawn from time 0. */
    if (t0 < 0)
        t0 = 0;
    out(json_fd, ",\n{\"ph\":\"X\",\"pid\":%d,\"tid\":%d,\"ts\":%.3f,\"dur\":%.3f,"
        "\"name\":\"%s %d\",\"cat\":\"%s\",\"args\":{\"block\":%d,\"step\":%d%s}}",
        (int)getpid(), tid, t0 * 1000.0, (t1 - t0) * 1000.0, name, b, cat, b, s, extra);
}

struct step_sum {
    int blocks, swapped;
    uint64_t in_bytes, out_bytes, skipped_bytes;
    double in_ms, compute_ms, stall_ms, out_ms, t0, t1;
    bool any_time;
};

static void emit_rec(struct rec *r, int s, struct step_sum *ss)
{
    double in_ms = 0, comp_ms = 0, stall_ms = 0, out_ms = 0, t0, t1, w;
    if (has(r, EV_IN0) && has(r, EV_IN1))
        span(r->ev[EV_IN0], r->ev[EV_IN1], &in_ms);
    /* The block runs from its first arrival to its last kernel's end; what of that the
     * stream spent waiting for weights is stall, the rest compute. */
    for (int i = 0; i < r->nwait; i++)
        if (span(r->wait[i][0], r->wait[i][1], &w) && w > 0)
            stall_ms += w;
    if (r->nwait && has(r, EV_END) && span(r->wait[0][0], r->ev[EV_END], &comp_ms))
        comp_ms = comp_ms > stall_ms ? comp_ms - stall_ms : 0;
    if (has(r, EV_OUT0) && has(r, EV_OUT1))
        span(r->ev[EV_OUT0], r->ev[EV_OUT1], &out_ms);
    double gbps = in_ms > 0 ? r->in_bytes / (in_ms * 1e6) : 0;
    if (text_fd >= 0)
        out(text_fd, "Block %d: step=%d %s in_bytes=%llu transfer_ms=%.3f in_gbps=%.2f "
            "compute_ms=%.3f stall_ms=%.3f out_bytes=%llu to_cpu_ms=%.3f "
            "skipped_bytes=%llu evicted=%d in_pinned_bytes=%llu in_pageable_bytes=%llu "
            "in_file_bytes=%llu\n", r->block, s,
            r->swapped ? "swapped" : "resident", (unsigned long long)r->in_bytes, in_ms, gbps,
            comp_ms, stall_ms, (unsigned long long)r->out_bytes, out_ms,
            (unsigned long long)r->skipped_bytes, r->evicted,
            (unsigned long long)r->in_from[0], (unsigned long long)r->in_from[1],
            (unsigned long long)r->in_from[2]);
    if (json_fd >= 0) {
        char extra[256];
        if (at(r, EV_IN0, s, &t0) && at(r, EV_IN1, s, &t1)) {
            snprintf(extra, sizeof(extra), ",\"bytes\":%llu,\"gbps\":%.2f,\"from\":{\"pinned\":%llu,"
                     "\"pageable\":%llu,\"file\":%llu}", (unsigned long long)r->in_bytes, gbps,
                     (unsigned long long)r->in_from[0], (unsigned long long)r->in_from[1],
                     (unsigned long long)r->in_from[2]);
            json_slice(2, "in block", r->block, s, t0, t1, "copy_in", extra);
        }
        for (int i = 0; i < r->nwait; i++)
            if (at_ev(r->wait[i][0], s, &t0) && at_ev(r->wait[i][1], s, &t1) && t1 - t0 > 0.0005)
                json_slice(1, "stall block", r->block, s, t0, t1, "stall", "");
        if (r->nwait && at_ev(r->wait[0][1], s, &t0) && at(r, EV_END, s, &t1)) {
            snprintf(extra, sizeof(extra), ",\"swapped\":%s,\"compute_ms\":%.3f,"
                     "\"stall_ms\":%.3f", r->swapped ? "true" : "false", comp_ms, stall_ms);
            json_slice(1, "block", r->block, s, t0, t1, "compute", extra);
        }
        if (at(r, EV_OUT0, s, &t0) && at(r, EV_OUT1, s, &t1)) {
            snprintf(extra, sizeof(extra), ",\"bytes\":%llu", (unsigned long long)r->out_bytes);
            json_slice(3, "out block", r->block, s, t0, t1, "copy_out", extra);
        }
        if (r->evicted && at(r, EV_EVICT, s, &t0))
            out(json_fd, ",\n{\"ph\":\"i\",\"s\":\"t\",\"pid\":%d,\"tid\":3,\"ts\":%.3f,"
                "\"name\":\"evict block %d\",\"cat\":\"evict\",\"args\":{\"block\":%d,"
                "\"step\":%d,\"skipped_bytes\":%llu}}", (int)getpid(), t0 * 1000.0,
                r->block, r->block, s, (unsigned long long)r->skipped_bytes);
    }
    ss->blocks++;
    ss->swapped += r->swapped;
    ss->in_bytes += r->in_bytes;
    ss->out_bytes += r->out_bytes;
    ss->skipped_bytes += r->skipped_bytes;
    ss->in_ms += in_ms;
    ss->compute_ms += comp_ms;
    ss->stall_ms += stall_ms;
    ss->out_ms += out_ms;
    if (r->nwait && at_ev(r->wait[0][0], s, &t0) && at(r, EV_END, s, &t1)) {
        if (!ss->any_time || t0 < ss->t0)
            ss->t0 = t0;
        if (!ss->any_time || t1 > ss->t1)
            ss->t1 = t1;
        ss->any_time = true;
    }
}

static int cmp_block(const void *a, const void *b)
{
    const struct rec *x = &recs[*(const int *)a], *y = &recs[*(const int *)b];
    return (x->block > y->block) - (x->block < y->block);
}

/* Writes step s if every event of it has completed (or wait: at exit). */
static bool emit_step(int s, bool wait)
{
    for (int i = 0; i < NRECS; i++) {
        struct rec *r = &recs[i];
        if (!r->live || r->step != s)
            continue;
        if (wait) {
            for (int e = 0; e < EV_COUNT; e++)
                if (has(r, e) && bs_drv.cuEventSynchronize(r->ev[e]) != CUDA_SUCCESS)
                    r->have &= ~(1u << e);
            for (int w = 0; w < r->nwait; w++)
                if (bs_drv.cuEventSynchronize(r->wait[w][0]) != CUDA_SUCCESS ||
                    bs_drv.cuEventSynchronize(r->wait[w][1]) != CUDA_SUCCESS)
                    r->nwait = w;
        } else if (!rec_ready(r)) {
            return false;
        }
    }
    /* The base of step s + 1 is placed on the clock relative to the base of s. */
    double d;
    if (s + 1 <= step && step_base[(s + 1) % NSTEPS] &&
        span(step_base[s % NSTEPS], step_base[(s + 1) % NSTEPS], &d))
        step_abs_ms[(s + 1) % NSTEPS] = step_abs_ms[s % NSTEPS] + d;
    /* Its records, in block order. */
    static int order[NRECS];
    int n = 0;
    for (int i = 0; i < NRECS; i++)
        if (recs[i].live && recs[i].step == s)
            order[n++] = i;
    qsort(order, (size_t)n, sizeof(order[0]), cmp_block);
    struct step_sum ss = { 0 };
    for (int i = 0; i < n; i++) {
        struct rec *r = &recs[order[i]];
        emit_rec(r, s, &ss);
        r->live = false;
        if (current[r->block] == idx1(r))
            current[r->block] = 0;
        if (pending_in[r->block] == idx1(r))
            pending_in[r->block] = 0;
    }
    double hidden = ss.in_ms > 0 ? 1.0 - (ss.stall_ms < ss.in_ms ? ss.stall_ms : ss.in_ms) / ss.in_ms : 1.0;
    double step_ms = ss.any_time ? ss.t1 - ss.t0 : 0;
    if (text_fd >= 0)
        out(text_fd, "Step %d: blocks=%d swapped=%d in_bytes=%llu transfer_ms=%.3f "
            "compute_ms=%.3f stall_ms=%.3f out_bytes=%llu to_cpu_ms=%.3f skipped_bytes=%llu "
            "overlap=%.1f%% step_ms=%.3f\n", s, ss.blocks, ss.swapped,
            (unsigned long long)ss.in_bytes, ss.in_ms, ss.compute_ms, ss.stall_ms,
            (unsigned long long)ss.out_bytes, ss.out_ms, (unsigned long long)ss.skipped_bytes,
            100.0 * hidden, step_ms);
    if (json_fd >= 0 && ss.any_time) {
        char extra[200];
        snprintf(extra, sizeof(extra), ",\"transfer_ms\":%.3f,\"compute_ms\":%.3f,"
                 "\"stall_ms\":%.3f,\"overlap\":%.4f", ss.in_ms, ss.compute_ms, ss.stall_ms,
                 hidden);
        out(json_fd, ",\n{\"ph\":\"X\",\"pid\":%d,\"tid\":0,\"ts\":%.3f,\"dur\":%.3f,"
            "\"name\":\"step %d\",\"cat\":\"step\",\"args\":{\"step\":%d,\"blocks\":%d,"
            "\"swapped\":%d%s}}", (int)getpid(), ss.t0 * 1000.0, step_ms * 1000.0, s, s,
            ss.blocks, ss.swapped, extra);
    }
    /* The first step loads (pages on demand): the totals leave it out, as
     * blockswap-report does, unless it is the only one. */
    struct bs_trace_totals *t = s == 0 ? &tot_first : &tot;
    t->steps++;
    t->in_ns += (uint64_t)(ss.in_ms * 1e6);
    t->out_ns += (uint64_t)(ss.out_ms * 1e6);
    t->compute_ns += (uint64_t)(ss.compute_ms * 1e6);
    t->stall_ns += (uint64_t)(ss.stall_ms * 1e6);
    t->in_bytes += ss.in_bytes;
    return true;
}

static void emit_due(bool wait, int upto)
{
    while (emitted <= upto && (emit_step(emitted, wait) || wait))
        emitted++;
}

/* A new pass over the blocks of stack st starts on stream s. */
static void new_step(int st, CUstream s)
{
    if (st != cur_stack && cur_stack >= 0) {
        /* Another model: finish this one's steps; the step count goes on. */
        emit_due(true, step);
        memset(pending_in, 0, sizeof(pending_in));
        memset(current, 0, sizeof(current));
        memset(learned, 0, sizeof(learned));
    }
    cur_stack = st;
    step++;
    /* The slot of step - NSTEPS is reused: that step must be written by now. */
    if (step - emitted >= NSTEPS - 1)
        emit_due(true, step - NSTEPS + 1);
    CUevent *base = &step_base[step % NSTEPS];
    CUresult r;
    if (!*base && (r = bs_drv.cuEventCreate(base, CU_EVENT_DEFAULT)) != CUDA_SUCCESS) {
        stop("cuEventCreate", r);
        return;
    }
    if ((r = bs_drv.cuEventRecord(*base, s)) != CUDA_SUCCESS) {
        stop("cuEventRecord", r);
        return;
    }
    if (step == 0)
        step_abs_ms[0] = 0;
    emit_due(false, step - EMIT_LAG);
}

static void wait_begin(struct rec *r, CUstream s)
{
    if (r->wait_open)
        return;
    if (r->nwait == MAX_WAITS) {
        waits_lost++;
        return;
    }
    r->wait_open = record_ev(&r->wait[r->nwait][0], s);
}

void bs_trace_launch_begin(struct managed *m, CUstream s, bool capturing, bool may_wait)
{
    end_due = false;
    if (!bs_trace_on() || capturing || m->sched.stack < 0 || m->sched.block < 0 || m->sched.block >= MAX_BLOCKS)
        return;
    int b = m->sched.block;
    cur_stream = s;
    if (m->sched.stack == cur_stack && b == cur_block) {
        struct rec *r = rec_get(current[b]);
        if (r && r->step == step) {
            end_due = true; /* the block goes on */
            r->launches++;
            if (may_wait)
                wait_begin(r, s);
        }
        return;
    }
    /* The block before ends. Had it fewer launches than learned, its end was not
     * recorded: the stream's position now is the closest there is. */
    struct rec *prev = cur_block >= 0 ? rec_get(current[cur_block]) : NULL;
    if (prev && prev->step == step && cur_stack == m->sched.stack) {
        if (!has(prev, EV_END))
            record(prev, EV_END, cur_stream);
        learned[cur_block] = prev->launches;
    }
    if (m->sched.stack != cur_stack || b < cur_block || step < 0)
        new_step(m->sched.stack, s);
    if (failed)
        return;
    cur_block = b;
    struct rec *r = rec_get(pending_in[b]);
    pending_in[b] = 0;
    if (!r && !(r = rec_new(b)))
        return;
    r->step = step;
    r->swapped = bs_sched_swapped_member(m);
    r->launches = 1;
    current[b] = idx1(r);
    end_due = true;
    wait_begin(r, s);
}

/* After the shim made the block resident and the stream waits for its copies. */
void bs_trace_launch_ready(void)
{
    struct rec *r = end_due && cur_block >= 0 ? rec_get(current[cur_block]) : NULL;
    if (!r || !r->wait_open || !bs_trace_on())
        return;
    r->wait_open = false;
    if (record_ev(&r->wait[r->nwait][1], cur_stream))
        r->nwait++;
}

void bs_trace_launch_cancel(void)
{
    struct rec *r = end_due && cur_block >= 0 ? rec_get(current[cur_block]) : NULL;
    if (r)
        r->wait_open = false;
    end_due = false;
}

void bs_trace_launch_end(void)
{
    if (!end_due)
        return;
    end_due = false;
    struct rec *r = cur_block >= 0 ? rec_get(current[cur_block]) : NULL;
    /* Only the launch learned to be the block's last, and any after it. */
    if (r && bs_trace_on() && r->launches >= learned[cur_block])
        record(r, EV_END, cur_stream);
}

static void trace_flush_locked(void)
{
    if (!on)
        return;
    if (!failed && step >= 0)
        emit_due(true, step);
    if (waits_lost && text_fd >= 0)
        out(text_fd, "# %llu waits not measured: more than %d in one block\n",
            (unsigned long long)waits_lost, MAX_WAITS);
    if (dropped && text_fd >= 0)
        out(text_fd, "# %llu block records dropped: more blocks in flight than the tracer "
            "holds (%d)\n", (unsigned long long)dropped, NRECS);
}

/* At exit, under the page lock (page/ calls it after its pager stopped). */
void bs_trace_close(void)
{
    trace_flush_locked();
    if (json_fd >= 0) {
        out(json_fd, "\n]}\n");
        close(json_fd);
        json_fd = -1;
    }
    if (text_fd >= 0) {
        close(text_fd);
        text_fd = -1;
    }
    on = false;
    set_live();
}

/* pre: page lock held. */
void bs_trace_totals(struct bs_trace_totals *t)
{
    *t = tot.steps ? tot : tot_first;
}

void bs_trace_reset(void)
{
    /* A forked child writes no trace: its parent's files and events are not its own. */
    on = failed = false;
    set_live();
    forked = true;
    text_fd = json_fd = -1;
    dropped = waits_lost = 0;
    rec_next = 0;
    end_due = false;
    batching = false;
    in_deferred = NULL;
    memset(recs, 0, sizeof(recs));
    memset(pending_in, 0, sizeof(pending_in));
    memset(current, 0, sizeof(current));
    memset(learned, 0, sizeof(learned));
    memset(step_base, 0, sizeof(step_base));
    cur_stack = cur_block = step = -1;
    emitted = 0;
    memset(&tot, 0, sizeof(tot));
    memset(&tot_first, 0, sizeof(tot_first));
}
