/* Private header of the simulated CUDA driver (libcuda.so.1): shared types and the
 * cudasim_* internals, grouped by the file that defines them. Nothing here is
 * exported; the exported cu* entry points live in driver.c only. */
#ifndef CUDASIM_SIM_H
#define CUDASIM_SIM_H

/* Declare the driver API the way the driver itself is built: every versioned name
 * (cuMemAlloc and cuMemAlloc_v2, cuLaunchKernel and cuLaunchKernel_ptsz, ...) is then
 * a literal, separately prototyped symbol and no cuda.h macro renames our
 * definitions. The sim is the only place in the project that does this. */
#define __CUDA_API_VERSION_INTERNAL 1
#include <cuda.h>
#include <cudaTypedefs.h>

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#define SIM_PRINTF(a, b) __attribute__((format(printf, a, b)))

/* Device code: the built-in kernels' loops over device memory. Under ThreadSanitizer
 * they are not instrumented access by access: ops.c announces each kernel's planned
 * ranges to TSan in bulk instead, which finds the same host-side races at a fraction
 * of the cost (the simulator's own race checker orders the device side). */
#if defined(__SANITIZE_THREAD__)
#define SIM_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define SIM_TSAN 1
#endif
#endif
#ifdef SIM_TSAN
#define SIM_DEVICE_CODE __attribute__((no_sanitize("thread")))
void __tsan_read_range(void *addr, unsigned long size);
void __tsan_write_range(void *addr, unsigned long size);
#else
#define SIM_DEVICE_CODE
#endif
#define SIM_MAX(a, b) ((a) > (b) ? (a) : (b))
#define SIM_MIN(a, b) ((a) < (b) ? (a) : (b))

/* Magic numbers in every handle we give out, so a stale or foreign handle is
 * answered with CUDA_ERROR_INVALID_HANDLE instead of being trusted. */
enum {
    SIM_MAGIC_CTX = 0x43545831,    /* CTX1 */
    SIM_MAGIC_STREAM = 0x5354524d, /* STRM */
    SIM_MAGIC_EVENT = 0x45564e54,  /* EVNT */
    SIM_MAGIC_MODULE = 0x4d4f4431, /* MOD1 */
    SIM_MAGIC_FUNC = 0x46554e43,   /* FUNC */
    SIM_MAGIC_GRAPH = 0x47525048,  /* GRPH */
    SIM_MAGIC_EXEC = 0x47455845,   /* GEXE */
    SIM_MAGIC_PHYS = 0x50485953,   /* PHYS */
    SIM_MAGIC_POOL = 0x504f4f4c,   /* POOL */
    SIM_MAGIC_DEAD = 0x44454144,   /* DEAD: written on destroy */
};

#define SIM_GRANULARITY ((size_t)2 << 20) /* VMM granularity, as on current GPUs */
#define SIM_ARGS_MAX 4096                 /* packed kernel parameters we keep (CUDA's classic limit) */

/* ---- config.c: CUDASIM_* environment, parsed once ---------------------------- */

/* Host cost classes (clock.c): what a call costs the calling thread in virtual ns. */
enum sim_cost {
    SIM_COST_LAUNCH,          /* cuLaunchKernel*, cuLaunchCooperativeKernel*, cuGraphLaunch* */
    SIM_COST_COPY,            /* cuMemcpy* (issue; a synchronous copy also waits) */
    SIM_COST_MEMSET,          /* cuMemset* */
    SIM_COST_EVENT,           /* cuEvent* */
    SIM_COST_STREAM,          /* cuStream*, cuLaunchHostFunc*, cuCtxSynchronize */
    SIM_COST_MEM_CREATE,      /* the VMM calls: a fixed part and a part per 2 MiB */
    SIM_COST_MEM_MAP,
    SIM_COST_MEM_SET_ACCESS,
    SIM_COST_MEM_UNMAP,
    SIM_COST_MEM_RELEASE,
    SIM_COST_ADDRESS_RESERVE,
    SIM_COST_ADDRESS_FREE,
    SIM_COST_COUNT,
    SIM_COST_NONE = -1,
};

