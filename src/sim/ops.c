/* Data operations, from API call to effect: copies, memsets, kernels and host
 * functions become one sim_op; running one means planning the byte ranges it
 * touches, validating all of them first, placing it on the timeline, checking and
 * recording the accesses, then applying the data effect (eagerly, at issue). */
#include "sim.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- access lists -------------------------------------------------------------- */

static void accs_init(struct sim_accs *a)
{
    memset(a, 0, sizeof(*a));
    a->v = a->inl;
    a->cap = sizeof(a->inl) / sizeof(a->inl[0]);
}

static void accs_fini(struct sim_accs *a)
{
    if (a->v != a->inl)
        free(a->v);
}

int cudasim_accs_add(struct sim_accs *a, uintptr_t addr, size_t len, bool write)
{
    if (len == 0)
        return 0;
    a->bytes += len;
    if (a->n) {
        struct sim_acc_req *last = &a->v[a->n - 1];
        if (last->write == write && last->addr + last->len == addr) {
            last->len += len; /* contiguous rows merge into one range */
            return 0;
        }
    }
    if (a->n == a->cap) {
        size_t cap = a->cap * 2;
        struct sim_acc_req *v = malloc(cap * sizeof(*v));
        if (!v)
            return -1;
        memcpy(v, a->v, a->n * sizeof(*v));
        if (a->v != a->inl)
            free(a->v);
        a->v = v;
        a->cap = cap;
    }
    a->v[a->n++] = (struct sim_acc_req){addr, len, write};
    return 0;
}

/* ---- memory kinds -------------------------------------------------------------- */

bool cudasim_ptr_is_device(uintptr_t p)
{
    struct sim_range *r = cudasim_range_find(p);
    if (r)
        return cudasim_is_device_kind(r->kind);
    return cudasim_in_reservation(p);
}

/* Pageable host memory is the application's business: not validated, not tracked.
 * Everything the simulator knows about (device, pinned, reserved) is. */
static bool tracked(uintptr_t p, bool dev)
{
    return dev || cudasim_range_find(p) || cudasim_in_reservation(p);
}

static bool is_pinned(uintptr_t p)
{
    struct sim_range *r = cudasim_range_find(p);
    return r && !cudasim_is_device_kind(r->kind);
}

/* ---- planning ------------------------------------------------------------------ */

static int plan_rows(struct sim_accs *a, uintptr_t base, size_t pitch, size_t slice, size_t width, size_t height,
                     size_t depth, bool write)
{
    for (size_t z = 0; z < depth; z++)
        for (size_t y = 0; y < height; y++)
            if (cudasim_accs_add(a, base + z * slice + y * pitch, width, write))
                return -1;
    return 0;
}

static int plan_copy(const struct sim_copy *c, struct sim_accs *a)
{
    if (tracked(c->src, c->src_dev) &&
        plan_rows(a, c->src, c->spitch, c->sslice, c->width, c->height, c->depth, false))
        return -1;
    if (tracked(c->dst, c->dst_dev) &&
        plan_rows(a, c->dst, c->dpitch, c->dslice, c->width, c->height, c->depth, true))
        return -1;
    return 0;
}

/* A host-to-device or device-to-host copy whose host side is pageable (neither
 * pinned nor registered): the driver stages it through its own pinned buffer, at
 * CUDASIM_PAGEABLE_GBPS (never faster than a pinned copy). Decided when the copy runs,
 * so a graph replayed after cuMemHostRegister copies at the pinned speed. */
static bool copy_pageable(const struct sim_copy *c)
{
    if (c->src_dev == c->dst_dev)
        return false;
    return !is_pinned(c->dst_dev ? c->src : c->dst);
}

static enum sim_engine_id copy_engine(const struct sim_copy *c)
{
    if (c->src_dev && c->dst_dev)
        return SIM_ENG_COMPUTE;
    if (c->dst_dev)
        return SIM_ENG_H2D;
    if (c->src_dev)
        return SIM_ENG_D2H;
    return SIM_ENG_NONE;
}

static uint64_t ns_for(uint64_t bytes, double gbps)
{
    /* GB/s with GB = 1e9 bytes is bytes per nanosecond. */
    return (uint64_t)ceil((double)bytes / gbps);
}

/* ---- effects ------------------------------------------------------------------- */

static void do_copy(const struct sim_copy *c)
{
    for (size_t z = 0; z < c->depth; z++)
        for (size_t y = 0; y < c->height; y++)
            memmove((void *)(c->dst + z * c->dslice + y * c->dpitch),
                    (const void *)(c->src + z * c->sslice + y * c->spitch), c->width);
}

