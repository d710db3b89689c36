/* config.c: every BLOCKSWAP_* environment variable, in one table (name, type,
 * default, range, help), parsed strictly. A bad value is one line naming the
 * variable, the value and what is accepted; the caller then passes through. */
#define _GNU_SOURCE
#include "bs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern char **environ;

enum opt_type { OPT_BOOL, OPT_CHOICE, OPT_PATH, OPT_SIZE, OPT_SIZE_AUTO, OPT_COUNT,
                OPT_COUNT_AUTO, OPT_COUNT_AUTO_LIST };

/* OPT_CHOICE: the names, in the order of the enum the field holds (an int). */
static const char *const level_names[] = { "error", "warn", "info", "debug", NULL };
static const char *const meminfo_names[] = { "paged", "limit", "real", NULL };
static const char *const policy_names[] = { "stream", "sync", NULL };
static const char *const placement_names[] = { "spread", "last", NULL };

struct opt {
    const char *name;
    enum opt_type type;
    size_t offset;
    const char *def;
    uint64_t min, max; /* OPT_SIZE, OPT_COUNT: the range; OPT_PATH: max is the buffer size */
    const char *help;
    const char *const *choices; /* OPT_CHOICE */
};

#define OFF(field) offsetof(struct bs_config, field)

static const struct opt opts[] = {
    { "BLOCKSWAP_DISABLE", OPT_BOOL, OFF(disable), "0", 0, 0,
      "1 makes blockswap pure pass-through: every CUDA call goes straight to the driver.", NULL },
    { "BLOCKSWAP_VRAM_LIMIT", OPT_SIZE_AUTO, OFF(vram_limit), "auto", 2ull << 20, 1ull << 50,
      "VRAM the process may use, managed and unmanaged together; auto: the device's free "
      "memory when blockswap starts, minus BLOCKSWAP_RESERVE.", NULL },
    { "BLOCKSWAP_RESERVE", OPT_SIZE, OFF(reserve), "512M", 0, 1ull << 50,
      "With BLOCKSWAP_VRAM_LIMIT=auto, VRAM left for what blockswap cannot see (cuBLAS and "
      "cuDNN workspaces taken later, the driver, other processes).", NULL },
    { "BLOCKSWAP_MIN_BYTES", OPT_SIZE, OFF(min_bytes), "2M", 0, 1ull << 50,
      "Device allocations at least this large are managed (paged); smaller ones stay put. "
      "VRAM is mapped in 2 MiB pages, so smaller managed allocations would waste it.", NULL },
    { "BLOCKSWAP_HOST_LIMIT", OPT_SIZE_AUTO, OFF(host_limit), "auto", 0, 1ull << 50,
      "Host memory for evicted contents (host backing), pinned and pageable together; "
      "auto: physical RAM minus 4 GiB (half of it below 8 GiB).", NULL },
    { "BLOCKSWAP_PINNED_LIMIT", OPT_SIZE_AUTO, OFF(pinned_limit), "auto", 0, 1ull << 50,
      "How much of the host backing may be pinned (page-locked: the fastest copies, but "
      "RAM the system cannot swap out); beyond it, backing is ordinary pageable memory, "
      "copied in through the staging ring. The ring's pinned memory counts in it too. auto: "
      "half of MemAvailable when blockswap starts (half of physical RAM when /proc/meminfo "
      "cannot be read). 0: never pin.", NULL },
    { "BLOCKSWAP_STAGING_SIZE", OPT_SIZE, OFF(staging_size), "128M", 2ull << 20, 4ull << 30,
      "Pinned host memory through which weights backed by a file, or by pageable memory, "
      "are copied to the GPU: read into one part of it while another part is being copied. "
      "Taken at the first such copy and kept until exit; at most half of "
      "BLOCKSWAP_PINNED_LIMIT, and smaller when the system will not pin this much.", NULL },
    { "BLOCKSWAP_FILE_BACKING", OPT_BOOL, OFF(file_backing), "1", 0, 0,
      "1: a weight uploaded from a file mapping (safetensors, GGUF) is backed by the file: "
      "when evicted it is read back from the file rather than kept in host memory. 0 keeps "
      "an anonymous copy in host memory.", NULL },
    { "BLOCKSWAP_BLOCKS_TO_SWAP", OPT_COUNT_AUTO_LIST, OFF(blocks_to_swap), "auto", 0, 100000,
      "How many transformer blocks stream through VRAM (which ones: "
      "BLOCKSWAP_SWAP_PLACEMENT); the others stay resident. auto: the fewest that fit "
      "BLOCKSWAP_VRAM_LIMIT. One value for every model, or a comma-separated list (at most "
      "16), one per block stack in the order they are found (10,auto: the first model "
      "detected swaps 10, the next ones auto); a stack past the list's end uses the last "
      "value. The log names each stack with its index.", NULL },
    { "BLOCKSWAP_PREFETCH", OPT_COUNT, OFF(prefetch), "1", 0, 63,
      "How many swapped blocks are copied in ahead of the one computing, as the block-swap "
      "nodes' prefetch_blocks: the window of swapped blocks in VRAM or in flight at once is "
      "this plus one. 0: no look-ahead: each swapped block is copied when its block "
      "starts.", NULL },
    { "BLOCKSWAP_PAGER_THREAD", OPT_BOOL, OFF(pager_thread), "1", 0, 0,
      "1: a thread of blockswap's own evicts and prefetches swapped blocks, so that VMM "
      "calls stay off the application's launch path. 0: the launching thread does it "
      "(deterministic, for tests and debugging; slower on a real GPU).", NULL },
    { "BLOCKSWAP_SWAP_PLACEMENT", OPT_CHOICE, OFF(placement), "spread", 0, 0,
      "Which blocks BLOCKSWAP_BLOCKS_TO_SWAP streams. spread: k blocks evenly through the "
      "stack (one in N/k), so copies run beside the resident blocks' compute too and are "
      "hidden even when a block computes faster than it copies. last: the last k in "
      "execution order. The VRAM needed is the same.", placement_names },
    { "BLOCKSWAP_POLICY", OPT_CHOICE, OFF(policy), "stream", 0, 0,
      "stream: copy the next swapped blocks in while the current one computes, and copy "
      "back only what changed. sync: for comparison, what the Python block-swap nodes do "
      "(synchronise, copy in, compute, copy everything back, block by block).", policy_names },
    { "BLOCKSWAP_MEMINFO", OPT_CHOICE, OFF(meminfo), "paged", 0, 0,
      "What cuMemGetInfo reports: paged (free = the VRAM limit's free part plus the host "
      "backing still available, so an application that loads only what fits loads it all "
      "and lets blockswap page), limit (the VRAM limit only) or real (the driver's).", meminfo_names },
    { "BLOCKSWAP_LOG_LEVEL", OPT_CHOICE, OFF(log_level), "info", 0, 0,
      "How much blockswap logs: error, warn, info or debug.", level_names },
    { "BLOCKSWAP_LOG_FILE", OPT_PATH, OFF(log_file), "", 0, sizeof(((struct bs_config *)0)->log_file),
      "Append log lines to this file (created 0600, symlinks refused) instead of stderr.", NULL },
    { "BLOCKSWAP_TRACE", OPT_PATH, OFF(trace), "", 0, sizeof(((struct bs_config *)0)->trace),
      "Trace transfer and compute time per block and step, timed on the GPU: a path ending "
      "in .json gets a Chrome/Perfetto timeline, any other path a text log with one line per "
      "block per step; two paths separated by a comma give both. Files are created 0600 and "
      "symlinks are refused. See docs/tracing.md.", NULL },
    { "BLOCKSWAP_SCAN_LIMIT", OPT_SIZE, OFF(scan_limit), "32K", 0, 1u << 20,
      "Kernel parameter bytes searched for device pointers per launch (CUDA allows 32764).", NULL },
    { "BLOCKSWAP_CONTROL", OPT_BOOL, OFF(control), "1", 0, 0,
      "Serve blockswapctl (status, evict, trim, set blocks-to-swap) on a Unix socket only "
      "this user can reach: $XDG_RUNTIME_DIR/blockswap/<pid>.sock, or "
      "/tmp/blockswap-<uid>/<pid>.sock. 0: no socket, no thread. See docs/control.md.", NULL },
};

