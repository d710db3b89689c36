/* cuGetProcAddress: a table built from exports.def that maps a base name and the
 * caller's CUDA version (and per-thread-stream flag) to the exported symbol, plus the
 * error name/string table. Both work before cuInit and take no lock. */
#include "sim.h"

#include <string.h>

#include "exports.h"

static const struct proc {
    const char *base;
    int version;
    bool per_thread; /* a _ptds/_ptsz variant */
    void *fn;
} procs[] = {
/* &sym is the exported function itself (-Bsymbolic-functions binds it locally), so
 * a caller can match the address against dlsym() on this library. */
#define SIM_API(base, ver, sym, var) {#base, ver, sizeof(#var) > 1, (void *)&sym},
#include "exports.def"
#undef SIM_API
};

/* Not a CUDA entry point: the simulator's memory counters, for programs that print
 * them beside /proc's figures (docs/simulator.md, Memory counters). Reached only
 * here, never exported; NVIDIA's driver answers this name with CUDA_ERROR_NOT_FOUND,
 * which is how a program knows it is not on the simulator. */
static const char counters_name[] = "cudasimGetMemCounters";

CUresult cudasim_get_proc_address(const char *symbol, void **pfn, int version, cuuint64_t flags,
                                  CUdriverProcAddressQueryResult *status)
{
    const struct proc *best = NULL, *best_pt = NULL;
    bool known = false;

    if (status)
        *status = CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND;
    if (!symbol || !pfn ||
        (flags & ~(cuuint64_t)(CU_GET_PROC_ADDRESS_LEGACY_STREAM | CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM)))
        return CUDA_ERROR_INVALID_VALUE;
    *pfn = NULL;
    if (strcmp(symbol, counters_name) == 0) {
        *pfn = (void *)&cudasim_mem_counters;
        if (status)
            *status = CU_GET_PROC_ADDRESS_SUCCESS;
        return CUDA_SUCCESS;
    }
    for (size_t i = 0; i < sizeof(procs) / sizeof(procs[0]); i++) {
        const struct proc *p = &procs[i];
        if (strcmp(p->base, symbol) != 0)
            continue;
        known = true;
        if (p->version > version)
            continue;
        const struct proc **slot = p->per_thread ? &best_pt : &best;
        if (!*slot || p->version > (*slot)->version)
            *slot = p;
    }
    /* CU_GET_PROC_ADDRESS_DEFAULT is treated as legacy-stream semantics. A name with
     * no per-thread variant (at this version) resolves to its ordinary symbol. */
    if ((flags & CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM) && best_pt)
        best = best_pt;
    if (!best) {
        if (status && known)
            *status = CU_GET_PROC_ADDRESS_VERSION_NOT_SUFFICIENT;
        return CUDA_ERROR_NOT_FOUND;
    }
    *pfn = best->fn;
    if (status)
        *status = CU_GET_PROC_ADDRESS_SUCCESS;
    return CUDA_SUCCESS;
}

/* ---- error names and strings --------------------------------------------------- */

