/* Stream capture and graphs, the linear kind: ops issued to a capturing stream are
 * copied into a graph instead of running; an executable graph replays them in order
 * on the launch stream, each validated and timed as if issued then. */
#include "sim.h"

#include <stdlib.h>
#include <string.h>

struct sim_graph {
    uint32_t magic;
    struct sim_op *ops;
    size_t n, cap;
};

static uint64_t next_capture_id;

static struct sim_graph *graph_new(uint32_t magic)
{
    struct sim_graph *g = calloc(1, sizeof(*g));
    if (g)
        g->magic = magic;
    return g;
}

static void graph_free(struct sim_graph *g)
{
    g->magic = SIM_MAGIC_DEAD;
    free(g->ops);
    free(g);
}

/* Parameters are copied (kernel arguments live inside the op), so the caller's
 * buffers may change after the call, as CUDA allows. */
CUresult cudasim_capture_append(struct sim_stream *s, const struct sim_op *op)
{
    struct sim_graph *g = s->capture;
    if (g->n == g->cap) {
        size_t cap = g->cap ? g->cap * 2 : 8;
        struct sim_op *v = realloc(g->ops, cap * sizeof(*v));
        if (!v)
            return CUDA_ERROR_OUT_OF_MEMORY;
        g->ops = v;
        g->cap = cap;
    }
    g->ops[g->n++] = *op;
    return CUDA_SUCCESS;
}

CUresult cudasim_capture_begin(CUstream hs, CUstreamCaptureMode mode, bool pt)
{
    struct sim_stream *s;
    CUresult r = cudasim_stream_resolve(hs, pt, &s);
    if (r)
        return r;
    (void)mode;
    if (s->kind == SIM_STREAM_LEGACY)
        return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
    if (s->capture)
        return CUDA_ERROR_ILLEGAL_STATE;
    if (!(s->capture = graph_new(SIM_MAGIC_GRAPH)))
        return CUDA_ERROR_OUT_OF_MEMORY;
    s->capture_id = ++next_capture_id;
    return CUDA_SUCCESS;
}

CUresult cudasim_capture_end(CUstream hs, CUgraph *graph, bool pt)
{
    struct sim_stream *s;
    CUresult r = cudasim_stream_resolve(hs, pt, &s);
    if (r)
        return r;
    if (!graph)
        return CUDA_ERROR_INVALID_VALUE;
    if (!s->capture)
        return CUDA_ERROR_ILLEGAL_STATE;
    *graph = (CUgraph)s->capture;
    s->capture = NULL;
    return CUDA_SUCCESS;
}

CUresult cudasim_capture_status(CUstream hs, CUstreamCaptureStatus *st, bool pt)
{
    struct sim_stream *s;
    CUresult r = cudasim_stream_resolve(hs, pt, &s);
    if (r)
        return r;
    if (!st)
        return CUDA_ERROR_INVALID_VALUE;
    *st = s->capture ? CU_STREAM_CAPTURE_STATUS_ACTIVE : CU_STREAM_CAPTURE_STATUS_NONE;
    return CUDA_SUCCESS;
}

CUresult cudasim_graph_instantiate(CUgraphExec *exec, CUgraph hg, unsigned long long flags)
{
    struct sim_graph *g = (struct sim_graph *)hg;
    (void)flags;
    if (!exec || !g || g->magic != SIM_MAGIC_GRAPH)
        return CUDA_ERROR_INVALID_VALUE;
    struct sim_graph *x = graph_new(SIM_MAGIC_EXEC);
    if (!x)
        return CUDA_ERROR_OUT_OF_MEMORY;
    if (g->n) {
        x->ops = malloc(g->n * sizeof(*x->ops));
        if (!x->ops) {
            free(x);
            return CUDA_ERROR_OUT_OF_MEMORY;
        }
        memcpy(x->ops, g->ops, g->n * sizeof(*x->ops));
    }
    x->n = x->cap = g->n;
    *exec = (CUgraphExec)x;
    return CUDA_SUCCESS;
}

CUresult cudasim_graph_launch(CUgraphExec hx, CUstream hs, bool pt)
{
    struct sim_graph *x = (struct sim_graph *)hx;
    struct sim_stream *s;
    CUresult r;
    if (!x || x->magic != SIM_MAGIC_EXEC)
        return CUDA_ERROR_INVALID_VALUE;
    if ((r = cudasim_stream_resolve(hs, pt, &s)))
        return r;
    G.graph_launches++;
    for (size_t i = 0; i < x->n; i++)
        if ((r = cudasim_op_submit(s, &x->ops[i], SIM_WAIT_NONE)))
            return r;
    return CUDA_SUCCESS;
}

CUresult cudasim_graph_exec_destroy(CUgraphExec hx)
{
    struct sim_graph *x = (struct sim_graph *)hx;
    if (!x || x->magic != SIM_MAGIC_EXEC)
        return CUDA_ERROR_INVALID_VALUE;
    graph_free(x);
    return CUDA_SUCCESS;
}

CUresult cudasim_graph_destroy(CUgraph hg)
{
    struct sim_graph *g = (struct sim_graph *)hg;
    if (!g || g->magic != SIM_MAGIC_GRAPH)
        return CUDA_ERROR_INVALID_VALUE;
    graph_free(g);
    return CUDA_SUCCESS;
}
