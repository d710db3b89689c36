/* interpose/hook.h: what every hand-written hook file needs: the wrappers' declarations
 * with their real prototypes (from hooks.def) and the opening of a hook. */
#ifndef BS_HOOK_H
#define BS_HOOK_H

#include "bs.h"

#define BS_HOOK(name, pfn) typedef __typeof__(*(pfn)0) bs_fn_##name; BS_EXPORT bs_fn_##name name;
#include "interpose/hooks.def"
#undef BS_HOOK

/* Opens a hook: counts the call, fetches the real function into `real`, and
 * returns what the driver would when the function is missing. */
#define HOOK_BEGIN(name)                                                       \
    bs_count_call(BS_ID_##name);                                               \
    __typeof__(bs_real.name) real = BS_REAL(name);                             \
    if (BS_UNLIKELY(!real))                                                    \
        return bs_missing(BS_ID_##name)

/* True when this call should be tracked (the shim is not in pass-through). The shim's
 * own driver calls go through bs_real/bs_drv and never reach a wrapper. */
static inline bool tracking(void)
{
    return bs_active();
}

/* interpose/peers.c: true once another pager of GPU memory (comfy-aimdo) is loaded
 * in the process; logged once. Looks at the loaded objects only when their count
 * changed. Allocation hooks then leave new allocations to the driver. */
bool bs_peers_aside(void);

/* True when blockswap must leave this allocation alone: pass-through, or a peer. */
static inline bool standing_aside(void)
{
    return !tracking() || bs_peers_aside();
}

/* True when the call may touch managed memory and so must go through page/. */
static inline bool paging(void)
{
    return tracking() && bs_page_managed_any();
}

#endif