struct sim_cost_cfg {
    uint64_t fixed;  /* ns per call */
    uint64_t per_2m; /* ns per 2 MiB granule of the call's size (VMM calls only) */
};

struct cudasim_config {
    uint64_t vram_bytes;
    double pcie_gbps; /* GB/s, GB = 1e9 bytes, i.e. bytes per ns */
    double hbm_gbps;
    double pageable_gbps; /* copies whose host side is not pinned: staged by the driver */
    uint64_t api_ns;
    struct sim_cost_cfg cost[SIM_COST_COUNT];
    bool host_cpu; /* CUDASIM_HOST_CPU: charge measured CPU time between calls */
    bool verbose;
    bool racecheck;
    bool race_time; /* CUDASIM_RACE=time: in-use releases judged by virtual time */
    char report_path[4096];
};

void cudasim_config_load(struct cudasim_config *cfg);
int cudasim_parse_size(const char *s, uint64_t *out);

/* ---- report.c: diagnostics, counters, exit report ------------------------------ */

void cudasim_error(const char *fmt, ...) SIM_PRINTF(1, 2);
void cudasim_warn(const char *fmt, ...) SIM_PRINTF(1, 2);
void cudasim_verbose(const char *fmt, ...) SIM_PRINTF(1, 2);
void cudasim_report_register(void);

/* ---- clock.c: per-thread virtual clocks, host costs ----------------------------- */

/* One per host thread that called the driver: its virtual time. */
struct sim_thread {
    uint64_t now;
    uint64_t cpu_mark; /* CLOCK_THREAD_CPUTIME_ID at the end of its last call */
    bool cpu_marked;
    unsigned gen;      /* generation of the state it belongs to */
    int call;          /* export id of the call in progress (for charges by size) */
    uint64_t index;    /* 0 for the first thread that called, 1 for the next, ... */
    struct sim_thread *next;
};

void cudasim_clock_setup(void);
/* pre (all below): lock held. The calling thread's record, made at its first call. */
struct sim_thread *cudasim_thread(void);
uint64_t cudasim_now(void);         /* the calling thread's virtual time */
void cudasim_join(uint64_t t);      /* it waited for something that ends at t */
uint64_t cudasim_host_max(void);    /* latest of all threads' clocks */
void cudasim_charge_call(int id);   /* an accepted call of export id: its flat cost */
void cudasim_charge_size(enum sim_cost c, uint64_t bytes); /* the per-2-MiB part */
void cudasim_call_end(void);
void cudasim_clock_reset_counts(void);
void cudasim_clock_report(FILE *f);

/* ---- vector clocks (race.c) ----------------------------------------------------- */

struct sim_vc {
    uint64_t *c;
    uint32_t n;
};

void cudasim_vc_join(struct sim_vc *dst, const struct sim_vc *src);
void cudasim_vc_copy(struct sim_vc *dst, const struct sim_vc *src);
void cudasim_vc_free(struct sim_vc *vc);
uint64_t cudasim_vc_get(const struct sim_vc *vc, uint32_t i);
void cudasim_vc_set(struct sim_vc *vc, uint32_t i, uint64_t v);

/* ---- core.c: global state, lock, init, contexts, devices ---------------------- */

/* An agent is anything whose operations are ordered among themselves: the host
 * (index 0) and each stream. It owns the stream's vector clock and timeline end so
 * both survive cuStreamDestroy until a synchronisation makes them irrelevant. */
/* One operation (or wait) of an agent, for its order in virtual time: issued when the
 * issuing thread's clock read `issue`, ends at `end`; pmax: the latest end of it and
 * everything before it in the agent's history. */
struct sim_mark {
    uint64_t issue, end, pmax;
};

