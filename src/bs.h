/* Internal declarations of libblockswap, grouped by the file that owns them.
 * Cross-file internals carry the bs_ prefix and hidden visibility; the only
 * exported names are the hooks (hooks.def), dlsym/dlvsym and include/blockswap.h. */
#ifndef BS_H
#define BS_H

#include <cuda.h>
#include <cudaTypedefs.h>
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* cuda.h renames cuGetProcAddress to cuGetProcAddress_v2; the shim also hooks the
 * older export of that exact name, so here every name means its exported symbol. */
#undef cuGetProcAddress
/* ...and cuEventElapsedTime to _v2 (12.8+); the shim uses the original, which every
 * driver has. */
#undef cuEventElapsedTime

#define BS_EXPORT __attribute__((visibility("default")))
#define BS_LIKELY(x) __builtin_expect(!!(x), 1)
#define BS_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define BS_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
/* Thread-locals of a preloaded library: initial-exec avoids __tls_get_addr (which
 * may allocate) on hot paths. */
#define BS_TLS __thread __attribute__((tls_model("initial-exec")))

/* ---- log.c: one line per event, "blockswap: " prefix, no allocation ---- */
enum bs_log_level { BS_LOG_ERROR, BS_LOG_WARN, BS_LOG_INFO, BS_LOG_DEBUG };