static void do_memset(const struct sim_memset *m)
{
    for (size_t y = 0; y < m->height; y++) {
        uintptr_t row = m->dst + y * m->pitch;
        switch (m->elem) {
        case 1: memset((void *)row, (int)(m->value & 0xff), m->width); break;
        case 2:
            for (size_t i = 0; i < m->width; i++)
                ((uint16_t *)row)[i] = (uint16_t)m->value;
            break;
        default:
            for (size_t i = 0; i < m->width; i++)
                ((uint32_t *)row)[i] = m->value;
            break;
        }
    }
}

/* ---- running an op ------------------------------------------------------------- */

static CUresult op_run(struct sim_stream *s, const struct sim_op *op, enum sim_wait wait)
{
    struct sim_accs acc;
    enum sim_engine_id eng = SIM_ENG_NONE;
    uint64_t dur = 0, min_ns = 0;
    const char *kind = "host function", *name = op->api;
    char what[128];
    CUresult r = CUDA_SUCCESS;

    accs_init(&acc);
    switch (op->kind) {
    case SIM_OP_KERNEL:
        kind = "kernel";
        name = op->u.kern.k->name;
        acc.what_kind = kind;
        acc.what_name = name;
        r = op->u.kern.k->plan(op->u.kern.args, &acc, &min_ns);
        eng = SIM_ENG_COMPUTE;
        break;
    case SIM_OP_COPY:
        kind = "copy";
        if (plan_copy(&op->u.copy, &acc))
            r = CUDA_ERROR_OUT_OF_MEMORY;
        eng = copy_engine(&op->u.copy);
        break;
    case SIM_OP_MEMSET: {
        const struct sim_memset *m = &op->u.set;
        kind = "memset";
        if (plan_rows(&acc, m->dst, m->pitch, 0, m->width * m->elem, m->height, 1, true))
            r = CUDA_ERROR_OUT_OF_MEMORY;
        eng = SIM_ENG_COMPUTE;
        break;
    }
    case SIM_OP_HOSTFN:
        break;
    }
    if (r)
        goto out;

    /* Everything is checked before anything is touched: a bad address faults the
     * context, never the host process. */
    snprintf(what, sizeof(what), "%s %s", kind, name);
    for (size_t i = 0; i < acc.n; i++)
        if ((r = cudasim_mem_validate(what, acc.v[i].addr, acc.v[i].len, acc.v[i].write)))
            goto out;

    uint64_t bytes = 0;
    bool pageable = false;
    switch (op->kind) {
    case SIM_OP_KERNEL:
        dur = SIM_MAX(ns_for(acc.bytes, G.cfg.hbm_gbps), min_ns);
        break;
    case SIM_OP_COPY: {
        const struct sim_copy *c = &op->u.copy;
        bytes = (uint64_t)c->width * c->height * c->depth;
        pageable = copy_pageable(c);
        /* A device-to-device copy reads and writes HBM. */
        dur = eng == SIM_ENG_COMPUTE ? ns_for(2 * bytes, G.cfg.hbm_gbps)
              : eng == SIM_ENG_NONE  ? 0
              : pageable             ? ns_for(bytes, SIM_MIN(G.cfg.pageable_gbps, G.cfg.pcie_gbps))
                                     : ns_for(bytes, G.cfg.pcie_gbps);
        break;
    }
    case SIM_OP_MEMSET:
        dur = ns_for(acc.bytes, G.cfg.hbm_gbps);
        break;
    case SIM_OP_HOSTFN:
        break;
    }

    uint64_t end, start = cudasim_tl_order(s, eng, dur, &end);
    struct sim_op_info info = {
        .kind = kind, .name = name, .agent = s->agent,
        .clock = cudasim_vc_get(&cudasim_agent(s->agent)->vc, s->agent),
        .end_ns = end, .seq = ++G.op_seq,
    };
    for (size_t i = 0; i < acc.n; i++)
        cudasim_race_access(&info, acc.v[i].addr, acc.v[i].addr + acc.v[i].len, acc.v[i].write);

    switch (op->kind) {
    case SIM_OP_KERNEL:
#ifdef SIM_TSAN
        for (size_t i = 0; i < acc.n; i++) {
            if (acc.v[i].write)
                __tsan_write_range((void *)acc.v[i].addr, acc.v[i].len);
            else
                __tsan_read_range((void *)acc.v[i].addr, acc.v[i].len);
        }
#endif
        op->u.kern.k->run(op->u.kern.args);
        G.kernels++;
        break;
    case SIM_OP_COPY:
        do_copy(&op->u.copy);
        G.copies++;
        if (eng == SIM_ENG_H2D) {
            G.h2d_bytes += bytes;
            G.pageable_h2d_bytes += pageable ? bytes : 0;
        } else if (eng == SIM_ENG_D2H) {
            G.d2h_bytes += bytes;
            G.pageable_d2h_bytes += pageable ? bytes : 0;
        } else if (eng == SIM_ENG_COMPUTE) {
            G.d2d_bytes += bytes;
        } else {
            G.h2h_bytes += bytes;
        }
        break;
    case SIM_OP_MEMSET:
        do_memset(&op->u.set);
        G.memsets++;
        break;
    case SIM_OP_HOSTFN:
        /* Run now, in stream order as far as data is concerned: everything before it
         * on the stream has already taken effect. */
        op->u.host.fn(op->u.host.data);
        break;
    }
    if (G.cfg.verbose) {
        char sn[48];
        cudasim_stream_describe(s, sn, sizeof(sn));
        cudasim_verbose("op #%llu %s %s on %s: %llu..%llu ns (%llu bytes%s)", (unsigned long long)info.seq, kind,
                        name, sn, (unsigned long long)start, (unsigned long long)end,
                        (unsigned long long)(bytes ? bytes : acc.bytes), pageable ? ", pageable" : "");
    }
    if (wait == SIM_WAIT_STREAM)
        cudasim_host_wait_stream(s);
    else if (wait == SIM_WAIT_OP)
        cudasim_join(end);
out:
    accs_fini(&acc);
    return r;
}