struct sim_agent {
    char name[48];
    struct sim_vc vc;
    uint64_t last_end;   /* virtual ns at which its last operation ends */
    struct sim_mark *marks; /* ring of its latest operations, in issue (lock) order */
    uint32_t nmarks, capmarks, head;
    uint64_t floor;      /* latest end of the operations dropped from the ring */
    struct sim_ctx *ctx;
    bool live;           /* stream not destroyed */
    bool retired;        /* dead and joined into the host: skipped from now on */
    bool blocking;       /* orders with the legacy NULL stream */
};

enum sim_stream_kind { SIM_STREAM_LEGACY, SIM_STREAM_PER_THREAD, SIM_STREAM_USER };

struct sim_graph;

struct sim_stream {
    uint32_t magic;
    enum sim_stream_kind kind;
    struct sim_ctx *ctx;
    unsigned flags;
    int priority;
    uint32_t agent;
    struct sim_graph *capture; /* non-NULL while capturing */
    uint64_t capture_id;
    struct sim_stream *next;   /* ctx->streams */
};

struct sim_ctx {
    uint32_t magic;
    bool primary;
    bool active;          /* primary: retained at least once and not reset */
    int retain;
    unsigned flags;
    CUresult sticky;      /* CUDA_ERROR_ILLEGAL_ADDRESS after a fault */
    unsigned long long id;
    struct sim_stream *legacy;
    struct sim_stream *streams;
};

struct sim_engine {
    uint64_t free_at;
    uint64_t busy_ns;
};

enum sim_engine_id { SIM_ENG_COMPUTE, SIM_ENG_H2D, SIM_ENG_D2H, SIM_ENG_COUNT, SIM_ENG_NONE };

struct sim_range;
struct sim_resv;
struct sim_pool;

struct cudasim_state {
    pthread_mutex_t lock;
    bool initialized;
    unsigned generation;  /* bumped in a forked child: stale thread-locals are ignored */
    bool forked_child;
    pid_t pid;
    struct cudasim_config cfg;

    struct sim_ctx primary;
    unsigned long long next_ctx_id;
    struct sim_stream *dead_streams; /* destroyed: kept so stale handles read as dead */

    /* memory.c */
    struct sim_range **ranges; /* accessible ranges, sorted by start */
    size_t nranges, capranges;
    struct sim_resv *resv;     /* VMM reservations, sorted */
    size_t nresv, capresv;
    uint64_t device_bytes, peak_device_bytes;
    uint64_t pinned_bytes, peak_pinned_bytes;
    uint64_t vmm_bytes; /* of device_bytes, cuMemCreate's (memfd: shmem, not anonymous) */
    uint64_t next_buffer_id;
    struct sim_pool *default_pool, *current_pool;

    /* clock.c: host threads' clocks */
    struct sim_thread *threads;
    uint64_t nthreads;
    uint64_t host_retired_ns; /* latest clock of threads that have exited */

    /* timeline.c */
    struct sim_engine eng[SIM_ENG_COUNT];
    uint64_t prio_free_at, prio_busy_ns; /* kernels of streams of raised priority */
    struct sim_agent *agents;
    uint32_t nagents, capagents;
    uint64_t op_seq;

    /* statistics for the report */
    uint64_t h2d_bytes, d2h_bytes, d2d_bytes, h2h_bytes;
    uint64_t pageable_h2d_bytes, pageable_d2h_bytes; /* of those, staged from/to pageable */
    uint64_t kernels, copies, memsets, graph_launches;
    uint64_t errors, races, in_use_frees, history_dropped;
    bool illegal_address;
    bool has_first_error;
    char first_error[1024];
    unsigned printed_errors;
};

extern struct cudasim_state cudasim_g;
#define G cudasim_g

enum sim_need {
    SIM_NEED_NOTHING, /* works before cuInit */
    SIM_NEED_INIT,    /* needs cuInit */
    SIM_NEED_CTX,     /* needs a current context; returns its sticky error */
};

CUresult cudasim_enter(enum sim_need need);
void cudasim_leave(void);
struct sim_ctx *cudasim_current_ctx(void);
CUresult cudasim_check_ctx(CUcontext h, struct sim_ctx **out);

