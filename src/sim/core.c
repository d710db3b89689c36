/* Global simulator state and its lock, lazy initialisation, fork handling, the one
 * simulated device, and contexts (primary and created, per-thread current stack).
 * Owns cudasim_g; other files reach it through G under the lock. */
#include "sim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct cudasim_state cudasim_g;

static pthread_once_t setup_once = PTHREAD_ONCE_INIT;

/* The per-thread context stack. `gen` ties it to one generation of the global state,
 * so a forked child, whose state starts clean, ignores what its parent thread had. */
#define CTX_STACK_MAX 64
static __thread struct {
    unsigned gen;
    int depth;
    struct sim_ctx *stack[CTX_STACK_MAX];
} tls_ctx;

static void init_mutex(void)
{
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    /* Recursive: a host function run at issue time may call back into the driver. */
    pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&G.lock, &a);
    pthread_mutexattr_destroy(&a);
}

static void atfork_prepare(void) { pthread_mutex_lock(&G.lock); }
static void atfork_parent(void) { pthread_mutex_unlock(&G.lock); }

/* The child starts as a process that never called cuInit: the parent's contexts,
 * streams and allocations do not exist for it (as on real hardware, where a CUDA
 * context does not survive fork). Parent bookkeeping is dropped, not freed: it may
 * be in any state, and leaking it once per fork is harmless. */
static void atfork_child(void)
{
    /* Held since atfork_prepare by this very thread: release it before the state is
     * wiped, so the child's lock is a fresh, unowned one (and ThreadSanitizer, which
     * follows owners across fork, agrees). */
    pthread_mutex_unlock(&G.lock);
    unsigned gen = G.generation + 1;
    bool report_registered_before = G.initialized;
    memset(&G, 0, sizeof(G));
    init_mutex();
    G.generation = gen;
    G.forked_child = true;
    cudasim_fault_reset_counts();
    (void)report_registered_before;
}

