/* trace/trace.h: what trace/ offers page/ (the points it times, set-up, close and
 * totals, all called under the page lock, which serialises trace/'s state too). */
#ifndef BS_TRACE_TRACE_H
#define BS_TRACE_TRACE_H

#include "bs.h"
#include "page/page.h"

struct bs_trace_totals {
    uint64_t steps;
    uint64_t in_ns, out_ns, compute_ns, stall_ns;
    uint64_t in_bytes;
};

/* Opens the files of BLOCKSWAP_TRACE; a bad value or an unwritable path is one log
 * line and tracing stays off. Called once, at the first managed allocation. */
void bs_trace_setup(void);
/* Tracing is on and working; read under the page lock (launch paths test it first, so
 * with tracing off a launch pays one load). */
extern bool bs_trace_live;
static inline bool bs_trace_on(void)
{
    return bs_trace_live;
}
/* Splits a BLOCKSWAP_TRACE value into its text and .json paths ("" when absent),
 * replacing %p with the process id. Returns 0, -EINVAL or -ENAMETOOLONG. */
int bs_trace_parse_paths(const char *spec, char *text, size_t text_cap, char *json,
                         size_t json_cap);

/* Copies of m's contents on the shim's streams: before and after each. */
void bs_trace_in_begin(struct managed *m, CUstream s);
void bs_trace_in_end(struct managed *m, CUstream s);
/* Around a batch of copies on one stream (the pager's window fill). */
void bs_trace_in_batch(bool begin);
void bs_trace_out_begin(struct managed *m, CUstream s);
void bs_trace_out_end(struct managed *m, CUstream s);
/* m's write-back was found needless (fingerprint unchanged). */
void bs_trace_skipped(struct managed *m);
/* m is being evicted; s is where the wait for its users was queued. */
void bs_trace_evict(struct managed *m, CUstream s);

/* A launch touching block member m on stream s: at its start (before any waiting;
 * may_wait: some of its weights are absent or still being copied), once they are
 * resident and waited for, and after the launch was issued. */
void bs_trace_launch_begin(struct managed *m, CUstream s, bool capturing, bool may_wait);
void bs_trace_launch_ready(void);
void bs_trace_launch_end(void);
void bs_trace_launch_cancel(void);

void bs_trace_totals(struct bs_trace_totals *t);
void bs_trace_reset(void);
/* Writes the last records and closes the files (at exit). */
void bs_trace_close(void);

#endif