CUresult cudasim_op_submit(struct sim_stream *s, const struct sim_op *op, enum sim_wait wait)
{
    if (s->capture) {
        /* A synchronous call cannot be part of a graph. A staged pageable copy is
         * captured as a plain copy: replays do not hold the host (see Limits). */
        if (wait == SIM_WAIT_STREAM)
            return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
        return cudasim_capture_append(s, op);
    }
    return op_run(s, op, wait);
}

/* ---- copies -------------------------------------------------------------------- */

/* Synchronous copies run on the legacy (or per-thread) stream and, except
 * device-to-device, return when done. Async device-to-pageable copies must finish
 * before the call returns too: there is no other safe moment to write pageable
 * memory. An async copy from pageable memory to the device returns once the driver
 * has staged the last of the source, which for any copy larger than its staging
 * buffer is about when the copy ends; CUDA promises nothing about the device side
 * then, so the thread waits for the time, not for the stream's order. */
static enum sim_wait copy_waits(const struct sim_copy *c, bool async)
{
    if (!async)
        return c->src_dev && c->dst_dev ? SIM_WAIT_NONE : SIM_WAIT_STREAM;
    if (c->src_dev && !c->dst_dev && !is_pinned(c->dst))
        return SIM_WAIT_STREAM;
    if (!c->src_dev && c->dst_dev && !is_pinned(c->src))
        return SIM_WAIT_OP;
    return SIM_WAIT_NONE;
}

static CUresult submit_copy(const char *api, struct sim_op *op, CUstream hs, bool pt, bool async)
{
    struct sim_stream *s;
    CUresult r = cudasim_stream_resolve(async ? hs : NULL, pt, &s);
    if (r)
        return r;
    op->kind = SIM_OP_COPY;
    op->api = api;
    return cudasim_op_submit(s, op, copy_waits(&op->u.copy, async));
}

CUresult cudasim_copy_1d(const char *api, uintptr_t dst, uintptr_t src, size_t n, int dst_dev, int src_dev,
                         CUstream hs, bool pt, bool async)
{
    struct sim_op op;
    if (n == 0)
        return CUDA_SUCCESS;
    if (!dst || !src)
        return CUDA_ERROR_INVALID_VALUE;
    op.u.copy = (struct sim_copy){
        .src = src, .dst = dst, .spitch = n, .dpitch = n, .width = n, .height = 1, .depth = 1,
        .src_dev = src_dev < 0 ? cudasim_ptr_is_device(src) : src_dev,
        .dst_dev = dst_dev < 0 ? cudasim_ptr_is_device(dst) : dst_dev,
    };
    return submit_copy(api, &op, hs, pt, async);
}

static CUresult side(CUmemorytype t, const void *host, CUdeviceptr dev, uintptr_t *p, bool *is_dev)
{
    switch (t) {
    case CU_MEMORYTYPE_HOST: *p = (uintptr_t)host; *is_dev = false; return CUDA_SUCCESS;
    case CU_MEMORYTYPE_DEVICE: *p = dev; *is_dev = true; return CUDA_SUCCESS;
    case CU_MEMORYTYPE_UNIFIED: *p = dev; *is_dev = cudasim_ptr_is_device(dev); return CUDA_SUCCESS;
    case CU_MEMORYTYPE_ARRAY: return CUDA_ERROR_NOT_SUPPORTED; /* CUDA arrays are not simulated */
    default: return CUDA_ERROR_INVALID_VALUE;
    }
}

