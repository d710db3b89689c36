/* CUDASIM_* environment variables: one table (name, kind, default, help), strict
 * parsing, and for a bad value one message naming the variable, the value and what
 * is accepted, after which the default applies. Read once, at cuInit. */
#include "sim.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum kind { K_SIZE, K_GBPS, K_NS, K_BOOL, K_PATH, K_RACE };

static const struct option {
    const char *name;
    enum kind kind;
    const char *def;
    const char *accepted;
} options[] = {
    {"CUDASIM_VRAM", K_SIZE, "8G",
     "a positive byte count with an optional K, M, G or T suffix (powers of 1024), e.g. 8G"},
    {"CUDASIM_PCIE_GBPS", K_GBPS, "25", "a positive number of GB/s (1 GB = 1e9 bytes), e.g. 25"},
    {"CUDASIM_HBM_GBPS", K_GBPS, "3000", "a positive number of GB/s (1 GB = 1e9 bytes), e.g. 3000"},
    {"CUDASIM_API_NS", K_NS, "0", "a whole number of nanoseconds, 0 or more"},
    {"CUDASIM_VERBOSE", K_BOOL, "0", "0 or 1"},
    {"CUDASIM_RACECHECK", K_BOOL, "1", "0 or 1"},
    {"CUDASIM_RACE", K_RACE, "order", "order or time"},
    {"CUDASIM_REPORT", K_PATH, "", "a file path (empty: no report)"},
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
        else
            cfg->racecheck = s[0] == '1';
        return 0;
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
}
