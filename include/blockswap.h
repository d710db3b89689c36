/* blockswap: public API of the preloaded shim.
 * An application (or a test, or a tool) reaches these through dlsym(RTLD_DEFAULT, ...)
 * when libblockswap.so is preloaded, or by linking it. Nothing here needs cuda.h. */
#ifndef BLOCKSWAP_H
#define BLOCKSWAP_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define BLOCKSWAP_VERSION_MAJOR 0
#define BLOCKSWAP_VERSION_MINOR 1

/* The library's version, "MAJOR.MINOR.PATCH". */
const char *blockswap_version(void);

/* 1 when the shim intercepts and tracks; 0 when it passes everything through
 * (BLOCKSWAP_DISABLE=1, or a bad BLOCKSWAP_* value was found). */
int blockswap_enabled(void);

/* How the application obtained a tracked allocation. */
enum blockswap_alloc_api {
    BLOCKSWAP_API_MEM_ALLOC = 1,    /* cuMemAlloc_v2 */
    BLOCKSWAP_API_MEM_ALLOC_PITCH,  /* cuMemAllocPitch_v2 */
    BLOCKSWAP_API_MEM_ALLOC_ASYNC,  /* cuMemAllocAsync(_ptsz) */
    BLOCKSWAP_API_MEM_ALLOC_POOL,   /* cuMemAllocFromPoolAsync(_ptsz) */
    BLOCKSWAP_API_VMM_MAP,          /* the application's own cuMemMap */
};

struct blockswap_alloc_info {
    uint64_t base;   /* device address returned to the application */
    uint64_t size;   /* bytes */
    int api;         /* enum blockswap_alloc_api */
    uint64_t stream; /* CUstream given at allocation (0 for synchronous APIs) */
};

/* Finds the live tracked allocation that contains addr (any interior address).
 * Returns 0 and fills *out, or -ENOENT. */
int blockswap_find_allocation(uint64_t addr, struct blockswap_alloc_info *out);

struct blockswap_stats {
    uint64_t live_allocations;   /* tracked device allocations now live */
    uint64_t live_bytes;         /* their bytes */
    uint64_t peak_bytes;         /* high-water mark of live_bytes */
    uint64_t vmm_mapped_bytes;   /* bytes the application mapped itself (cuMemMap) */
    uint64_t allocs;             /* allocations seen since start */
    uint64_t frees;              /* frees seen since start */
    uint64_t launches;           /* kernel launches seen */
    uint64_t launches_unscanned; /* launches not followed in full: parameters that could
                                  * not be scanned, or more than 256 allocations (refused
                                  * while memory is managed) */
    uint64_t launch_refs;        /* allocation references found in launch parameters */
    uint64_t graph_launches;     /* cuGraphLaunch calls (not scanned: see docs) */
    uint64_t tensor_maps;        /* cuTensorMapEncode* descriptors recorded */
    /* Paging (managed allocations: at least BLOCKSWAP_MIN_BYTES). */
    uint64_t managed_allocations; /* live managed allocations */
    uint64_t managed_bytes;       /* their bytes as requested */
    uint64_t resident_bytes;      /* VRAM mapped behind them now (2 MiB pages) */
    uint64_t unmanaged_bytes;     /* VRAM of the other allocations and mappings */
    uint64_t host_backing_bytes;  /* pinned host memory holding evicted contents */
    uint64_t vram_limit;          /* the limit in force, 0 before the first managed allocation */
    uint64_t page_ins;            /* allocations made resident */
    uint64_t page_in_bytes;       /* bytes copied to the device for them */
    uint64_t evictions;           /* allocations whose VRAM was released */
    uint64_t writeback_bytes;     /* bytes copied back to host backing on eviction */
    uint64_t writeback_skipped_bytes; /* bytes not copied back: fingerprint unchanged */
    uint64_t oom_refusals;        /* calls refused with CUDA_ERROR_OUT_OF_MEMORY */
    /* Block scheduling. */
    uint64_t blocks;              /* transformer blocks found (detected or tagged), 0 if none */
    uint64_t blocks_swapped;      /* how many of them stream through VRAM */
    uint64_t block_bytes;         /* VRAM of the largest block */
    /* High-water marks. */
    uint64_t peak_vram_bytes;     /* resident managed plus unmanaged VRAM */
    uint64_t peak_host_backing_bytes; /* pinned host backing */
    /* Tracing (BLOCKSWAP_TRACE), measured with CUDA events on the GPU's clock over the
     * steps traced so far; all 0 when tracing is off. */
    uint64_t steps_traced;        /* passes over a block stack whose times are known, the
                                   * first (which loads) left out when there are more;
                                   * the times below are summed over these */
    uint64_t transfer_in_ns;      /* copies of block weights to the device */
    uint64_t transfer_out_ns;     /* write-backs of changed block weights */
    uint64_t compute_ns;          /* first to last kernel touching each block, summed */
    uint64_t stall_ns;            /* compute streams idle, waiting for block weights */
    /* Physical VRAM kept for reuse (unmapped, counted against the limit, given back
     * first under pressure), and handles created, reused and released since start. */
    uint64_t vram_pooled_bytes;
    uint64_t phys_created, phys_reused, phys_released;
    /* The pinned part of host backing (BLOCKSWAP_PINNED_LIMIT), now and at its peak; the
     * rest of host_backing_bytes is pageable. */
    uint64_t host_pinned_bytes, peak_host_pinned_bytes;
    /* Bytes copied from the host straight into VRAM while loading (no host copy made). */
    uint64_t load_direct_bytes;
    /* Host memory by kind (BLOCKSWAP_FILE_BACKING, BLOCKSWAP_STAGING_SIZE): bytes whose
     * backing is a range of the file they were loaded from (no memory held: the page
     * cache keeps what it can), files held open for them, bytes read back from those
     * files and failed reads, and the pinned staging ring page-ins from files and
     * pageable backing go through. Pageable backing = host_backing_bytes minus
     * host_pinned_bytes. */
    uint64_t host_file_backed_bytes, files_held, file_read_bytes, file_read_errors;
    uint64_t host_staging_bytes;
};

