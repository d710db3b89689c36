/* CUDASIM_* environment variables: one table (name, kind, default, help), strict
 * parsing, and for a bad value one message naming the variable, the value and what
 * is accepted, after which the default applies. Read once, at cuInit. */
#include "sim.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum kind { K_SIZE, K_GBPS, K_NS, K_BOOL, K_PATH, K_RACE, K_COST };

#define FLAT "a whole number of nanoseconds per call, 0 or more"
#define SIZED                                                                          \
    "nanoseconds per call and/or per 2 MiB of the call's size: N, M/2M or N+M/2M "     \
    "(whole numbers, 0 or more), e.g. 40000/2M"

/* Host costs (clock.c; docs/simulator.md says where each default comes from). */
static const struct option {
    const char *name;
    enum kind kind;
    const char *def;
    const char *accepted;
    int cost; /* K_COST: enum sim_cost */
} options[] = {
    {"CUDASIM_VRAM", K_SIZE, "8G",
     "a positive byte count with an optional K, M, G or T suffix (powers of 1024), e.g. 8G", 0},
    {"CUDASIM_PCIE_GBPS", K_GBPS, "25", "a positive number of GB/s (1 GB = 1e9 bytes), e.g. 25", 0},
    {"CUDASIM_HBM_GBPS", K_GBPS, "3000", "a positive number of GB/s (1 GB = 1e9 bytes), e.g. 3000", 0},
    {"CUDASIM_PAGEABLE_GBPS", K_GBPS, "10", "a positive number of GB/s (1 GB = 1e9 bytes), e.g. 10", 0},
    {"CUDASIM_API_NS", K_NS, "0", "a whole number of nanoseconds, 0 or more", 0},
    {"CUDASIM_VERBOSE", K_BOOL, "0", "0 or 1", 0},
    {"CUDASIM_RACECHECK", K_BOOL, "1", "0 or 1", 0},
    {"CUDASIM_RACE", K_RACE, "order", "order or time", 0},
    {"CUDASIM_REPORT", K_PATH, "", "a file path (empty: no report)", 0},
    {"CUDASIM_COSTS", K_BOOL, "1", "0 or 1", 0},
    {"CUDASIM_HOST_CPU", K_BOOL, "0", "0 or 1", 0},
    {"CUDASIM_COST_LAUNCH", K_COST, "3000", FLAT, SIM_COST_LAUNCH},
    {"CUDASIM_COST_COPY", K_COST, "3000", FLAT, SIM_COST_COPY},
    {"CUDASIM_COST_MEMSET", K_COST, "3000", FLAT, SIM_COST_MEMSET},
    {"CUDASIM_COST_EVENT", K_COST, "1000", FLAT, SIM_COST_EVENT},
    {"CUDASIM_COST_STREAM", K_COST, "1000", FLAT, SIM_COST_STREAM},
    {"CUDASIM_COST_MEM_CREATE", K_COST, "40000/2M", SIZED, SIM_COST_MEM_CREATE},
    {"CUDASIM_COST_MEM_MAP", K_COST, "1500/2M", SIZED, SIM_COST_MEM_MAP},
    {"CUDASIM_COST_MEM_SET_ACCESS", K_COST, "30000/2M", SIZED, SIM_COST_MEM_SET_ACCESS},
    {"CUDASIM_COST_MEM_UNMAP", K_COST, "20000/2M", SIZED, SIM_COST_MEM_UNMAP},
    {"CUDASIM_COST_MEM_RELEASE", K_COST, "10000/2M", SIZED, SIM_COST_MEM_RELEASE},
    {"CUDASIM_COST_ADDRESS_RESERVE", K_COST, "2000", SIZED, SIM_COST_ADDRESS_RESERVE},
    {"CUDASIM_COST_ADDRESS_FREE", K_COST, "2000", SIZED, SIM_COST_ADDRESS_FREE},
};

int cudasim_parse_size(const char *s, uint64_t *out)
{
    char *end;
    if (!s || *s < '0' || *s > '9')
        return -EINVAL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno)
        return -ERANGE;
    unsigned shift = 0;
    switch (*end) {
    case 'k': case 'K': shift = 10; end++; break;
    case 'm': case 'M': shift = 20; end++; break;
    case 'g': case 'G': shift = 30; end++; break;
    case 't': case 'T': shift = 40; end++; break;
    default: break;
    }
    /* Tolerate the unit spellings people write: 8G, 8GB, 8GiB. */
    if (shift && (end[0] == 'i' || end[0] == 'I') && (end[1] == 'b' || end[1] == 'B'))
        end += 2;
    else if (shift && (end[0] == 'b' || end[0] == 'B'))
        end++;
    if (*end != '\0')
        return -EINVAL;
    if (shift && v > (UINT64_MAX >> shift))
        return -ERANGE;
    *out = (uint64_t)v << shift;
    return 0;
}