CUresult cudasim_init(unsigned flags);
CUresult cudasim_device_get(CUdevice *dev, int ordinal);
CUresult cudasim_device_count(int *count);
CUresult cudasim_device_name(char *name, int len, CUdevice dev);
CUresult cudasim_device_total_mem(size_t *bytes, CUdevice dev);
CUresult cudasim_device_attribute(int *pi, CUdevice_attribute attrib, CUdevice dev);
CUresult cudasim_device_uuid(CUuuid *uuid, CUdevice dev);
CUresult cudasim_device_pci_bus_id(char *pciBusId, int len, CUdevice dev);
CUresult cudasim_primary_retain(CUcontext *pctx, CUdevice dev);
CUresult cudasim_primary_release(CUdevice dev);
CUresult cudasim_primary_state(CUdevice dev, unsigned *flags, int *active);
CUresult cudasim_primary_reset(CUdevice dev);
CUresult cudasim_primary_set_flags(CUdevice dev, unsigned flags);
CUresult cudasim_ctx_create(CUcontext *pctx, unsigned flags, CUdevice dev);
CUresult cudasim_ctx_destroy(CUcontext ctx);
CUresult cudasim_ctx_set_current(CUcontext ctx);
CUresult cudasim_ctx_get_current(CUcontext *pctx);
CUresult cudasim_ctx_push(CUcontext ctx);
CUresult cudasim_ctx_pop(CUcontext *pctx);
CUresult cudasim_ctx_get_device(CUdevice *dev);
CUresult cudasim_ctx_get_flags(unsigned *flags);
CUresult cudasim_ctx_get_id(CUcontext ctx, unsigned long long *id);
CUresult cudasim_ctx_sticky_fault(struct sim_ctx *ctx);

/* ---- memory.c: address map, allocations, pinned host memory, pools, VMM ------- */

enum sim_range_kind {
    SIM_RANGE_DEVICE,     /* cuMemAlloc, cuMemAllocPitch */
    SIM_RANGE_ASYNC,      /* cuMemAllocAsync / FromPoolAsync */
    SIM_RANGE_VMM,        /* one cuMemMap mapping */
    SIM_RANGE_PINNED,     /* cuMemAllocHost / cuMemHostAlloc */
    SIM_RANGE_REGISTERED, /* cuMemHostRegister */
};

struct sim_acc;
struct sim_phys;

/* A memory pool: minimal, memory goes back to the system on free, so pool memory
 * counts against capacity exactly while allocated. */
struct sim_pool {
    uint32_t magic;
    uint64_t used, peak;
    uint64_t threshold;
    CUmemPoolProps props;
};

struct sim_range {
    uintptr_t start, end;
    enum sim_range_kind kind;
    size_t map_len;         /* bytes mmapped for it (0: not ours, e.g. registered) */
    size_t charged;         /* bytes charged to device capacity */
    CUmemAccess_flags prot; /* VMM: access set by cuMemSetAccess */
    struct sim_phys *phys;  /* VMM */
    size_t phys_offset;
    struct sim_pool *pool;  /* ASYNC */
    unsigned host_flags;
    uint64_t id;            /* CU_POINTER_ATTRIBUTE_BUFFER_ID */
    /* race.c: recent accesses */
    struct sim_acc *hist;
    uint32_t nhist, caphist;
};

struct sim_resv {
    uintptr_t start, end;
};

bool cudasim_is_device_kind(enum sim_range_kind k);
/* Reached through cuGetProcAddress("cudasimGetMemCounters") only (proc.c). */
CUresult cudasim_mem_counters(uint64_t *out, unsigned n);
struct sim_range *cudasim_range_find(uintptr_t addr);
bool cudasim_in_reservation(uintptr_t addr);
/* pre: lock held. Checks that [addr, addr+len) is device-accessible; on failure
 * prints the diagnostic naming `what`, marks the current context faulted and
 * returns CUDA_ERROR_ILLEGAL_ADDRESS. */