CUresult cudasim_copy_2d(const char *api, const CUDA_MEMCPY2D *p, CUstream hs, bool pt, bool async)
{
    struct sim_op op;
    uintptr_t s, d;
    bool sd, dd;
    CUresult r;
    if (!p)
        return CUDA_ERROR_INVALID_VALUE;
    if ((r = side(p->srcMemoryType, p->srcHost, p->srcDevice, &s, &sd)) ||
        (r = side(p->dstMemoryType, p->dstHost, p->dstDevice, &d, &dd)))
        return r;
    if (p->WidthInBytes == 0 || p->Height == 0)
        return CUDA_SUCCESS;
    if (!s || !d)
        return CUDA_ERROR_INVALID_VALUE;
    if (p->Height > 1 && (p->srcPitch < p->WidthInBytes || p->dstPitch < p->WidthInBytes))
        return CUDA_ERROR_INVALID_VALUE;
    op.u.copy = (struct sim_copy){
        .src = s + p->srcY * p->srcPitch + p->srcXInBytes, .dst = d + p->dstY * p->dstPitch + p->dstXInBytes,
        .spitch = p->srcPitch, .dpitch = p->dstPitch, .width = p->WidthInBytes, .height = p->Height,
        .depth = 1, .src_dev = sd, .dst_dev = dd,
    };
    return submit_copy(api, &op, hs, pt, async);
}

CUresult cudasim_copy_3d(const char *api, const CUDA_MEMCPY3D *p, CUstream hs, bool pt, bool async)
{
    struct sim_op op;
    uintptr_t s, d;
    bool sd, dd;
    CUresult r;
    if (!p || p->srcLOD || p->dstLOD)
        return CUDA_ERROR_INVALID_VALUE;
    if ((r = side(p->srcMemoryType, p->srcHost, p->srcDevice, &s, &sd)) ||
        (r = side(p->dstMemoryType, p->dstHost, p->dstDevice, &d, &dd)))
        return r;
    if (p->WidthInBytes == 0 || p->Height == 0 || p->Depth == 0)
        return CUDA_SUCCESS;
    if (!s || !d)
        return CUDA_ERROR_INVALID_VALUE;
    if ((p->Height > 1 || p->Depth > 1) && (p->srcPitch < p->WidthInBytes || p->dstPitch < p->WidthInBytes))
        return CUDA_ERROR_INVALID_VALUE;
    if (p->Depth > 1 && (p->srcHeight < p->Height || p->dstHeight < p->Height))
        return CUDA_ERROR_INVALID_VALUE;
    size_t sslice = p->srcHeight * p->srcPitch, dslice = p->dstHeight * p->dstPitch;
    op.u.copy = (struct sim_copy){
        .src = s + p->srcZ * sslice + p->srcY * p->srcPitch + p->srcXInBytes,
        .dst = d + p->dstZ * dslice + p->dstY * p->dstPitch + p->dstXInBytes,
        .spitch = p->srcPitch, .dpitch = p->dstPitch, .sslice = sslice, .dslice = dslice,
        .width = p->WidthInBytes, .height = p->Height, .depth = p->Depth, .src_dev = sd, .dst_dev = dd,
    };
    return submit_copy(api, &op, hs, pt, async);
}

/* ---- memsets ------------------------------------------------------------------- */

/* Memsets are asynchronous to the host even in their "synchronous" form (CUDA's
 * documented behaviour for device memory); they run on the compute engine. */
CUresult cudasim_memset(const char *api, CUdeviceptr dst, size_t pitch, uint32_t value, unsigned elem, size_t width,
                        size_t height, CUstream hs, bool pt)
{
    struct sim_stream *s;
    struct sim_op op;
    CUresult r;
    if (dst % elem)
        return CUDA_ERROR_INVALID_VALUE;
    if (height <= 1)
        pitch = width * elem;
    else if (pitch < width * elem)
        return CUDA_ERROR_INVALID_VALUE;
    if ((r = cudasim_stream_resolve(hs, pt, &s)))
        return r;
    if (width == 0 || height == 0)
        return CUDA_SUCCESS;
    op.kind = SIM_OP_MEMSET;
    op.api = api;
    op.u.set = (struct sim_memset){.dst = dst, .pitch = pitch, .width = width, .height = height,
                                   .value = value, .elem = elem};
    return cudasim_op_submit(s, &op, SIM_WAIT_NONE);
}

CUresult cudasim_launch_host_func(CUstream hs, CUhostFn fn, void *data, bool pt)
{
    struct sim_stream *s;
    struct sim_op op;
    CUresult r;
    if (!fn)
        return CUDA_ERROR_INVALID_VALUE;
    if ((r = cudasim_stream_resolve(hs, pt, &s)))
        return r;
    op.kind = SIM_OP_HOSTFN;
    op.api = "cuLaunchHostFunc";
    op.u.host.fn = fn;
    op.u.host.data = data;
    return cudasim_op_submit(s, &op, SIM_WAIT_NONE);
}