/* Copies the current counters. Returns 0, or -EINVAL when out is NULL. */
int blockswap_get_stats(struct blockswap_stats *out);

/* Whether the managed allocation containing addr has VRAM now: 1 yes, 0 no,
 * -ENOENT when addr is not in a managed allocation. */
int blockswap_is_resident(uint64_t addr);

/* pin != 0: makes the managed allocation containing addr resident now and keeps it
 * so until unpinned or freed; pin == 0 lets blockswap evict it again. For memory a
 * kernel reaches only through pointers stored in device memory, which blockswap
 * cannot see. Returns 0, -ENOENT (not managed), -ENOMEM (does not fit the VRAM
 * limit) or -EIO (a driver error, logged). */
int blockswap_pin(uint64_t addr, int pin);

/* Tags the managed allocation containing addr as part of transformer block `block`
 * (blocks run in ascending order; -1 removes the tag). Tags take precedence over
 * detection. Returns 0 or -ENOENT (not a managed allocation). */
int blockswap_tag_block(uint64_t addr, int block);

/* Writes the summary to blockswap's log now (it is also written at exit): blocks
 * detected and swapped, peak VRAM and host memory, bytes moved each way, and, when
 * tracing, time stalled, overlap and a hint when a setting looks wrong. Returns 0. */
int blockswap_log_summary(void);

/* Diagnostics: whether blockswap sees an application's calls and kernels. They are
 * public because a user needs them to check that an application (a new PyTorch, a
 * custom Triton or CUDA kernel) is fully followed before trusting it to paging:
 * scripts/gpu/coverage.py compares blockswap_hook_calls with what the profiler saw, and
 * blockswap_last_launch says which allocations a kernel's parameters were found to
 * point into. Neither changes anything. */

/* Calls that reached the shim through the named hooked entry point, e.g.
 * "cuMemAlloc_v2" or "cuLaunchKernel_ptsz". Returns -1 when name is not hooked. */
int64_t blockswap_hook_calls(const char *name);

/* The distinct tracked allocations that the calling thread's most recent kernel
 * launch points into (through any parameter, struct member, interior pointer or
 * recorded tensor map). Writes up to max base addresses into bases and returns
 * how many there were, or -ENODATA when this thread has launched nothing. */
int blockswap_last_launch(uint64_t *bases, int max);

#ifdef __cplusplus
}
#endif

#endif /* BLOCKSWAP_H */