static void setup(void)
{
    init_mutex();
    cudasim_clock_setup();
    pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

static struct sim_ctx *tls_top(void)
{
    if (tls_ctx.gen != G.generation) {
        tls_ctx.gen = G.generation;
        tls_ctx.depth = 0;
    }
    return tls_ctx.depth ? tls_ctx.stack[tls_ctx.depth - 1] : NULL;
}

struct sim_ctx *cudasim_current_ctx(void) { return tls_top(); }

CUresult cudasim_enter(enum sim_need need)
{
    pthread_once(&setup_once, setup);
    pthread_mutex_lock(&G.lock);
    if (need == SIM_NEED_NOTHING)
        return CUDA_SUCCESS;
    if (!G.initialized)
        return CUDA_ERROR_NOT_INITIALIZED;
    if (need == SIM_NEED_CTX) {
        struct sim_ctx *c = tls_top();
        if (!c || c->magic != SIM_MAGIC_CTX || (c->primary && !c->active))
            return CUDA_ERROR_INVALID_CONTEXT;
        if (c->sticky != CUDA_SUCCESS)
            return c->sticky;
    }
    return CUDA_SUCCESS;
}

void cudasim_leave(void)
{
    cudasim_call_end();
    pthread_mutex_unlock(&G.lock);
}

CUresult cudasim_check_ctx(CUcontext h, struct sim_ctx **out)
{
    struct sim_ctx *c = (struct sim_ctx *)h;
    if (!c || c->magic != SIM_MAGIC_CTX)
        return CUDA_ERROR_INVALID_CONTEXT;
    *out = c;
    return CUDA_SUCCESS;
}

static void ctx_setup(struct sim_ctx *c, bool primary, unsigned flags)
{
    c->magic = SIM_MAGIC_CTX;
    c->primary = primary;
    c->flags = flags;
    c->sticky = CUDA_SUCCESS;
    c->id = ++G.next_ctx_id;
    c->legacy = cudasim_stream_make(c, SIM_STREAM_LEGACY, 0, 0);
}

/* ---- init ---------------------------------------------------------------------- */

CUresult cudasim_init(unsigned flags)
{
    if (flags != 0)
        return CUDA_ERROR_INVALID_VALUE;
    if (G.initialized)
        return CUDA_SUCCESS;
    cudasim_config_load(&G.cfg);
    G.pid = getpid();
    cudasim_timeline_reset();
    ctx_setup(&G.primary, true, 0);
    G.initialized = true;
    cudasim_report_register();
    cudasim_verbose("initialised: vram %llu bytes, pcie %g GB/s, hbm %g GB/s",
                    (unsigned long long)G.cfg.vram_bytes, G.cfg.pcie_gbps, G.cfg.hbm_gbps);
    return CUDA_SUCCESS;
}

/* ---- device -------------------------------------------------------------------- */

static CUresult check_dev(CUdevice dev) { return dev == 0 ? CUDA_SUCCESS : CUDA_ERROR_INVALID_DEVICE; }

CUresult cudasim_device_get(CUdevice *dev, int ordinal)
{
    if (!dev)
        return CUDA_ERROR_INVALID_VALUE;
    if (ordinal != 0)
        return CUDA_ERROR_INVALID_DEVICE;
    *dev = 0;
    return CUDA_SUCCESS;
}

CUresult cudasim_device_count(int *count)
{
    if (!count)
        return CUDA_ERROR_INVALID_VALUE;
    *count = 1;
    return CUDA_SUCCESS;
}

CUresult cudasim_device_name(char *name, int len, CUdevice dev)
{
    if (!name || len <= 0)
        return CUDA_ERROR_INVALID_VALUE;
    if (check_dev(dev))
        return CUDA_ERROR_INVALID_DEVICE;
    snprintf(name, (size_t)len, "%s", "blockswap simulated GPU");
    return CUDA_SUCCESS;
}

CUresult cudasim_device_total_mem(size_t *bytes, CUdevice dev)
{
    if (!bytes)
        return CUDA_ERROR_INVALID_VALUE;
    if (check_dev(dev))
        return CUDA_ERROR_INVALID_DEVICE;
    *bytes = G.cfg.vram_bytes;
    return CUDA_SUCCESS;
}

/* An H100-like part: compute capability 9.0 with the features the shim relies on
 * (unified addressing, memory pools, VMM, tensor maps). Unlisted attributes read 0. */
static const struct {
    CUdevice_attribute attr;
    int value;
} dev_attrs[] = {
    {CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK, 1024},
    {CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_X, 1024},
    {CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_Y, 1024},
    {CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_Z, 64},
    {CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_X, 2147483647},
    {CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Y, 65535},
    {CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Z, 65535},
    {CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK, 49152},
    {CU_DEVICE_ATTRIBUTE_TOTAL_CONSTANT_MEMORY, 65536},
    {CU_DEVICE_ATTRIBUTE_WARP_SIZE, 32},
    {CU_DEVICE_ATTRIBUTE_MAX_PITCH, 2147483647},
    {CU_DEVICE_ATTRIBUTE_MAX_REGISTERS_PER_BLOCK, 65536},
    {CU_DEVICE_ATTRIBUTE_CLOCK_RATE, 1980000},
    {CU_DEVICE_ATTRIBUTE_TEXTURE_ALIGNMENT, 512},
    {CU_DEVICE_ATTRIBUTE_GPU_OVERLAP, 1},
    {CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, 132},
    {CU_DEVICE_ATTRIBUTE_KERNEL_EXEC_TIMEOUT, 0},
    {CU_DEVICE_ATTRIBUTE_INTEGRATED, 0},
    {CU_DEVICE_ATTRIBUTE_CAN_MAP_HOST_MEMORY, 1},
    {CU_DEVICE_ATTRIBUTE_COMPUTE_MODE, CU_COMPUTEMODE_DEFAULT},
    {CU_DEVICE_ATTRIBUTE_SURFACE_ALIGNMENT, 512},
    {CU_DEVICE_ATTRIBUTE_CONCURRENT_KERNELS, 1},
    {CU_DEVICE_ATTRIBUTE_ECC_ENABLED, 0},
    {CU_DEVICE_ATTRIBUTE_PCI_BUS_ID, 1},
    {CU_DEVICE_ATTRIBUTE_PCI_DEVICE_ID, 0},
    {CU_DEVICE_ATTRIBUTE_TCC_DRIVER, 0},
    {CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE, 2619000},
    {CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH, 5120},
    {CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE, 52428800},
    {CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_MULTIPROCESSOR, 2048},
    {CU_DEVICE_ATTRIBUTE_ASYNC_ENGINE_COUNT, 2},
    {CU_DEVICE_ATTRIBUTE_UNIFIED_ADDRESSING, 1},
    {CU_DEVICE_ATTRIBUTE_PCI_DOMAIN_ID, 0},
    {CU_DEVICE_ATTRIBUTE_TEXTURE_PITCH_ALIGNMENT, 32},
    {CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, 9},
    {CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, 0},
    {CU_DEVICE_ATTRIBUTE_STREAM_PRIORITIES_SUPPORTED, 1},
    {CU_DEVICE_ATTRIBUTE_GLOBAL_L1_CACHE_SUPPORTED, 1},
    {CU_DEVICE_ATTRIBUTE_LOCAL_L1_CACHE_SUPPORTED, 1},
    {CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_MULTIPROCESSOR, 233472},
    {CU_DEVICE_ATTRIBUTE_MAX_REGISTERS_PER_MULTIPROCESSOR, 65536},
    {CU_DEVICE_ATTRIBUTE_MANAGED_MEMORY, 1},
    {CU_DEVICE_ATTRIBUTE_MULTI_GPU_BOARD, 0},
    {CU_DEVICE_ATTRIBUTE_HOST_NATIVE_ATOMIC_SUPPORTED, 0},
    {CU_DEVICE_ATTRIBUTE_PAGEABLE_MEMORY_ACCESS, 0},
    {CU_DEVICE_ATTRIBUTE_CONCURRENT_MANAGED_ACCESS, 1},
    {CU_DEVICE_ATTRIBUTE_COMPUTE_PREEMPTION_SUPPORTED, 1},
    {CU_DEVICE_ATTRIBUTE_CAN_USE_HOST_POINTER_FOR_REGISTERED_MEM, 1},
    {CU_DEVICE_ATTRIBUTE_COOPERATIVE_LAUNCH, 1},
    {CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN, 232448},
    {CU_DEVICE_ATTRIBUTE_CAN_FLUSH_REMOTE_WRITES, 0},
    {CU_DEVICE_ATTRIBUTE_HOST_REGISTER_SUPPORTED, 1},
    {CU_DEVICE_ATTRIBUTE_DIRECT_MANAGED_MEM_ACCESS_FROM_HOST, 0},
    {CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED, 1},
    {CU_DEVICE_ATTRIBUTE_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR_SUPPORTED, 1},
    {CU_DEVICE_ATTRIBUTE_MAX_BLOCKS_PER_MULTIPROCESSOR, 32},
    {CU_DEVICE_ATTRIBUTE_GENERIC_COMPRESSION_SUPPORTED, 0},
    {CU_DEVICE_ATTRIBUTE_MAX_PERSISTING_L2_CACHE_SIZE, 0},
    {CU_DEVICE_ATTRIBUTE_MAX_ACCESS_POLICY_WINDOW_SIZE, 0},
    {CU_DEVICE_ATTRIBUTE_RESERVED_SHARED_MEMORY_PER_BLOCK, 1024},
    {CU_DEVICE_ATTRIBUTE_READ_ONLY_HOST_REGISTER_SUPPORTED, 1},
    {CU_DEVICE_ATTRIBUTE_MEMORY_POOLS_SUPPORTED, 1},
    {CU_DEVICE_ATTRIBUTE_MEMPOOL_SUPPORTED_HANDLE_TYPES, CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR},
    {CU_DEVICE_ATTRIBUTE_CLUSTER_LAUNCH, 1},
    {CU_DEVICE_ATTRIBUTE_DEFERRED_MAPPING_CUDA_ARRAY_SUPPORTED, 1},
    {CU_DEVICE_ATTRIBUTE_TENSOR_MAP_ACCESS_SUPPORTED, 1},
    {CU_DEVICE_ATTRIBUTE_UNIFIED_FUNCTION_POINTERS, 1},
    {CU_DEVICE_ATTRIBUTE_IPC_EVENT_SUPPORTED, 0},
};

CUresult cudasim_device_attribute(int *pi, CUdevice_attribute attrib, CUdevice dev)
{
    if (!pi || (int)attrib <= 0 || attrib >= CU_DEVICE_ATTRIBUTE_MAX)
        return CUDA_ERROR_INVALID_VALUE;
    if (check_dev(dev))
        return CUDA_ERROR_INVALID_DEVICE;
    *pi = 0;
    for (size_t i = 0; i < sizeof(dev_attrs) / sizeof(dev_attrs[0]); i++)
        if (dev_attrs[i].attr == attrib) {
            *pi = dev_attrs[i].value;
            break;
        }
    return CUDA_SUCCESS;
}

CUresult cudasim_device_uuid(CUuuid *uuid, CUdevice dev)
{
    static const char id[16] = "blockswap-simgpu";
    if (!uuid)
        return CUDA_ERROR_INVALID_VALUE;
    if (check_dev(dev))
        return CUDA_ERROR_INVALID_DEVICE;
    memcpy(uuid->bytes, id, sizeof(uuid->bytes));
    return CUDA_SUCCESS;
}

CUresult cudasim_device_pci_bus_id(char *pciBusId, int len, CUdevice dev)
{
    if (!pciBusId || len <= 0)
        return CUDA_ERROR_INVALID_VALUE;
    if (check_dev(dev))
        return CUDA_ERROR_INVALID_DEVICE;
    snprintf(pciBusId, (size_t)len, "0000:01:00.0");
    return CUDA_SUCCESS;
}

/* ---- primary context ----------------------------------------------------------- */

CUresult cudasim_primary_retain(CUcontext *pctx, CUdevice dev)
{
    if (!pctx)
        return CUDA_ERROR_INVALID_VALUE;
    if (check_dev(dev))
        return CUDA_ERROR_INVALID_DEVICE;
    G.primary.retain++;
    G.primary.active = true;
    *pctx = (CUcontext)&G.primary;
    return CUDA_SUCCESS;
}

CUresult cudasim_primary_release(CUdevice dev)
{
    if (check_dev(dev))
        return CUDA_ERROR_INVALID_DEVICE;
    if (G.primary.retain <= 0)
        return CUDA_ERROR_INVALID_CONTEXT;
    if (--G.primary.retain == 0)
        G.primary.active = false;
    return CUDA_SUCCESS;
}

CUresult cudasim_primary_state(CUdevice dev, unsigned *flags, int *active)
{
    if (!flags || !active)
        return CUDA_ERROR_INVALID_VALUE;
    if (check_dev(dev))
        return CUDA_ERROR_INVALID_DEVICE;
    *flags = G.primary.flags;
    *active = G.primary.active;
    return CUDA_SUCCESS;
}

/* Reset clears the fault and the timeline of the primary context so a test can go on
 * after a deliberate illegal access; allocations are kept (see docs/simulator.md). */
CUresult cudasim_primary_reset(CUdevice dev)
{
    if (check_dev(dev))
        return CUDA_ERROR_INVALID_DEVICE;
    cudasim_host_wait_all();
    G.primary.sticky = CUDA_SUCCESS;
    G.primary.active = false;
    G.primary.retain = 0;
    return CUDA_SUCCESS;
}

CUresult cudasim_primary_set_flags(CUdevice dev, unsigned flags)
{
    if (check_dev(dev))
        return CUDA_ERROR_INVALID_DEVICE;
    G.primary.flags = flags;
    return CUDA_SUCCESS;
}

/* ---- created contexts and the current-context stack --------------------------- */

CUresult cudasim_ctx_create(CUcontext *pctx, unsigned flags, CUdevice dev)
{
    if (!pctx)
        return CUDA_ERROR_INVALID_VALUE;
    if (check_dev(dev))
        return CUDA_ERROR_INVALID_DEVICE;
    tls_top();
    if (tls_ctx.depth == CTX_STACK_MAX)
        return CUDA_ERROR_OUT_OF_MEMORY;
    struct sim_ctx *c = calloc(1, sizeof(*c));
    if (!c)
        return CUDA_ERROR_OUT_OF_MEMORY;
    ctx_setup(c, false, flags);
    tls_ctx.stack[tls_ctx.depth++] = c;
    *pctx = (CUcontext)c;
    return CUDA_SUCCESS;
}

/* Contexts are few: a destroyed one is kept with a dead magic so that a stale
 * handle is answered with an error instead of touching freed memory. */
CUresult cudasim_ctx_destroy(CUcontext h)
{
    struct sim_ctx *c;
    if (cudasim_check_ctx(h, &c))
        return CUDA_ERROR_INVALID_CONTEXT;
    if (c->primary)
        return CUDA_ERROR_INVALID_CONTEXT;
    tls_top();
    for (int i = 0; i < tls_ctx.depth; i++)
        if (tls_ctx.stack[i] == c) {
            memmove(&tls_ctx.stack[i], &tls_ctx.stack[i + 1],
                    (size_t)(tls_ctx.depth - i - 1) * sizeof(tls_ctx.stack[0]));
            tls_ctx.depth--;
            i--;
        }
    for (struct sim_stream *s = c->streams; s; s = s->next)
        cudasim_agent(s->agent)->live = false;
    cudasim_agent(c->legacy->agent)->live = false;
    c->magic = SIM_MAGIC_DEAD;
    return CUDA_SUCCESS;
}

CUresult cudasim_ctx_set_current(CUcontext h)
{
    struct sim_ctx *c = NULL;
    if (h && cudasim_check_ctx(h, &c))
        return CUDA_ERROR_INVALID_CONTEXT;
    tls_top();
    if (!c) {
        if (tls_ctx.depth)
            tls_ctx.depth--;
        return CUDA_SUCCESS;
    }
    if (tls_ctx.depth == 0)
        tls_ctx.depth = 1;
    tls_ctx.stack[tls_ctx.depth - 1] = c;
    return CUDA_SUCCESS;
}

CUresult cudasim_ctx_get_current(CUcontext *pctx)
{
    if (!pctx)
        return CUDA_ERROR_INVALID_VALUE;
    *pctx = (CUcontext)tls_top();
    return CUDA_SUCCESS;
}

CUresult cudasim_ctx_push(CUcontext h)
{
    struct sim_ctx *c;
    if (cudasim_check_ctx(h, &c))
        return CUDA_ERROR_INVALID_CONTEXT;
    tls_top();
    if (tls_ctx.depth == CTX_STACK_MAX)
        return CUDA_ERROR_OUT_OF_MEMORY;
    tls_ctx.stack[tls_ctx.depth++] = c;
    return CUDA_SUCCESS;
}

CUresult cudasim_ctx_pop(CUcontext *pctx)
{
    struct sim_ctx *c = tls_top();
    if (!c)
        return CUDA_ERROR_INVALID_CONTEXT;
    tls_ctx.depth--;
    if (pctx)
        *pctx = (CUcontext)c;
    return CUDA_SUCCESS;
}

CUresult cudasim_ctx_get_device(CUdevice *dev)
{
    if (!dev)
        return CUDA_ERROR_INVALID_VALUE;
    *dev = 0;
    return CUDA_SUCCESS;
}

CUresult cudasim_ctx_get_flags(unsigned *flags)
{
    if (!flags)
        return CUDA_ERROR_INVALID_VALUE;
    *flags = cudasim_current_ctx()->flags;
    return CUDA_SUCCESS;
}

CUresult cudasim_ctx_get_id(CUcontext h, unsigned long long *id)
{
    struct sim_ctx *c = h ? (struct sim_ctx *)h : cudasim_current_ctx();
    if (!id)
        return CUDA_ERROR_INVALID_VALUE;
    if (!c || c->magic != SIM_MAGIC_CTX)
        return CUDA_ERROR_INVALID_CONTEXT;
    *id = c->id;
    return CUDA_SUCCESS;
}

/* A device fault poisons the context, as on real hardware: every later call that
 * needs it returns the same error until the process starts over. */
CUresult cudasim_ctx_sticky_fault(struct sim_ctx *ctx)
{
    if (ctx)
        ctx->sticky = CUDA_ERROR_ILLEGAL_ADDRESS;
    G.illegal_address = true;
    return CUDA_ERROR_ILLEGAL_ADDRESS;
}