static int parse_ns(const char **p, uint64_t *out)
{
    char *end;
    if (**p < '0' || **p > '9')
        return -EINVAL;
    errno = 0;
    unsigned long long v = strtoull(*p, &end, 10);
    if (errno)
        return -ERANGE;
    *out = v;
    *p = end;
    return 0;
}

/* N, M/2M or N+M/2M; the per-size part only for the VMM calls. */
static int parse_cost(const char *s, bool sized, struct sim_cost_cfg *out)
{
    struct sim_cost_cfg c = {0, 0};
    uint64_t v;
    if (parse_ns(&s, &v))
        return -EINVAL;
    if (*s == '+') {
        c.fixed = v;
        s++;
        if (parse_ns(&s, &v) || strcmp(s, "/2M") != 0)
            return -EINVAL;
        c.per_2m = v;
    } else if (strcmp(s, "/2M") == 0) {
        c.per_2m = v;
    } else if (*s == '\0') {
        c.fixed = v;
    } else {
        return -EINVAL;
    }
    if (c.per_2m && !sized)
        return -EINVAL;
    *out = c;
    return 0;
}

/* CUDASIM_COSTS=0: every cost not set by its own variable is zero. */
static bool costs_on;

static int parse(const struct option *o, const char *s, struct cudasim_config *cfg)
{
    uint64_t u;
    char *end;
    double d;

    switch (o->kind) {
    case K_SIZE:
        if (cudasim_parse_size(s, &u) || u == 0)
            return -EINVAL;
        cfg->vram_bytes = u;
        return 0;
    case K_GBPS:
        errno = 0;
        d = strtod(s, &end);
        if (errno || end == s || *end || !isfinite(d) || d <= 0)
            return -EINVAL;
        if (strcmp(o->name, "CUDASIM_PCIE_GBPS") == 0)
            cfg->pcie_gbps = d;
        else if (strcmp(o->name, "CUDASIM_PAGEABLE_GBPS") == 0)
            cfg->pageable_gbps = d;
        else
            cfg->hbm_gbps = d;
        return 0;
    case K_NS:
        if (*s < '0' || *s > '9')
            return -EINVAL;
        errno = 0;
        u = strtoull(s, &end, 10);
        if (errno || *end)
            return -EINVAL;
        cfg->api_ns = u;
        return 0;
    case K_BOOL:
        if (strcmp(s, "0") && strcmp(s, "1"))
            return -EINVAL;
        if (strcmp(o->name, "CUDASIM_VERBOSE") == 0)
            cfg->verbose = s[0] == '1';
        else if (strcmp(o->name, "CUDASIM_COSTS") == 0)
            costs_on = s[0] == '1';
        else if (strcmp(o->name, "CUDASIM_HOST_CPU") == 0)
            cfg->host_cpu = s[0] == '1';
        else
            cfg->racecheck = s[0] == '1';
        return 0;
    case K_COST:
        return parse_cost(s, o->cost >= SIM_COST_MEM_CREATE, &cfg->cost[o->cost]);
    case K_RACE:
        /* order: a release must be ordered after every use (happens-before); time:
         * only uses still running in virtual time count (the old, weaker check). */
        if (strcmp(s, "order") && strcmp(s, "time"))
            return -EINVAL;
        cfg->race_time = s[0] == 't';
        return 0;
    case K_PATH:
        if (strlen(s) >= sizeof(cfg->report_path))
            return -EINVAL;
        snprintf(cfg->report_path, sizeof(cfg->report_path), "%s", s);
        return 0;
    }
    return -EINVAL;
}

void cudasim_config_load(struct cudasim_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    for (size_t i = 0; i < sizeof(options) / sizeof(options[0]); i++) {
        const struct option *o = &options[i];
        int r = parse(o, o->def, cfg);
        (void)r; /* the defaults parse */
        const char *v = getenv(o->name);
        if (!v)
            continue;
        if (parse(o, v, cfg) != 0) {
            cudasim_warn("%s=\"%s\" is not valid: expected %s; using the default %s", o->name, v,
                         o->accepted, o->def[0] ? o->def : "(none)");
            parse(o, o->def, cfg);
        }
    }
    for (size_t i = 0; i < sizeof(options) / sizeof(options[0]) && !costs_on; i++) {
        const struct option *o = &options[i];
        const char *v = getenv(o->name);
        if (o->kind == K_COST && !(v && parse(o, v, cfg) == 0))
            cfg->cost[o->cost] = (struct sim_cost_cfg){0, 0};
    }
}
