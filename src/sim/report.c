/* Diagnostics and the exit report: `cudasim: error:` lines (counted, the first one
 * kept, printing capped), warnings, verbose op logs, and the CUDASIM_REPORT JSON
 * written at exit. Formats into fixed buffers; never allocates. */
#include "sim.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A racy loop can report thousands of times; the count keeps growing, the log not. */
#define PRINTED_ERRORS_MAX 100

/* Survives fork on purpose: the atexit handler is inherited with it. */
static bool atexit_registered;

static void vput(const char *prefix, const char *fmt, va_list ap, char *keep, size_t keeplen)
{
    char buf[1024];
    vsnprintf(buf, sizeof(buf), fmt, ap);
    if (keep)
        snprintf(keep, keeplen, "%s", buf);
    fprintf(stderr, "cudasim: %s%s\n", prefix, buf);
}

void cudasim_error(const char *fmt, ...)
{
    va_list ap;
    char buf[1024];
    G.errors++;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (!G.has_first_error) {
        G.has_first_error = true;
        snprintf(G.first_error, sizeof(G.first_error), "%s", buf);
    }
    if (G.printed_errors < PRINTED_ERRORS_MAX)
        fprintf(stderr, "cudasim: error: %s\n", buf);
    else if (G.printed_errors == PRINTED_ERRORS_MAX)
        fprintf(stderr, "cudasim: error: more than %d errors; counting the rest without printing\n",
                PRINTED_ERRORS_MAX);
    G.printed_errors++;
}

void cudasim_warn(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vput("warning: ", fmt, ap, NULL, 0);
    va_end(ap);
}

void cudasim_verbose(const char *fmt, ...)
{
    va_list ap;
    if (!G.cfg.verbose)
        return;
    va_start(ap, fmt);
    char buf[1024];
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    struct sim_thread *t = cudasim_thread();
    fprintf(stderr, "cudasim: [thread %llu t=%llu ns] %s\n", (unsigned long long)t->index,
            (unsigned long long)t->now, buf);
}

static void json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

static void write_report(void)
{
    char path[sizeof(G.cfg.report_path) + 32];
    if (G.forked_child)
        snprintf(path, sizeof(path), "%s.%ld", G.cfg.report_path, (long)getpid());
    else
        snprintf(path, sizeof(path), "%s", G.cfg.report_path);
    FILE *f = fopen(path, "w");
    if (!f) {
        cudasim_warn("CUDASIM_REPORT=\"%s\": cannot write the report", path);
        return;
    }
    uint64_t host = cudasim_host_max(), end = host;
    for (int e = 0; e < SIM_ENG_COUNT; e++)
        end = SIM_MAX(end, G.eng[e].free_at);
    end = SIM_MAX(end, G.prio_free_at);
    for (uint32_t i = 0; i < G.nagents; i++)
        end = SIM_MAX(end, G.agents[i].last_end);
#define U(name, v) fprintf(f, "  \"%s\": %llu,\n", name, (unsigned long long)(v))
    fprintf(f, "{\n");
    U("vram_bytes", G.cfg.vram_bytes);
    U("peak_device_bytes", G.peak_device_bytes);
    U("device_bytes", G.device_bytes);
    U("pinned_host_bytes", G.pinned_bytes);
    U("peak_pinned_host_bytes", G.peak_pinned_bytes);
    U("h2d_bytes", G.h2d_bytes);
    U("d2h_bytes", G.d2h_bytes);
    U("d2d_bytes", G.d2d_bytes);
    U("h2h_bytes", G.h2h_bytes);
    U("pageable_h2d_bytes", G.pageable_h2d_bytes);
    U("pageable_d2h_bytes", G.pageable_d2h_bytes);
    U("virtual_time_ns", end);
    U("host_time_ns", host);
    U("compute_busy_ns", G.eng[SIM_ENG_COMPUTE].busy_ns);
    U("compute_priority_busy_ns", G.prio_busy_ns);
    U("h2d_busy_ns", G.eng[SIM_ENG_H2D].busy_ns);
    U("d2h_busy_ns", G.eng[SIM_ENG_D2H].busy_ns);
    U("kernels", G.kernels);
    U("copies", G.copies);
    U("memsets", G.memsets);
    U("graph_launches", G.graph_launches);
    U("races", G.races);
    U("in_use_frees", G.in_use_frees);
    U("history_dropped", G.history_dropped);
    U("errors", G.errors);
#undef U
    cudasim_fault_report(f);
    cudasim_clock_report(f);
    fprintf(f, "  \"illegal_address\": %s,\n", G.illegal_address ? "true" : "false");
    fprintf(f, "  \"first_error\": ");
    if (G.has_first_error)
        json_string(f, G.first_error);
    else
        fprintf(f, "null");
    fprintf(f, "\n}\n");
    fclose(f);
}

static void at_exit(void)
{
    pthread_mutex_lock(&G.lock);
    if (G.initialized && G.pid == getpid() && G.cfg.report_path[0])
        write_report();
    pthread_mutex_unlock(&G.lock);
}

void cudasim_report_register(void)
{
    if (!atexit_registered) {
        atexit_registered = true;
        atexit(at_exit);
    }
}