static const struct {
    CUresult code;
    const char *name, *desc;
} errors[] = {
#define E(c, d) {c, #c, d}
    E(CUDA_SUCCESS, "no error"),
    E(CUDA_ERROR_INVALID_VALUE, "invalid argument"),
    E(CUDA_ERROR_OUT_OF_MEMORY, "out of memory"),
    E(CUDA_ERROR_NOT_INITIALIZED, "initialization error (cuInit has not been called)"),
    E(CUDA_ERROR_DEINITIALIZED, "deinitialized"),
    E(CUDA_ERROR_PROFILER_DISABLED, "profiler disabled"),
    E(CUDA_ERROR_PROFILER_NOT_INITIALIZED, "profiler not initialized"),
    E(CUDA_ERROR_PROFILER_ALREADY_STARTED, "profiler already started"),
    E(CUDA_ERROR_PROFILER_ALREADY_STOPPED, "profiler already stopped"),
    E(CUDA_ERROR_STUB_LIBRARY, "stub library"),
    E(CUDA_ERROR_CALL_REQUIRES_NEWER_DRIVER, "call requires newer driver"),
    E(CUDA_ERROR_DEVICE_UNAVAILABLE, "device unavailable"),
    E(CUDA_ERROR_NO_DEVICE, "no device"),
    E(CUDA_ERROR_INVALID_DEVICE, "invalid device ordinal"),
    E(CUDA_ERROR_DEVICE_NOT_LICENSED, "device not licensed"),
    E(CUDA_ERROR_INVALID_IMAGE, "device kernel image is invalid"),
    E(CUDA_ERROR_INVALID_CONTEXT, "invalid device context"),
    E(CUDA_ERROR_CONTEXT_ALREADY_CURRENT, "context already current"),
    E(CUDA_ERROR_MAP_FAILED, "map failed"),
    E(CUDA_ERROR_UNMAP_FAILED, "unmap failed"),
    E(CUDA_ERROR_ARRAY_IS_MAPPED, "array is mapped"),
    E(CUDA_ERROR_ALREADY_MAPPED, "already mapped"),
    E(CUDA_ERROR_NO_BINARY_FOR_GPU, "no binary for gpu"),
    E(CUDA_ERROR_ALREADY_ACQUIRED, "already acquired"),
    E(CUDA_ERROR_NOT_MAPPED, "not mapped"),
    E(CUDA_ERROR_NOT_MAPPED_AS_ARRAY, "not mapped as array"),
    E(CUDA_ERROR_NOT_MAPPED_AS_POINTER, "not mapped as pointer"),
    E(CUDA_ERROR_ECC_UNCORRECTABLE, "ecc uncorrectable"),
    E(CUDA_ERROR_UNSUPPORTED_LIMIT, "unsupported limit"),
    E(CUDA_ERROR_CONTEXT_ALREADY_IN_USE, "context already in use"),
    E(CUDA_ERROR_PEER_ACCESS_UNSUPPORTED, "peer access unsupported"),
    E(CUDA_ERROR_INVALID_PTX, "invalid ptx"),
    E(CUDA_ERROR_INVALID_GRAPHICS_CONTEXT, "invalid graphics context"),
    E(CUDA_ERROR_NVLINK_UNCORRECTABLE, "nvlink uncorrectable"),
    E(CUDA_ERROR_JIT_COMPILER_NOT_FOUND, "jit compiler not found"),
    E(CUDA_ERROR_UNSUPPORTED_PTX_VERSION, "unsupported ptx version"),
    E(CUDA_ERROR_JIT_COMPILATION_DISABLED, "jit compilation disabled"),
    E(CUDA_ERROR_UNSUPPORTED_EXEC_AFFINITY, "unsupported exec affinity"),
    E(CUDA_ERROR_UNSUPPORTED_DEVSIDE_SYNC, "unsupported devside sync"),
    E(CUDA_ERROR_CONTAINED, "contained"),
    E(CUDA_ERROR_INVALID_SOURCE, "invalid source"),
    E(CUDA_ERROR_FILE_NOT_FOUND, "file not found"),
    E(CUDA_ERROR_SHARED_OBJECT_SYMBOL_NOT_FOUND, "shared object symbol not found"),
    E(CUDA_ERROR_SHARED_OBJECT_INIT_FAILED, "shared object init failed"),
    E(CUDA_ERROR_OPERATING_SYSTEM, "operating system"),
    E(CUDA_ERROR_INVALID_HANDLE, "invalid resource handle"),
    E(CUDA_ERROR_ILLEGAL_STATE, "illegal state"),
    E(CUDA_ERROR_LOSSY_QUERY, "lossy query"),
    E(CUDA_ERROR_NOT_FOUND, "named symbol not found"),
    E(CUDA_ERROR_NOT_READY, "device not ready"),
    E(CUDA_ERROR_ILLEGAL_ADDRESS, "an illegal memory access was encountered"),
    E(CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES, "launch out of resources"),
    E(CUDA_ERROR_LAUNCH_TIMEOUT, "launch timeout"),
    E(CUDA_ERROR_LAUNCH_INCOMPATIBLE_TEXTURING, "launch incompatible texturing"),
    E(CUDA_ERROR_PEER_ACCESS_ALREADY_ENABLED, "peer access already enabled"),
    E(CUDA_ERROR_PEER_ACCESS_NOT_ENABLED, "peer access not enabled"),
    E(CUDA_ERROR_PRIMARY_CONTEXT_ACTIVE, "primary context active"),
    E(CUDA_ERROR_CONTEXT_IS_DESTROYED, "context is destroyed"),
    E(CUDA_ERROR_ASSERT, "assert"),
    E(CUDA_ERROR_TOO_MANY_PEERS, "too many peers"),
    E(CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED, "host memory already registered"),
    E(CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED, "host memory not registered"),
    E(CUDA_ERROR_HARDWARE_STACK_ERROR, "hardware stack error"),
    E(CUDA_ERROR_ILLEGAL_INSTRUCTION, "illegal instruction"),
    E(CUDA_ERROR_MISALIGNED_ADDRESS, "misaligned address"),
    E(CUDA_ERROR_INVALID_ADDRESS_SPACE, "invalid address space"),
    E(CUDA_ERROR_INVALID_PC, "invalid pc"),
    E(CUDA_ERROR_LAUNCH_FAILED, "launch failed"),
    E(CUDA_ERROR_COOPERATIVE_LAUNCH_TOO_LARGE, "cooperative launch too large"),
    E(CUDA_ERROR_TENSOR_MEMORY_LEAK, "tensor memory leak"),
    E(CUDA_ERROR_NOT_PERMITTED, "not permitted"),
    E(CUDA_ERROR_NOT_SUPPORTED, "operation not supported"),
    E(CUDA_ERROR_SYSTEM_NOT_READY, "system not ready"),
    E(CUDA_ERROR_SYSTEM_DRIVER_MISMATCH, "system driver mismatch"),
    E(CUDA_ERROR_COMPAT_NOT_SUPPORTED_ON_DEVICE, "compat not supported on device"),
    E(CUDA_ERROR_MPS_CONNECTION_FAILED, "mps connection failed"),
    E(CUDA_ERROR_MPS_RPC_FAILURE, "mps rpc failure"),
    E(CUDA_ERROR_MPS_SERVER_NOT_READY, "mps server not ready"),
    E(CUDA_ERROR_MPS_MAX_CLIENTS_REACHED, "mps max clients reached"),
    E(CUDA_ERROR_MPS_MAX_CONNECTIONS_REACHED, "mps max connections reached"),
    E(CUDA_ERROR_MPS_CLIENT_TERMINATED, "mps client terminated"),
    E(CUDA_ERROR_CDP_NOT_SUPPORTED, "cdp not supported"),
    E(CUDA_ERROR_CDP_VERSION_MISMATCH, "cdp version mismatch"),
    E(CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED, "operation not permitted when stream is capturing"),
    E(CUDA_ERROR_STREAM_CAPTURE_INVALIDATED, "stream capture invalidated"),
    E(CUDA_ERROR_STREAM_CAPTURE_MERGE, "stream capture merge"),
    E(CUDA_ERROR_STREAM_CAPTURE_UNMATCHED, "stream capture unmatched"),
    E(CUDA_ERROR_STREAM_CAPTURE_UNJOINED, "stream capture unjoined"),
    E(CUDA_ERROR_STREAM_CAPTURE_ISOLATION, "stream capture isolation"),
    E(CUDA_ERROR_STREAM_CAPTURE_IMPLICIT, "stream capture implicit"),
    E(CUDA_ERROR_CAPTURED_EVENT, "captured event"),
    E(CUDA_ERROR_STREAM_CAPTURE_WRONG_THREAD, "stream capture wrong thread"),
    E(CUDA_ERROR_TIMEOUT, "timeout"),
    E(CUDA_ERROR_GRAPH_EXEC_UPDATE_FAILURE, "graph exec update failure"),
    E(CUDA_ERROR_EXTERNAL_DEVICE, "external device"),
    E(CUDA_ERROR_INVALID_CLUSTER_SIZE, "invalid cluster size"),
    E(CUDA_ERROR_FUNCTION_NOT_LOADED, "function not loaded"),
    E(CUDA_ERROR_INVALID_RESOURCE_TYPE, "invalid resource type"),
    E(CUDA_ERROR_INVALID_RESOURCE_CONFIGURATION, "invalid resource configuration"),
    E(CUDA_ERROR_KEY_ROTATION, "key rotation"),
    E(CUDA_ERROR_UNKNOWN, "unknown error"),
#undef E
};

CUresult cudasim_error_name(CUresult err, const char **s)
{
    if (!s)
        return CUDA_ERROR_INVALID_VALUE;
    for (size_t i = 0; i < sizeof(errors) / sizeof(errors[0]); i++)
        if (errors[i].code == err) {
            *s = errors[i].name;
            return CUDA_SUCCESS;
        }
    *s = NULL;
    return CUDA_ERROR_INVALID_VALUE;
}

CUresult cudasim_error_string(CUresult err, const char **s)
{
    if (!s)
        return CUDA_ERROR_INVALID_VALUE;
    for (size_t i = 0; i < sizeof(errors) / sizeof(errors[0]); i++)
        if (errors[i].code == err) {
            *s = errors[i].desc;
            return CUDA_SUCCESS;
        }
    *s = NULL;
    return CUDA_ERROR_INVALID_VALUE;
}

const char *cudasim_error_name_or(CUresult err)
{
    const char *s;
    return cudasim_error_name(err, &s) == CUDA_SUCCESS ? s : "CUDA_ERROR_?";
}