void bs_log(enum bs_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Logs at most `limit` times per call site; the last allowed line says so. */
#define bs_log_limited(limit, level, ...)                                      \
    do {                                                                       \
        static unsigned bs_lim_count_;                                         \
        unsigned bs_lim_n_ = __atomic_fetch_add(&bs_lim_count_, 1,             \
                                                __ATOMIC_RELAXED);             \
        if (bs_lim_n_ < (limit))                                               \
            bs_log_rl_(bs_lim_n_ + 1 == (limit), level, __VA_ARGS__);          \
    } while (0)
void bs_log_rl_(bool last, enum bs_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
bool bs_log_enabled(enum bs_log_level level);
/* Appends formatted text to a caller's buffer; len counts what did not fit too, so
 * len >= cap after the fact means the text was cut. Never allocates. */
struct bs_buf {
    char *p;
    size_t cap, len;
};
void bs_buf_add(struct bs_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void bs_log_set_level(enum bs_log_level level);
/* The one size formatter of log lines: "12.3 MiB", or "12.3 GiB" from 10 GiB up. */
#define BS_SIZE_STR_LEN 32
const char *bs_size_str(uint64_t bytes, char *buf, size_t len);
static inline uint64_t bs_round_up(uint64_t v, uint64_t a)
{
    return (v + a - 1) / a * a;
}
/* pre: path is NUL-terminated. Returns 0 or -errno; on failure logging stays on stderr. */
int bs_log_open(const char *path);
void bs_log_reset_after_fork(void);

/* ---- config.c: the BLOCKSWAP_* table, strict parsing ---- */
#define BS_SIZE_AUTO UINT64_MAX

/* How swapped blocks move (BLOCKSWAP_POLICY). */
enum bs_policy {
    BS_POLICY_STREAM, /* prefetch ahead, evict behind, no needless copies */
    BS_POLICY_SYNC,   /* for comparison: what the Python block-swap nodes do */
};

/* Which blocks BLOCKSWAP_BLOCKS_TO_SWAP swaps (BLOCKSWAP_SWAP_PLACEMENT). */
enum bs_placement {
    BS_PLACEMENT_SPREAD, /* evenly through the stack: copies spread over the step */
    BS_PLACEMENT_LAST,   /* the last k in execution order */
};

/* What cuMemGetInfo reports under blockswap. */
enum bs_meminfo {
    BS_MEMINFO_PAGED, /* the limit plus what host backing can still take */
    BS_MEMINFO_LIMIT, /* the limit, minus what is resident and unmanaged */
    BS_MEMINFO_REAL,  /* the driver's figures, unchanged */
};

#define BS_MAX_STACK_COUNTS 16 /* values in a BLOCKSWAP_BLOCKS_TO_SWAP list */

struct bs_config {
    bool disable;                 /* BLOCKSWAP_DISABLE */
    uint64_t min_bytes;           /* BLOCKSWAP_MIN_BYTES: smallest managed allocation */
    uint64_t vram_limit;          /* BLOCKSWAP_VRAM_LIMIT, or BS_SIZE_AUTO */
    uint64_t reserve;             /* BLOCKSWAP_RESERVE */
    uint64_t host_limit;          /* BLOCKSWAP_HOST_LIMIT, or BS_SIZE_AUTO */
    uint64_t pinned_limit;        /* BLOCKSWAP_PINNED_LIMIT, or BS_SIZE_AUTO */
    uint64_t staging_size;        /* BLOCKSWAP_STAGING_SIZE: the pinned staging ring */
    bool file_backing;            /* BLOCKSWAP_FILE_BACKING */
    int meminfo;                  /* BLOCKSWAP_MEMINFO: enum bs_meminfo */
    uint64_t blocks_to_swap;      /* BLOCKSWAP_BLOCKS_TO_SWAP, or BS_SIZE_AUTO: the first value */
    /* BLOCKSWAP_BLOCKS_TO_SWAP as a list, one value per block stack in the order found;
     * a stack past its end takes the last. n <= 1: blocks_to_swap for every stack. */
    uint64_t blocks_to_swap_list[BS_MAX_STACK_COUNTS];
    int blocks_to_swap_n;
    uint64_t prefetch;            /* BLOCKSWAP_PREFETCH */
    int policy;                   /* BLOCKSWAP_POLICY: enum bs_policy */
    int placement;                /* BLOCKSWAP_SWAP_PLACEMENT: enum bs_placement */
    bool pager_thread;            /* BLOCKSWAP_PAGER_THREAD */
    int log_level;                /* BLOCKSWAP_LOG_LEVEL: enum bs_log_level */
    char log_file[256];           /* BLOCKSWAP_LOG_FILE, "" = stderr */
    char trace[520];              /* BLOCKSWAP_TRACE: "" off, or one or two paths */
    uint64_t scan_limit;          /* BLOCKSWAP_SCAN_LIMIT: parameter bytes scanned per launch */
    bool control;                 /* BLOCKSWAP_CONTROL: serve blockswapctl's socket */
};

/* Parses environ into *cfg. Returns the number of bad values (each already
 * logged as one line); on error *cfg still holds usable defaults. */
int bs_config_load(struct bs_config *cfg);
/* Parses one value of the named variable into cfg; for tests and the fuzzer.
 * Returns 0, -EINVAL (bad value, *err set) or -ENOENT (unknown variable). */
int bs_config_set(struct bs_config *cfg, const char *name, const char *value,
                  char *err, size_t errlen);
void bs_config_defaults(struct bs_config *cfg);
/* BLOCKSWAP_BLOCKS_TO_SWAP for the stack found `index`-th (0: the first): its item of the
 * list, the last item past the list's end, or the one value. */
static inline uint64_t bs_config_blocks_to_swap(const struct bs_config *cfg, int index)
{
    int n = cfg->blocks_to_swap_n;
    if (n <= 1)
        return cfg->blocks_to_swap;
    return cfg->blocks_to_swap_list[index < n ? index : n - 1];
}
/* Strict size parser: digits, optional K/M/G/T (powers of 1024), optional B/iB.
 * Returns 0 or -EINVAL / -ERANGE. */
int bs_parse_size(const char *s, uint64_t *out);
/* Writes the reference of every variable (name, type, default, range, help). */
void bs_config_print_help(int fd);

/* ---- interpose/table.c: real driver functions, hook ids, lazy init ---- */
#define BS_HOOK(name, pfn) BS_ID_##name,
enum bs_hook_id {
#include "interpose/hooks.def"
    BS_HOOK_COUNT
};
#undef BS_HOOK

/* The real driver functions behind each hook, set once resolved. */
struct bs_real_table {
#define BS_HOOK(name, pfn) pfn name;
#include "interpose/hooks.def"
#undef BS_HOOK
};
extern struct bs_real_table bs_real;

/* Driver functions the shim calls for itself and never hooks. */
#define BS_DRIVER_FUNCTIONS(X)                                                 \
    X(cuFuncGetParamInfo, PFN_cuFuncGetParamInfo_v12040)                       \
    X(cuKernelGetParamInfo, PFN_cuKernelGetParamInfo_v12040)                   \
    X(cuGetErrorName, PFN_cuGetErrorName_v6000)                                \
    X(cuDriverGetVersion, PFN_cuDriverGetVersion_v2020)                        \
    X(cuCtxGetCurrent, PFN_cuCtxGetCurrent_v4000)                              \
    X(cuCtxGetDevice, PFN_cuCtxGetDevice_v2000)                                \
    X(cuDeviceGetName, PFN_cuDeviceGetName_v2000)                              \
    X(cuCtxSetCurrent, PFN_cuCtxSetCurrent_v4000)                              \
    X(cuCtxSynchronize, PFN_cuCtxSynchronize_v2000)                            \
    X(cuMemGetAllocationGranularity, PFN_cuMemGetAllocationGranularity_v10020) \
    X(cuMemAddressReserve, PFN_cuMemAddressReserve_v10020)                     \
    X(cuMemAddressFree, PFN_cuMemAddressFree_v10020)                           \
    X(cuMemSetAccess, PFN_cuMemSetAccess_v10020)                               \
    X(cuMemHostAlloc, PFN_cuMemHostAlloc_v2020)                                \
    X(cuMemFreeHost, PFN_cuMemFreeHost_v2000)                                  \
    X(cuStreamCreate, PFN_cuStreamCreate_v2000)                                \
    X(cuStreamCreateWithPriority, PFN_cuStreamCreateWithPriority_v5050)        \
    X(cuCtxGetStreamPriorityRange, PFN_cuCtxGetStreamPriorityRange_v5050)      \
    X(cuEventCreate, PFN_cuEventCreate_v2000)                                  \
    X(cuEventDestroy_v2, PFN_cuEventDestroy_v4000)                             \
    X(cuEventRecord, PFN_cuEventRecord_v2000)                                  \
    X(cuEventQuery, PFN_cuEventQuery_v2000)                                    \
    X(cuEventSynchronize, PFN_cuEventSynchronize_v2000)                        \
    X(cuEventElapsedTime, PFN_cuEventElapsedTime_v2000)                        \
    X(cuStreamWaitEvent, PFN_cuStreamWaitEvent_v3020)                          \
    X(cuPointerGetAttribute, PFN_cuPointerGetAttribute_v4000)                  \
    X(cuModuleLoadData, PFN_cuModuleLoadData_v2000)                            \
    X(cuModuleGetFunction, PFN_cuModuleGetFunction_v2000)

struct bs_driver_table {
#define BS_DRV_FIELD(name, pfn) pfn name;
    BS_DRIVER_FUNCTIONS(BS_DRV_FIELD)
#undef BS_DRV_FIELD
};
extern struct bs_driver_table bs_drv;

/* 1 while the shim intercepts, 0 in pass-through (disabled or bad config).
 * Valid after bs_init(). */
extern int bs_active_flag;

/* Run-once, lazy initialisation: config, log, real functions. Cheap after the
 * first call. Never call from inside dlsym. */
void bs_init(void);
static inline bool bs_active(void)
{
    bs_init();
    return __atomic_load_n(&bs_active_flag, __ATOMIC_RELAXED);
}
/* Returns the real function of hook id, resolving it on first use; NULL when
 * the driver lacks it (logged once). */
void *bs_real_resolve(enum bs_hook_id id);
#define BS_REAL(name)                                                          \
    (__atomic_load_n(&bs_real.name, __ATOMIC_ACQUIRE)                          \
         ? bs_real.name                                                        \
         : (__typeof__(bs_real.name))bs_real_resolve(BS_ID_##name))
/* Result for a hook whose real function is missing. */
CUresult bs_missing(enum bs_hook_id id);

/* Index of a hooked symbol name, or -1. */
int bs_hook_find(const char *name);
const char *bs_hook_name(enum bs_hook_id id);
void *bs_hook_wrapper(enum bs_hook_id id);
/* The wrapper for a real driver function pointer, or p itself when p is not
 * one the shim hooks (pass-through). */
void *bs_wrap_pointer(void *p);
/* Records p as the real function of id if none is known yet. Returns true
 * when p is (now) the real function of id. */
bool bs_real_adopt(enum bs_hook_id id, void *p);

/* Per-hook call counters (kept by track/stats.c). */
void bs_count_call(enum bs_hook_id id);
uint64_t bs_hook_calls_total(enum bs_hook_id id);


/* ---- interpose/dl.c: the real dlsym/dlvsym, found without dlsym ---- */
void *bs_real_dlsym(void *handle, const char *name);
void *bs_real_dlvsym(void *handle, const char *name, const char *version);

/* ---- track/alloc_map.c: live device allocations, O(1) interior lookup ---- */
struct bs_alloc_rec {
    uint64_t base, size;
    uint64_t stream;
    int api; /* enum blockswap_alloc_api */
    bool managed; /* served by page/: its VRAM comes and goes */
};

int bs_alloc_map_insert(const struct bs_alloc_rec *rec);
/* Removes the record whose base is exactly base. Returns 0 or -ENOENT. */
int bs_alloc_map_remove(uint64_t base, struct bs_alloc_rec *removed);
/* Removes every record lying inside [base, base+size); returns the bytes removed. */
uint64_t bs_alloc_map_remove_range(uint64_t base, uint64_t size, int api);
/* Launch-path lookup: lock-free (seqlock), allocation-free. Returns true and the
 * base of the allocation containing addr. */
bool bs_alloc_map_lookup(uint64_t addr, uint64_t *base);
/* Slow-path lookup of the whole record (takes the writer lock). */
int bs_alloc_map_find(uint64_t addr, struct bs_alloc_rec *out);
void bs_alloc_map_stats(uint64_t *count, uint64_t *bytes, uint64_t *peak);
void bs_alloc_map_reset(void);
void bs_alloc_map_atfork_prepare(void);
void bs_alloc_map_atfork_parent(void);

/* ---- track/launch.c: which allocations a launch points into ---- */
#define BS_LAUNCH_MAX_REFS 256

struct bs_launch_set {
    uint64_t bases[BS_LAUNCH_MAX_REFS];
    int n;
    bool overflow;
};

/* Scans the parameters of one launch into set. Returns 0, -ENOTSUP when the layout of
 * f is unknown (no cuFuncGetParamInfo and no extra buffer: run unscanned), or -EAGAIN
 * when the driver could not say now (out of memory or an unknown error, twice: the
 * launch is refused while managed memory exists). */
int bs_launch_scan(CUfunction f, void **kernel_params, void **extra,
                   uint64_t scan_limit, struct bs_launch_set *set);
/* Scans `len` bytes of packed parameters at p (pointer-aligned words). */
void bs_scan_bytes(const unsigned char *p, size_t len, struct bs_launch_set *set);
/* Called by every launch wrapper before the real launch. Returns the set, or NULL when
 * the launch cannot be followed in full: its layout cannot be read now (-EAGAIN above)
 * or its parameters point into more than BS_LAUNCH_MAX_REFS allocations (overflow).
 * The wrapper then refuses it with CUDA_ERROR_OUT_OF_MEMORY while managed memory
 * exists, and runs it otherwise; both count as unscanned. */
const struct bs_launch_set *bs_launch_observe(CUfunction f, void **kernel_params,
                                             void **extra);
void bs_launch_forget_functions(void);
int bs_launch_last(uint64_t *bases, int max);
void bs_tensormap_record(const CUtensorMap *map, const void *global_address);
/* Address recorded for a 128-byte descriptor, or 0. */
uint64_t bs_tensormap_lookup(const void *desc);
void bs_launch_reset(void);

/* ---- track/stats.c: process-wide counters ---- */
enum bs_stat {
    BS_STAT_ALLOCS,
    BS_STAT_FREES,
    BS_STAT_LAUNCHES,
    BS_STAT_LAUNCHES_UNSCANNED,
    BS_STAT_LAUNCH_REFS,
    BS_STAT_GRAPH_LAUNCHES,
    BS_STAT_TENSOR_MAPS,
    BS_STAT_VMM_MAPPED,
    BS_STAT_PAGE_INS,
    BS_STAT_PAGE_IN_BYTES,
    BS_STAT_EVICTIONS,
    BS_STAT_WRITEBACK_BYTES,
    BS_STAT_WRITEBACK_SKIPPED_BYTES,
    BS_STAT_HOST_WRITES,
    BS_STAT_LOAD_DIRECT_BYTES, /* loaded straight to VRAM, no host copy */
    BS_STAT_OOM_REFUSALS,
    BS_STAT_COUNT
};
void bs_stat_add(enum bs_stat s, int64_t v);
int64_t bs_stat_get(enum bs_stat s);
void bs_stats_reset(void);
void bs_stats_log_summary(void);

/* ---- page/: residency of managed allocations (ops.c, alloc.c, admin.c) ---- */
struct blockswap_stats;
#define BS_PAGE_PTSZ 1u           /* a _ptsz/_ptds entry point: stream 0 is per-thread */
#define BS_PAGE_STREAM_ORDERED 4u /* a stream-ordered free */
#define BS_PAGE_BASES 8u          /* the addresses are allocation bases (a launch set) */
/* Returned by the entry points below when page/ has nothing to do: call the driver
 * (and then the matching _end, where there is one). */
#define BS_PAGE_NOT_HANDLED ((CUresult)0x7ffffff0)
/* Returned by bs_page_htod for a load straight to VRAM: the page lock is held; call the
 * driver, then bs_page_end(). */
#define BS_PAGE_DIRECT ((CUresult)0x7ffffff1)

bool bs_page_managed_any(void);
/* An allocation of size bytes: page/ makes it (managed) and returns the result, or
 * charges it and returns BS_PAGE_NOT_HANDLED: the driver allocates, then
 * bs_page_alloc_end records it (or gives the charge back). */
CUresult bs_page_alloc_begin(CUdeviceptr *dptr, size_t size, int api, CUstream s);
void bs_page_alloc_end(CUresult r, const CUdeviceptr *dptr, size_t size, int api, CUstream s);
CUresult bs_page_alloc_pitch_begin(CUdeviceptr *dptr, size_t *pitch, size_t width,
                                   size_t height, unsigned elem);
void bs_page_alloc_pitch_end(CUresult r, const CUdeviceptr *dptr, const size_t *pitch,
                             size_t width, size_t height);
/* A free: page/ frees a managed allocation itself (after the work that used it);
 * otherwise BS_PAGE_NOT_HANDLED, the record set aside in *f until bs_page_free_end. */
struct bs_page_free {
    bool had;
    struct bs_alloc_rec rec;
};
CUresult bs_page_free_begin(uint64_t ptr, CUstream s, unsigned flags, struct bs_page_free *f);
void bs_page_free_end(CUresult r, const struct bs_page_free *f);
/* The application's own VMM mappings: charged while mapped. */
CUresult bs_page_map_begin(size_t size);
void bs_page_map_end(CUresult r, uint64_t ptr, size_t size);
void bs_page_unmap_begin(uint64_t ptr, size_t size);
/* Makes the managed allocations containing addrs resident for work on stream s;
 * bit i of write_mask says the work may write addrs[i] (entries past 63 count as
 * written). On CUDA_SUCCESS the page lock is held: issue the work, then bs_page_end(). */
CUresult bs_page_begin(const uint64_t *addrs, int n, uint64_t write_mask, CUstream s,
                       unsigned flags);
void bs_page_end(void);
/* Host copies into and out of a managed allocation that is not resident, served by its
 * host backing; BS_PAGE_NOT_HANDLED when it is not managed or is resident. A load
 * (no kernel used dst yet) may go straight to VRAM instead: BS_PAGE_DIRECT. */
CUresult bs_page_htod(uint64_t dst, const void *src, size_t n, CUstream s, unsigned flags);
CUresult bs_page_dtoh(void *dst, uint64_t src, size_t n, CUstream s, unsigned flags);
/* A unified address that is host memory (cuMemcpy's sides). */
bool bs_page_is_host(uint64_t p);
CUresult bs_page_charge(uint64_t bytes, const char *what);
void bs_page_uncharge(uint64_t bytes);
void bs_page_capture(CUstream s, unsigned flags, bool on);
/* The application destroys s: later evictions wait for its queued work, its slot is
 * freed for another stream. */
void bs_page_stream_gone(CUstream s);
int bs_page_is_resident(uint64_t addr);
int bs_page_pin(uint64_t addr, bool pin);
int bs_page_tag(uint64_t addr, int block);
void bs_page_stats(struct blockswap_stats *st);
void bs_page_meminfo(size_t *free_b, size_t *total);
void bs_page_reset(void);

/* ---- trace/summary.c: what blockswap did, in a few lines (at exit, and on demand) ---- */
void bs_summary_log(void);

/* ---- control: what blockswapctl asks of page/ and schedule/ (control/control.c) ---- */
struct bs_ctl_evict {
    uint64_t evicted, evicted_bytes; /* allocations whose VRAM was released */
    uint64_t pinned, pinned_bytes;   /* left resident: CUDA graphs or blockswap_pin */
    uint64_t failed, failed_bytes;   /* eviction failed (logged): left resident */
};
struct bs_ctl_trim {
    uint64_t freed, freed_bytes;     /* host backings released */
    uint64_t kept, kept_bytes;       /* host backings still needed (swapped blocks) */
    uint64_t vram_returned_bytes;    /* pooled VRAM released to the driver */
};
int bs_page_ctl_evict(struct bs_ctl_evict *out);
int bs_page_ctl_trim(struct bs_ctl_trim *out);
/* k, or BS_SIZE_AUTO, for every stack (stack -1) or the one found stack-th. Returns 1
 * when it waits for the next step, 0 when no such stack exists yet (the next one found
 * uses it). */
int bs_page_ctl_set_blocks_to_swap(uint64_t k, int stack);
/* Blocks copied ahead (BLOCKSWAP_PREFETCH's meaning), the same way. */
int bs_page_ctl_set_prefetch(uint64_t prefetch);
/* The blocks-ahead setting in force (for the summary's hint). */
uint64_t bs_page_prefetch(void);
struct bs_ctl_limit {
    uint64_t old_limit;
    uint64_t pinned_bytes, unmanaged_bytes; /* what no eviction frees */
    uint64_t evicted, evicted_bytes;        /* made room for a lower limit */
    uint64_t pool_released_bytes;           /* pooled VRAM given back for it */
    uint64_t used_bytes;                    /* after */
    int next_step;                          /* k and the window chosen again then */
};
/* Sets page/'s VRAM limit and makes room for it at once. 0, or -EAGAIN before set-up
 * (no managed allocation yet), -ERANGE below what pinned and unmanaged memory hold (the
 * limit is unchanged), -EIO when an eviction failed (logged; the limit is set). */
int bs_page_ctl_set_vram_limit(uint64_t limit, struct bs_ctl_limit *out);
/* JSON of the block stacks ("stacks":[...]) into buf; returns the length it needs. */
size_t bs_page_ctl_blocks_json(char *buf, size_t cap);
/* Starts the control thread once, when enabled, at the first managed allocation;
 * cheap after the first call. */
void bs_control_start(void);
void bs_control_reset_after_fork(void);
/* Parses one request and writes one JSON line (with '\n') to resp. Never touches a
 * socket. Returns the response length, or -ENOSPC when cap cannot hold an answer. */
int bs_control_handle_request(const char *req, size_t len, char *resp, size_t cap);

/* ---- config in force (interpose/table.c owns it) ---- */
extern struct bs_config bs_cfg;

#endif /* BS_H */