CUresult cudasim_mem_validate(const char *what, uintptr_t addr, size_t len, bool write);

CUresult cudasim_mem_alloc(CUdeviceptr *dptr, size_t size);
CUresult cudasim_mem_alloc_v1(CUdeviceptr_v1 *dptr, unsigned size);
CUresult cudasim_mem_alloc_pitch(CUdeviceptr *dptr, size_t *pitch, size_t width, size_t height,
                                 unsigned elem);
CUresult cudasim_mem_free(CUdeviceptr ptr, const char *api);
CUresult cudasim_mem_get_info(size_t *free_b, size_t *total_b);
CUresult cudasim_mem_get_address_range(CUdeviceptr *base, size_t *size, CUdeviceptr ptr);
CUresult cudasim_pointer_attribute(void *data, CUpointer_attribute attr, CUdeviceptr ptr);
CUresult cudasim_pointer_attributes(unsigned n, CUpointer_attribute *attrs, void **data,
                                    CUdeviceptr ptr);
CUresult cudasim_mem_alloc_host(void **pp, size_t size, unsigned flags);
CUresult cudasim_mem_free_host(void *p);
CUresult cudasim_mem_host_register(void *p, size_t size, unsigned flags);
CUresult cudasim_mem_host_unregister(void *p);
CUresult cudasim_mem_host_get_device_pointer(CUdeviceptr *pdptr, void *p, unsigned flags);
CUresult cudasim_mem_host_get_flags(unsigned *flags, void *p);

CUresult cudasim_pool_default(CUmemoryPool *pool, CUdevice dev);
CUresult cudasim_pool_set_current(CUdevice dev, CUmemoryPool pool);
CUresult cudasim_pool_create(CUmemoryPool *pool, const CUmemPoolProps *props);
CUresult cudasim_pool_destroy(CUmemoryPool pool);
CUresult cudasim_pool_set_attribute(CUmemoryPool pool, CUmemPool_attribute attr, void *value);
CUresult cudasim_pool_get_attribute(CUmemoryPool pool, CUmemPool_attribute attr, void *value);
CUresult cudasim_pool_trim(CUmemoryPool pool, size_t keep);
CUresult cudasim_mem_alloc_async(CUdeviceptr *dptr, size_t size, CUmemoryPool pool,
                                 CUstream hs, bool pt);
CUresult cudasim_mem_free_async(CUdeviceptr ptr, CUstream hs, bool pt);

CUresult cudasim_vmm_granularity(size_t *gran, const CUmemAllocationProp *prop,
                                 CUmemAllocationGranularity_flags option);
CUresult cudasim_vmm_reserve(CUdeviceptr *ptr, size_t size, size_t align, CUdeviceptr addr,
                             unsigned long long flags);
CUresult cudasim_vmm_address_free(CUdeviceptr ptr, size_t size);
CUresult cudasim_vmm_create(CUmemGenericAllocationHandle *handle, size_t size,
                            const CUmemAllocationProp *prop, unsigned long long flags);
CUresult cudasim_vmm_release(CUmemGenericAllocationHandle handle);
CUresult cudasim_vmm_map(CUdeviceptr ptr, size_t size, size_t offset,
                         CUmemGenericAllocationHandle handle, unsigned long long flags);
CUresult cudasim_vmm_unmap(CUdeviceptr ptr, size_t size);
CUresult cudasim_vmm_set_access(CUdeviceptr ptr, size_t size, const CUmemAccessDesc *desc,
                                size_t count);
CUresult cudasim_vmm_get_access(unsigned long long *flags, const CUmemLocation *loc,
                                CUdeviceptr ptr);
CUresult cudasim_vmm_retain_handle(CUmemGenericAllocationHandle *handle, void *addr);
CUresult cudasim_vmm_get_props(CUmemAllocationProp *prop, CUmemGenericAllocationHandle handle);

/* ---- race.c: access histories, races, frees of memory still in use ------------ */