/* A choice's names joined by sep. */
static const char *join_choices(const struct opt *o, const char *sep, char *buf, size_t len)
{
    size_t at = 0;
    buf[0] = '\0';
    for (unsigned i = 0; o->choices[i] && at < len; i++)
        at += (size_t)snprintf(buf + at, len - at, "%s%s", i ? sep : "", o->choices[i]);
    return buf;
}

/* "a|b|c" for a choice, else the kind of value. */
static const char *type_name(const struct opt *o, char *buf, size_t len)
{
    switch (o->type) {
    case OPT_BOOL: return "bool";
    case OPT_CHOICE: return join_choices(o, "|", buf, len);
    case OPT_PATH: return "path";
    case OPT_SIZE: return "size";
    case OPT_SIZE_AUTO: return "size or auto";
    case OPT_COUNT: return "count";
    case OPT_COUNT_AUTO: return "count or auto";
    case OPT_COUNT_AUTO_LIST: return "count or auto, or a list of them";
    }
    return "?";
}

int bs_parse_size(const char *s, uint64_t *out)
{
    if (!s || *s < '0' || *s > '9')
        return -EINVAL;
    uint64_t v = 0;
    for (; *s >= '0' && *s <= '9'; s++) {
        if (v > (UINT64_MAX - 9) / 10)
            return -ERANGE;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    unsigned shift = 0;
    switch (*s) {
    case 'k': case 'K': shift = 10; s++; break;
    case 'm': case 'M': shift = 20; s++; break;
    case 'g': case 'G': shift = 30; s++; break;
    case 't': case 'T': shift = 40; s++; break;
    default: break;
    }
    /* Accept "G", "GB", "GiB" alike: all mean powers of 1024 here. */
    if (shift && s[0] == 'i' && s[1] == 'B')
        s += 2;
    else if (s[0] == 'B')
        s++;
    if (*s)
        return -EINVAL;
    if (shift && v > (UINT64_MAX >> shift))
        return -ERANGE;
    *out = v << shift;
    return 0;
}

static void format_size(uint64_t v, char *buf, size_t len)
{
    static const char suffix[] = "KMGT";
    int i = -1;
    while (v && (v & 1023) == 0 && i < 3) {
        v >>= 10;
        i++;
    }
    if (i < 0)
        snprintf(buf, len, "%llu", (unsigned long long)v);
    else
        snprintf(buf, len, "%llu%c", (unsigned long long)v, suffix[i]);
}

static int parse_opt(const struct opt *o, const char *value, struct bs_config *cfg,
                     char *err, size_t errlen)
{
    void *field = (char *)cfg + o->offset;
    switch (o->type) {
    case OPT_BOOL: {
        static const char *const yes[] = { "1", "true", "yes", "on" };
        static const char *const no[] = { "0", "false", "no", "off" };
        for (unsigned i = 0; i < 4; i++) {
            if (strcmp(value, yes[i]) == 0) { *(bool *)field = true; return 0; }
            if (strcmp(value, no[i]) == 0) { *(bool *)field = false; return 0; }
        }
        snprintf(err, errlen, "accepted: 1, 0, true, false, yes, no, on, off");
        return -EINVAL;
    }
    case OPT_CHOICE: {
        for (int i = 0; o->choices[i]; i++) {
            if (strcmp(value, o->choices[i]) == 0) {
                *(int *)field = i;
                return 0;
            }
        }
        char names[80];
        snprintf(err, errlen, "accepted: %s", join_choices(o, ", ", names, sizeof(names)));
        return -EINVAL;
    }
    case OPT_COUNT_AUTO_LIST: {
        /* Only BLOCKSWAP_BLOCKS_TO_SWAP is a list: its items go to blocks_to_swap_list,
         * the first to the field itself. Each item as an OPT_COUNT_AUTO. */
        struct opt one = *o;
        one.type = OPT_COUNT_AUTO;
        uint64_t v[BS_MAX_STACK_COUNTS];
        int n = 0;
        bool list = strchr(value, ',') != NULL;
        for (const char *p = value;; n++) {
            size_t len = strcspn(p, ",");
            char item[24], why[160];
            if (n == BS_MAX_STACK_COUNTS) {
                snprintf(err, errlen, "accepted: at most %d values, one per block stack",
                         BS_MAX_STACK_COUNTS);
                return -EINVAL;
            }
            snprintf(item, sizeof(item), "%.*s", (int)(len < sizeof(item) ? len : sizeof(item) - 1), p);
            struct bs_config tmp;
            one.offset = OFF(blocks_to_swap);
            int r = len && len < sizeof(item) ? parse_opt(&one, item, &tmp, why, sizeof(why)) : -EINVAL;
            if (r < 0) {
                if (!list)
                    return parse_opt(&one, value, &tmp, err, errlen); /* the one value's message */
                snprintf(why, sizeof(why), "accepted: auto or a whole number from %llu to %llu",
                         (unsigned long long)o->min, (unsigned long long)o->max);
                snprintf(err, errlen, "item %d (%s%.*s%s): %s", n + 1, len ? "\"" : "empty",
                         len ? (int)(len > 20 ? 20 : len) : 0, p, len ? "\"" : "", why);
                return -EINVAL;
            }
            v[n] = tmp.blocks_to_swap;
            if (!p[len]) {
                n++;
                break;
            }
            p += len + 1;
        }
        cfg->blocks_to_swap = v[0];
        memcpy(cfg->blocks_to_swap_list, v, (size_t)n * sizeof(v[0]));
        cfg->blocks_to_swap_n = n;
        return 0;
    }
    case OPT_COUNT_AUTO:
    case OPT_COUNT: {
        if (o->type == OPT_COUNT_AUTO && strcmp(value, "auto") == 0) {
            *(uint64_t *)field = BS_SIZE_AUTO;
            return 0;
        }
        uint64_t v = 0;
        const char *c = value;
        for (; *c >= '0' && *c <= '9' && v <= o->max; c++)
            v = v * 10 + (uint64_t)(*c - '0');
        if (c == value || *c || v < o->min || v > o->max) {
            snprintf(err, errlen, "accepted: %sa whole number from %llu to %llu",
                     o->type == OPT_COUNT_AUTO ? "auto or " : "",
                     (unsigned long long)o->min, (unsigned long long)o->max);
            return -EINVAL;
        }
        *(uint64_t *)field = v;
        return 0;
    }
    case OPT_PATH: {
        size_t n = strlen(value);
        if (n >= o->max) {
            snprintf(err, errlen, "accepted: a path shorter than %llu bytes",
                     (unsigned long long)o->max);
            return -EINVAL;
        }
        memcpy(field, value, n + 1);
        return 0;
    }
    case OPT_SIZE_AUTO:
        if (strcmp(value, "auto") == 0) {
            *(uint64_t *)field = BS_SIZE_AUTO;
            return 0;
        }
        /* fall through */
    case OPT_SIZE: {
        uint64_t v;
        char lo[32], hi[32];
        format_size(o->min, lo, sizeof(lo));
        format_size(o->max, hi, sizeof(hi));
        if (bs_parse_size(value, &v) < 0 || v < o->min || v > o->max) {
            snprintf(err, errlen, "accepted: %sa size from %s to %s bytes, digits with an "
                     "optional K, M, G or T suffix (powers of 1024)",
                     o->type == OPT_SIZE_AUTO ? "auto or " : "", lo, hi);
            return -EINVAL;
        }
        *(uint64_t *)field = v;
        return 0;
    }
    }
    return -EINVAL;
}

void bs_config_defaults(struct bs_config *cfg)
{
    char err[160];
    memset(cfg, 0, sizeof(*cfg));
    for (unsigned i = 0; i < BS_ARRAY_SIZE(opts); i++)
        parse_opt(&opts[i], opts[i].def, cfg, err, sizeof(err));
}

int bs_config_set(struct bs_config *cfg, const char *name, const char *value,
                  char *err, size_t errlen)
{
    for (unsigned i = 0; i < BS_ARRAY_SIZE(opts); i++)
        if (strcmp(opts[i].name, name) == 0)
            return parse_opt(&opts[i], value, cfg, err, errlen);
    snprintf(err, errlen, "unknown variable");
    return -ENOENT;
}

int bs_config_load(struct bs_config *cfg)
{
    int bad = 0;
    char err[200];
    for (unsigned i = 0; i < BS_ARRAY_SIZE(opts); i++) {
        const char *v = getenv(opts[i].name);
        if (!v)
            continue;
        if (parse_opt(&opts[i], v, cfg, err, sizeof(err)) < 0) {
            bs_log(BS_LOG_ERROR, "%s=%s is not valid; %s", opts[i].name, v, err);
            bad++;
        }
    }
    /* A typo must not silently do nothing. */
    for (char **e = environ; e && *e; e++) {
        if (strncmp(*e, "BLOCKSWAP_", 10) != 0)
            continue;
        size_t len = strcspn(*e, "=");
        bool known = false;
        for (unsigned i = 0; i < BS_ARRAY_SIZE(opts) && !known; i++)
            known = strlen(opts[i].name) == len && strncmp(opts[i].name, *e, len) == 0;
        if (!known)
            bs_log(BS_LOG_WARN, "unknown variable %.*s is ignored (the reference is in "
                   "docs/configuration.md)", (int)len, *e);
    }
    return bad;
}

void bs_config_print_help(int fd)
{
    for (unsigned i = 0; i < BS_ARRAY_SIZE(opts); i++) {
        const struct opt *o = &opts[i];
        char range[80] = "";
        if (o->type == OPT_COUNT || o->type == OPT_COUNT_AUTO || o->type == OPT_COUNT_AUTO_LIST) {
            snprintf(range, sizeof(range), ", %llu..%llu", (unsigned long long)o->min,
                     (unsigned long long)o->max);
        } else if (o->type == OPT_SIZE || o->type == OPT_SIZE_AUTO) {
            char lo[32], hi[32];
            format_size(o->min, lo, sizeof(lo));
            format_size(o->max, hi, sizeof(hi));
            snprintf(range, sizeof(range), ", %s..%s", lo, hi);
        }
        char names[80];
        dprintf(fd, "%s (%s, default \"%s\"%s)\n    %s\n", o->name,
                type_name(o, names, sizeof(names)), o->def, range, o->help);
    }
}