/* One remembered access: which agent, at which of its clock ticks, which bytes. */
struct sim_acc {
    uintptr_t lo, hi;
    uint64_t clock;
    uint64_t end_ns;
    uint64_t seq;
    const char *kind; /* "kernel", "copy", "memset" */
    const char *name; /* kernel or API name (static storage) */
    uint32_t agent;
    bool write;
};

struct sim_op_info {
    const char *kind;
    const char *name;
    uint32_t agent;
    uint64_t clock;
    uint64_t end_ns;
    uint64_t seq;
};

void cudasim_race_access(const struct sim_op_info *op, uintptr_t lo, uintptr_t hi, bool write);
/* Host-side release of [lo, hi) (cuMemFree, cuMemUnmap, ...): reports work that may
 * still use it. */
void cudasim_race_host_release(const char *api, struct sim_range *r, uintptr_t lo, uintptr_t hi);
/* Stream-ordered release (cuMemFreeAsync) by an op of `agent` with clock vc. */
void cudasim_race_stream_release(const char *api, struct sim_range *r, uint32_t agent,
                                 const struct sim_vc *vc);
void cudasim_race_drop(struct sim_range *r, uintptr_t lo, uintptr_t hi);

/* ---- timeline.c: streams, events, engines, synchronisation -------------------- */

struct sim_event {
    uint32_t magic;
    struct sim_ctx *ctx;
    unsigned flags;
    bool recorded;
    uint64_t time;
    struct sim_vc vc;
};

uint32_t cudasim_agent_new(const char *name, struct sim_ctx *ctx, bool blocking);
struct sim_agent *cudasim_agent(uint32_t i);
CUresult cudasim_stream_resolve(CUstream h, bool pt, struct sim_stream **out);
struct sim_stream *cudasim_stream_make(struct sim_ctx *ctx, enum sim_stream_kind kind,
                                       unsigned flags, int prio);
void cudasim_stream_describe(const struct sim_stream *s, char *buf, size_t len);
/* Orders a new operation on s: host program order, legacy-stream rules, its engine.
 * Returns the op's start time; ticks s's clock. */
uint64_t cudasim_tl_order(struct sim_stream *s, enum sim_engine_id eng, uint64_t dur,
                          uint64_t *end);
void cudasim_host_wait_stream(struct sim_stream *s);
void cudasim_host_wait_all(void);

CUresult cudasim_stream_create(CUstream *ph, unsigned flags, int prio);
CUresult cudasim_stream_destroy(CUstream h);
CUresult cudasim_stream_synchronize(CUstream h, bool pt);
CUresult cudasim_stream_query(CUstream h, bool pt);
CUresult cudasim_stream_wait_event(CUstream h, CUevent e, unsigned flags, bool pt);
CUresult cudasim_stream_get_flags(CUstream h, unsigned *flags, bool pt);
CUresult cudasim_stream_get_priority(CUstream h, int *prio, bool pt);
CUresult cudasim_stream_get_ctx(CUstream h, CUcontext *pctx, bool pt);
CUresult cudasim_stream_get_id(CUstream h, unsigned long long *id, bool pt);
CUresult cudasim_ctx_synchronize(void);
CUresult cudasim_event_create(CUevent *ph, unsigned flags);
CUresult cudasim_event_record(CUevent h, CUstream hs, unsigned flags, bool pt);
CUresult cudasim_event_synchronize(CUevent h);
CUresult cudasim_event_query(CUevent h);
CUresult cudasim_event_elapsed(float *ms, CUevent a, CUevent b);
CUresult cudasim_event_destroy(CUevent h);
void cudasim_timeline_reset(void);

/* ---- ops.c: data operations (copies, memsets, kernels, host functions) -------- */

struct sim_kernel;

/* A copy in its most general form: depth slices of height rows of width bytes. */
struct sim_copy {
    uintptr_t src, dst;
    size_t spitch, dpitch;   /* bytes between rows */
    size_t sslice, dslice;   /* bytes between slices */
    size_t width, height, depth;
    bool src_dev, dst_dev;   /* resolved memory kinds */
};

struct sim_memset {
    uintptr_t dst;
    size_t pitch;
    size_t width, height; /* in elements */
    uint32_t value;
    unsigned elem;        /* 1, 2 or 4 bytes */
};

enum sim_op_kind { SIM_OP_KERNEL, SIM_OP_COPY, SIM_OP_MEMSET, SIM_OP_HOSTFN };

struct sim_op {
    enum sim_op_kind kind;
    const char *api;
    union {
        struct {
            const struct sim_kernel *k;
            _Alignas(128) unsigned char args[SIM_ARGS_MAX];
        } kern;
        struct sim_copy copy;
        struct sim_memset set;
        struct {
            CUhostFn fn;
            void *data;
        } host;
    } u;
};

/* Runs op on s now, or records it when s is capturing. host_wait: the call returns
 * only when the op is complete (synchronous copies). */
/* What the issuing thread waits for before the call returns: nothing; the op itself
 * (its end in virtual time, no ordering learnt: a staged pageable copy); or its stream,
 * as a synchronisation (time and ordering). */
enum sim_wait { SIM_WAIT_NONE, SIM_WAIT_OP, SIM_WAIT_STREAM };
CUresult cudasim_op_submit(struct sim_stream *s, const struct sim_op *op, enum sim_wait wait);
bool cudasim_ptr_is_device(uintptr_t p);

CUresult cudasim_copy_1d(const char *api, uintptr_t dst, uintptr_t src, size_t n, int dst_dev,
                         int src_dev, CUstream hs, bool pt, bool async);
CUresult cudasim_copy_2d(const char *api, const CUDA_MEMCPY2D *p, CUstream hs, bool pt,
                         bool async);
CUresult cudasim_copy_3d(const char *api, const CUDA_MEMCPY3D *p, CUstream hs, bool pt,
                         bool async);
CUresult cudasim_memset(const char *api, CUdeviceptr dst, size_t pitch, uint32_t value,
                        unsigned elem, size_t width, size_t height, CUstream hs, bool pt);
CUresult cudasim_launch_host_func(CUstream hs, CUhostFn fn, void *data, bool pt);

/* ---- graph.c: stream capture and graphs --------------------------------------- */

CUresult cudasim_capture_append(struct sim_stream *s, const struct sim_op *op);
CUresult cudasim_capture_begin(CUstream hs, CUstreamCaptureMode mode, bool pt);
CUresult cudasim_capture_end(CUstream hs, CUgraph *graph, bool pt);
CUresult cudasim_capture_status(CUstream hs, CUstreamCaptureStatus *st, bool pt);
CUresult cudasim_graph_instantiate(CUgraphExec *exec, CUgraph graph, unsigned long long flags);
CUresult cudasim_graph_launch(CUgraphExec exec, CUstream hs, bool pt);
CUresult cudasim_graph_exec_destroy(CUgraphExec exec);
CUresult cudasim_graph_destroy(CUgraph graph);

/* ---- kernels.c: built-in kernels, modules, launches ---------------------------- */

struct sim_accs; /* ops.c: list of ranges an op touches */

struct sim_kparam {
    uint16_t size, align;
};

struct sim_kernel {
    const char *name;
    unsigned nparams;
    struct sim_kparam params[5];
    /* Adds the ranges the kernel touches; may validate and read device memory it
     * dereferences (indirect pointers, tensor maps). Sets *min_ns for kernels with
     * a duration of their own. */
    CUresult (*plan)(const unsigned char *args, struct sim_accs *acc, uint64_t *min_ns);
    void (*run)(const unsigned char *args);
};

const struct sim_kernel *cudasim_kernel_find(const char *name, size_t len);
size_t cudasim_kernel_param_offset(const struct sim_kernel *k, unsigned i);
size_t cudasim_kernel_params_size(const struct sim_kernel *k);

CUresult cudasim_module_load_data(CUmodule *mod, const void *image);
CUresult cudasim_module_load_file(CUmodule *mod, const char *path);
CUresult cudasim_module_unload(CUmodule mod);
CUresult cudasim_module_get_function(CUfunction *f, CUmodule mod, const char *name);
CUresult cudasim_func_param_info(CUfunction f, size_t index, size_t *off, size_t *size);
CUresult cudasim_func_name(const char **name, CUfunction f);
CUresult cudasim_func_attribute(int *pi, CUfunction_attribute attr, CUfunction f);
CUresult cudasim_func_set_attribute(CUfunction f, CUfunction_attribute attr, int value);
CUresult cudasim_func_module(CUmodule *mod, CUfunction f);
CUresult cudasim_launch(const char *api, CUfunction f, unsigned gx, unsigned gy, unsigned gz,
                        unsigned bx, unsigned by, unsigned bz, unsigned smem, CUstream hs,
                        void **params, void **extra, bool pt);

/* ---- ops.c access lists, used by kernel planners ------------------------------- */

struct sim_acc_req {
    uintptr_t addr;
    size_t len;
    bool write;
};

struct sim_accs {
    struct sim_acc_req *v;
    size_t n, cap;
    uint64_t bytes; /* total touched, for the duration */
    const char *what_kind, *what_name;
    struct sim_acc_req inl[8];
};

int cudasim_accs_add(struct sim_accs *a, uintptr_t addr, size_t len, bool write);

/* ---- tensormap.c: opaque CUtensorMap descriptors -------------------------------- */

struct sim_tmap {
    uint8_t kind; /* 1 tiled, 2 im2col */
    uint8_t dtype;
    uint8_t rank;
    uint8_t elem_size;
    uint64_t addr;
    uint64_t dim[5];
    uint64_t stride[5]; /* bytes; stride[0] = element size */
};

CUresult cudasim_tmap_encode_tiled(CUtensorMap *map, CUtensorMapDataType dtype, cuuint32_t rank,
                                   void *addr, const cuuint64_t *dim, const cuuint64_t *strides,
                                   const cuuint32_t *box, const cuuint32_t *estrides,
                                   CUtensorMapInterleave il, CUtensorMapSwizzle sw,
                                   CUtensorMapL2promotion l2, CUtensorMapFloatOOBfill oob);
CUresult cudasim_tmap_encode_im2col(CUtensorMap *map, CUtensorMapDataType dtype,
                                    cuuint32_t rank, void *addr, const cuuint64_t *dim,
                                    const cuuint64_t *strides, const int *lower,
                                    const int *upper, cuuint32_t channels, cuuint32_t pixels,
                                    const cuuint32_t *estrides, CUtensorMapInterleave il,
                                    CUtensorMapSwizzle sw, CUtensorMapL2promotion l2,
                                    CUtensorMapFloatOOBfill oob);
CUresult cudasim_tmap_replace_address(CUtensorMap *map, void *addr);
bool cudasim_tmap_decode(const void *desc128, struct sim_tmap *out);

/* ---- proc.c: cuGetProcAddress and error strings -------------------------------- */

CUresult cudasim_get_proc_address(const char *symbol, void **pfn, int version,
                                  cuuint64_t flags, CUdriverProcAddressQueryResult *status);
CUresult cudasim_error_name(CUresult err, const char **s);
CUresult cudasim_error_string(CUresult err, const char **s);
const char *cudasim_error_name_or(CUresult err);

/* ---- fault.c: CUDASIM_FAIL, per-entry-point use counts ------------------------- */

/* Counts one use of the export named sym (*cached_id: its index, -1 until known) and
 * returns the injected error when CUDASIM_FAIL names this use, else CUDA_SUCCESS.
 * Lock-free: also called by the entry points that take no lock. */
CUresult cudasim_fault(int *cached_id, const char *sym);
/* The same for an entry point that holds the lock: also charges the call's host cost
 * to the calling thread (clock.c). */
CUresult cudasim_call(int *cached_id, const char *sym);
void cudasim_fault_reset_counts(void);
void cudasim_fault_report(FILE *f);

#endif
