/* control/control.c: runtime control for blockswapctl. A thread of the shim's own serves
 * one request line per connection on a Unix socket only this user can reach, and answers
 * one JSON line. Owns the socket, its directory and the protocol; the work is page/'s
 * and schedule/'s, under their lock. Protocol and security: docs/control.md. */
#define _GNU_SOURCE
#include "bs.h"
#include "blockswap.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define REQ_MAX 256             /* a request line, its '\n' included */
#define RESP_CAP (1u << 20)     /* status of a few stacks of many blocks fits easily */
#define CLIENT_TIMEOUT_MS 2000  /* a client that sends nothing does not hold the thread */
#define SUN_PATH_MAX sizeof(((struct sockaddr_un *)0)->sun_path)

static int started;           /* the thread was asked for, in this process */
static bool exit_registered;
static pid_t owner;           /* the process the socket belongs to */
static int dir_fd = -1, listen_fd = -1;
static char dir_path[SUN_PATH_MAX], sock_name[32];

/* ---- the protocol: no socket here (bs_control_handle_request is the fuzzing target) ---- */

/* Ends the answer with "}\n"; an answer that does not fit becomes a short error. */
static int finish(struct bs_buf *o)
{
    bs_buf_add(o, "}\n");
    if (o->len < o->cap)
        return (int)o->len;
    int n = snprintf(o->p, o->cap, "{\"ok\":false,\"error\":\"answer too long\"}\n");
    return n > 0 && (size_t)n < o->cap ? n : -ENOSPC;
}

/* pre: msg holds no character that JSON would need escaped. */
static int error_reply(struct bs_buf *o, const char *msg)
{
    o->len = 0;
    bs_buf_add(o, "{\"ok\":false,\"error\":\"%s\"", msg);
    return finish(o);
}

static void ms_or_null(struct bs_buf *o, const char *key, uint64_t ns, bool traced)
{
    if (traced)
        bs_buf_add(o, ",\"%s\":%.3f", key, ns / 1e6);
    else
        bs_buf_add(o, ",\"%s\":null", key);
}

/* ,"key":v */
static void kv(struct bs_buf *o, const char *key, uint64_t v)
{
    bs_buf_add(o, ",\"%s\":%llu", key, (unsigned long long)v);
}

static int do_status(struct bs_buf *o)
{
    struct blockswap_stats st;
    memset(&st, 0, sizeof(st));
    blockswap_get_stats(&st);
    bs_buf_add(o, "{\"ok\":true,\"command\":\"status\",\"pid\":%d,\"version\":\"%s\"", (int)getpid(),
        BS_VERSION);
    bs_buf_add(o, ",\"vram\":{\"limit\":%llu", (unsigned long long)st.vram_limit);
    kv(o, "used", st.resident_bytes + st.unmanaged_bytes);
    kv(o, "resident", st.resident_bytes);
    kv(o, "unmanaged", st.unmanaged_bytes);
    kv(o, "peak", st.peak_vram_bytes);
    kv(o, "pooled", st.vram_pooled_bytes);
    bs_buf_add(o, "},\"host\":{\"backing\":%llu", (unsigned long long)st.host_backing_bytes);
    kv(o, "peak", st.peak_host_backing_bytes);
    kv(o, "pinned", st.host_pinned_bytes);
    kv(o, "peak_pinned", st.peak_host_pinned_bytes);
    kv(o, "pageable", st.host_backing_bytes - st.host_pinned_bytes);
    kv(o, "file_backed", st.host_file_backed_bytes);
    kv(o, "files", st.files_held);
    kv(o, "file_read_bytes", st.file_read_bytes);
    kv(o, "staging", st.host_staging_bytes);
    kv(o, "loaded_to_vram", st.load_direct_bytes);
    bs_buf_add(o, "},\"managed\":{\"allocations\":%llu", (unsigned long long)st.managed_allocations);
    kv(o, "bytes", st.managed_bytes);
    bs_buf_add(o, "},\"moved\":{\"page_ins\":%llu", (unsigned long long)st.page_ins);
    kv(o, "page_in_bytes", st.page_in_bytes);
    kv(o, "evictions", st.evictions);
    kv(o, "writeback_bytes", st.writeback_bytes);
    kv(o, "writeback_skipped_bytes", st.writeback_skipped_bytes);
    bs_buf_add(o, "}");
    kv(o, "launches", st.launches);
    kv(o, "oom_refusals", st.oom_refusals);
    kv(o, "blocks", st.blocks);
    kv(o, "blocks_swapped", st.blocks_swapped);
    /* Times exist only with BLOCKSWAP_TRACE: null says "not measured", never 0. */
    bool traced = bs_cfg.trace[0] != '\0';
    bs_buf_add(o, ",\"traced\":%s", traced ? "true" : "false");
    kv(o, "steps_traced", st.steps_traced);
    ms_or_null(o, "stall_ms", st.stall_ns, traced);
    ms_or_null(o, "transfer_in_ms", st.transfer_in_ns, traced);
    ms_or_null(o, "transfer_out_ms", st.transfer_out_ns, traced);
    ms_or_null(o, "compute_ms", st.compute_ns, traced);
    bs_buf_add(o, ",");
    size_t room = o->len < o->cap ? o->cap - o->len : 0;
    o->len += bs_page_ctl_blocks_json(room ? o->p + o->len : NULL, room);
    return finish(o);
}

static int do_evict(struct bs_buf *o)
{
    struct bs_ctl_evict e;
    char a[32], b[32];
    bs_page_ctl_evict(&e);
    bs_log(BS_LOG_INFO, "blockswapctl evict: %llu allocations (%s) moved out of VRAM, %llu "
           "pinned (%s) stay", (unsigned long long)e.evicted, bs_size_str(e.evicted_bytes, a, sizeof(a)),
           (unsigned long long)e.pinned, bs_size_str(e.pinned_bytes, b, sizeof(b)));
    struct blockswap_stats st;
    memset(&st, 0, sizeof(st));
    blockswap_get_stats(&st);
    bs_buf_add(o, "{\"ok\":true,\"command\":\"evict\",\"evicted\":%llu,\"evicted_bytes\":%llu,"
        "\"pinned\":%llu,\"pinned_bytes\":%llu,\"failed\":%llu,\"failed_bytes\":%llu,"
        "\"resident_bytes\":%llu", (unsigned long long)e.evicted,
        (unsigned long long)e.evicted_bytes, (unsigned long long)e.pinned,
        (unsigned long long)e.pinned_bytes, (unsigned long long)e.failed,
        (unsigned long long)e.failed_bytes, (unsigned long long)st.resident_bytes);
    if (e.pinned)
        bs_buf_add(o, ",\"pinned_reason\":\"captured into a CUDA graph or pinned with blockswap_pin: "
            "the GPU may use it at any time\"");
    if (e.failed)
        bs_buf_add(o, ",\"failed_reason\":\"see the application's blockswap log\"");
    return finish(o);
}

static int do_trim(struct bs_buf *o)
{
    struct bs_ctl_trim t;
    char a[32], b[32];
    bs_page_ctl_trim(&t);
    bs_log(BS_LOG_INFO, "blockswapctl trim: %s of host backing freed, %s kept (swapped "
           "blocks, models not in use)", bs_size_str(t.freed_bytes, a, sizeof(a)),
           bs_size_str(t.kept_bytes, b, sizeof(b)));
    struct blockswap_stats st;
    memset(&st, 0, sizeof(st));
    blockswap_get_stats(&st);
    bs_buf_add(o, "{\"ok\":true,\"command\":\"trim\",\"host_freed\":%llu,\"host_freed_bytes\":%llu,"
        "\"host_kept\":%llu,\"host_kept_bytes\":%llu,\"vram_returned_bytes\":%llu,"
        "\"host_backing_bytes\":%llu", (unsigned long long)t.freed,
        (unsigned long long)t.freed_bytes, (unsigned long long)t.kept,
        (unsigned long long)t.kept_bytes, (unsigned long long)t.vram_returned_bytes,
        (unsigned long long)st.host_backing_bytes);
    return finish(o);
}

/* set prefetch N: blocks copied ahead, from the next step, as blocks-to-swap. */
static int set_prefetch(struct bs_buf *o, const char *value)
{
    struct bs_config tmp;
    char err[160];
    bs_config_defaults(&tmp);
    if (bs_config_set(&tmp, "BLOCKSWAP_PREFETCH", value, err, sizeof(err)) < 0)
        return error_reply(o, "bad value for prefetch; accepted: a whole number from 0 to 63 "
                              "(blocks copied ahead of the one computing)");
    int later = bs_page_ctl_set_prefetch(tmp.prefetch);
    bs_log(BS_LOG_INFO, "blockswapctl set prefetch %s: %s", value,
           later ? "applied at the start of the next step" : "used when blocks are found");
    bs_buf_add(o, "{\"ok\":true,\"command\":\"set\",\"prefetch\":%llu,\"window\":%llu,"
               "\"applies\":\"%s\"", (unsigned long long)tmp.prefetch,
               (unsigned long long)tmp.prefetch + 1, later ? "next step" : "when blocks are found");
    return finish(o);
}

/* set vram-limit SIZE: the budget now; a lower one evicts what no longer fits. */
static int set_vram_limit(struct bs_buf *o, const char *value)
{
    struct bs_config tmp;
    char err[160], a[32], b[32], c[32];
    bs_config_defaults(&tmp);
    uint64_t v;
    if (bs_parse_size(value, &v) == 0 && v == 0)
        return error_reply(o, "vram-limit 0 leaves no VRAM at all; give a size of at least 2M");
    if (strcmp(value, "auto") == 0 ||
        bs_config_set(&tmp, "BLOCKSWAP_VRAM_LIMIT", value, err, sizeof(err)) < 0)
        return error_reply(o, "bad value for vram-limit; accepted: a size from 2M to 1024T "
                              "bytes, digits with an optional K, M, G or T suffix (12G, 11500M)");
    struct bs_ctl_limit l;
    int r = bs_page_ctl_set_vram_limit(tmp.vram_limit, &l);
    if (r == -EAGAIN)
        return error_reply(o, "no VRAM limit yet: it is set at the first allocation "
                              "blockswap manages");
    if (r == -ERANGE) {
        char msg[200];
        snprintf(msg, sizeof(msg), "vram-limit %s is below the %s that cannot be evicted "
                 "(%s pinned, %s not managed by blockswap); the limit stays %s", value,
                 bs_size_str(l.pinned_bytes + l.unmanaged_bytes, a, sizeof(a)),
                 bs_size_str(l.pinned_bytes, b, sizeof(b)),
                 bs_size_str(l.unmanaged_bytes, c, sizeof(c)),
                 bs_size_str(l.old_limit, err, sizeof(err)));
        return error_reply(o, msg);
    }
    bs_log(BS_LOG_INFO, "blockswapctl set vram-limit %s: the limit is %s (was %s); %llu "
           "allocations (%s) evicted to fit it%s", value,
           bs_size_str(tmp.vram_limit, a, sizeof(a)), bs_size_str(l.old_limit, b, sizeof(b)),
           (unsigned long long)l.evicted, bs_size_str(l.evicted_bytes, c, sizeof(c)),
           l.next_step ? "; blocks to swap chosen again at the start of the next step" : "");
    bs_buf_add(o, "{\"ok\":%s,\"command\":\"set\",\"vram_limit\":%llu,\"old_limit\":%llu,"
               "\"evicted\":%llu,\"evicted_bytes\":%llu,\"pool_released_bytes\":%llu,"
               "\"used_bytes\":%llu,\"applies\":\"now\"", r ? "false" : "true",
               (unsigned long long)tmp.vram_limit, (unsigned long long)l.old_limit,
               (unsigned long long)l.evicted, (unsigned long long)l.evicted_bytes,
               (unsigned long long)l.pool_released_bytes, (unsigned long long)l.used_bytes);
    if (r)
        bs_buf_add(o, ",\"error\":\"the limit is set, but an eviction failed: see the "
                   "application's blockswap log\"");
    return finish(o);
}

/* stack: NULL for every stack, else the index given after --stack. */
static int do_set(struct bs_buf *o, const char *name, const char *value, const char *stack)
{
    if (stack && strcmp(name, "blocks-to-swap") != 0)
        return error_reply(o, "--stack applies to blocks-to-swap only");
    if (strcmp(name, "prefetch") == 0)
        return set_prefetch(o, value);
    if (strcmp(name, "vram-limit") == 0)
        return set_vram_limit(o, value);
    if (strcmp(name, "blocks-to-swap") != 0)
        return error_reply(o, "unknown setting; known: blocks-to-swap, prefetch, vram-limit");
    /* The same strict parsing and range as BLOCKSWAP_BLOCKS_TO_SWAP. */
    struct bs_config tmp;
    char err[160];
    bs_config_defaults(&tmp);
    if (bs_config_set(&tmp, "BLOCKSWAP_BLOCKS_TO_SWAP", value, err, sizeof(err)) < 0)
        return error_reply(o, "bad value for blocks-to-swap; accepted: auto or a whole "
                              "number from 0 to 100000");
    if (tmp.blocks_to_swap_n > 1)
        return error_reply(o, "bad value for blocks-to-swap: one value; for one model's stack, "
                              "add --stack S");
    int index = -1;
    if (stack) {
        /* The stack's index in the order found, as the log names it. */
        char *end;
        unsigned long v = strtoul(stack, &end, 10);
        if (stack[0] < '0' || stack[0] > '9' || *end || v >= BS_MAX_STACK_COUNTS)
            return error_reply(o, "bad value for --stack; accepted: a stack index from 0 to 15, "
                                  "as the log names it (stack 0: the first model detected)");
        index = (int)v;
    }
    uint64_t k = tmp.blocks_to_swap;
    int later = bs_page_ctl_set_blocks_to_swap(k, index);
    char which[32] = "";
    if (index >= 0)
        snprintf(which, sizeof(which), " --stack %d", index);
    bs_log(BS_LOG_INFO, "blockswapctl set blocks-to-swap %s%s: %s", value, which,
           later ? "applied at the start of the next step" :
           index >= 0 ? "used when that stack is found" : "used when blocks are found");
    bs_buf_add(o, "{\"ok\":true,\"command\":\"set\",\"blocks_to_swap\":");
    if (k == BS_SIZE_AUTO)
        bs_buf_add(o, "\"auto\"");
    else
        bs_buf_add(o, "%llu", (unsigned long long)k);
    if (index >= 0)
        bs_buf_add(o, ",\"stack\":%d", index);
    else
        bs_buf_add(o, ",\"stack\":\"all\"");
    bs_buf_add(o, ",\"applies\":\"%s\"", later ? "next step" :
               index >= 0 ? "when that stack is found" : "when blocks are found");
    return finish(o);
}

int bs_control_handle_request(const char *req, size_t len, char *resp, size_t cap)
{
    struct bs_buf o = { resp, cap, 0 };
    char line[REQ_MAX], *words[5];
    int nw = 0;
    if (!resp || cap < 64)
        return -ENOSPC;
    if (req && len && req[len - 1] == '\n')
        len--;
    if (!req || !len)
        return error_reply(&o, "empty request");
    if (len >= REQ_MAX)
        return error_reply(&o, "request too long: at most 255 bytes and a newline");
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)req[i] < 0x20 || (unsigned char)req[i] > 0x7e)
            return error_reply(&o, "request is not one line of printable ASCII");
    memcpy(line, req, len);
    line[len] = '\0';
    for (char *save = NULL, *w = strtok_r(line, " ", &save); w; w = strtok_r(NULL, " ", &save)) {
        if (nw == (int)BS_ARRAY_SIZE(words))
            return error_reply(&o, "too many words in the request");
        words[nw++] = w;
    }
    if (!nw)
        return error_reply(&o, "empty request");
    const char *cmd = words[0];
    if (nw == 1 && strcmp(cmd, "status") == 0)
        return do_status(&o);
    if (nw == 1 && strcmp(cmd, "evict") == 0)
        return do_evict(&o);
    if (nw == 1 && strcmp(cmd, "trim") == 0)
        return do_trim(&o);
    if (nw == 1 && strcmp(cmd, "ping") == 0) {
        bs_buf_add(&o, "{\"ok\":true,\"command\":\"ping\",\"pid\":%d,\"version\":\"%s\"", (int)getpid(),
            BS_VERSION);
        return finish(&o);
    }
    if (nw == 3 && strcmp(cmd, "set") == 0)
        return do_set(&o, words[1], words[2], NULL);
    if (nw == 5 && strcmp(cmd, "set") == 0 && strcmp(words[3], "--stack") == 0)
        return do_set(&o, words[1], words[2], words[4]);
    return error_reply(&o, "unknown request; known: status, evict, trim, "
                           "set blocks-to-swap N|auto [--stack S], set prefetch N, "
                           "set vram-limit SIZE, ping");
}

/* ---- the socket ---- */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return; /* the client left, or stopped reading (SO_SNDTIMEO) */
        p += w;
        n -= (size_t)w;
    }
}

/* One connection: the peer must be this user; one line in (or EOF, or the timeout), one
 * answer out. */
static void serve_one(int c, char *resp)
{
    static const char refused[] = "{\"ok\":false,\"error\":\"permission denied: only the "
                                  "user running the process may control it\"}\n";
    struct ucred cr = { .pid = -1, .uid = (uid_t)-1, .gid = (gid_t)-1 };
    socklen_t cl = sizeof(cr);
    struct timeval tv = { CLIENT_TIMEOUT_MS / 1000, 0 };
    setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (getsockopt(c, SOL_SOCKET, SO_PEERCRED, &cr, &cl) < 0 || cr.uid != geteuid()) {
        bs_log_limited(5, BS_LOG_WARN, "control socket: refused a connection from uid %d "
                       "(pid %d): only uid %d may control this process", (int)cr.uid,
                       (int)cr.pid, (int)geteuid());
        send_all(c, refused, sizeof(refused) - 1);
        return;
    }
    char req[REQ_MAX + 1];
    size_t n = 0;
    bool line = false;
    int64_t deadline = now_ms() + CLIENT_TIMEOUT_MS;
    while (n < sizeof(req) && !line) {
        int64_t left = deadline - now_ms();
        struct pollfd p = { .fd = c, .events = POLLIN };
        int pr = left > 0 ? poll(&p, 1, (int)left) : 0;
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr <= 0) {
            static const char late[] = "{\"ok\":false,\"error\":\"no request line within "
                                       "2 seconds\"}\n";
            send_all(c, late, sizeof(late) - 1);
            return;
        }
        ssize_t r = recv(c, req + n, sizeof(req) - n, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break; /* EOF: what came is the request */
        char *nl = memchr(req + n, '\n', (size_t)r);
        if (nl) {
            n = (size_t)(nl - req) + 1; /* anything after the line is ignored */
            line = true;
        } else {
            n += (size_t)r;
        }
    }
    int len = bs_control_handle_request(req, n, resp, RESP_CAP);
    if (len > 0)
        send_all(c, resp, (size_t)len);
}

static void *serve(void *arg)
{
    char *resp = malloc(RESP_CAP);
    if (!resp) {
        bs_log(BS_LOG_WARN, "control socket: out of memory; blockswapctl cannot reach this "
               "process");
        return NULL;
    }
    for (;;) {
        int c = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                bs_log_limited(1, BS_LOG_WARN, "control socket: accept failed (%s); retrying",
                               strerror(errno));
                sleep(1);
                continue;
            }
            break; /* shut down at exit */
        }
        serve_one(c, resp);
        close(c);
    }
    free(resp);
    return NULL;
}

static void control_exit(void)
{
    if (owner != getpid() || dir_fd < 0)
        return; /* a child's exit: the socket is its parent's */
    unlinkat(dir_fd, sock_name, 0);
    if (listen_fd >= 0)
        shutdown(listen_fd, SHUT_RDWR);
}

/* The socket's directory: created 0700, and used only if it is a real directory (not a
 * symlink) owned by this user with mode 0700. Returns an fd on it, or -1 (logged). */
static int open_dir(void)
{
    const char *xdg = getenv("XDG_RUNTIME_DIR");
    int n = xdg && xdg[0] == '/'
                ? snprintf(dir_path, sizeof(dir_path), "%s/blockswap", xdg)
                : snprintf(dir_path, sizeof(dir_path), "/tmp/blockswap-%u", (unsigned)geteuid());
    if (n < 0 || (size_t)n + 1 + sizeof(sock_name) >= sizeof(dir_path)) {
        bs_log(BS_LOG_WARN, "control socket disabled: XDG_RUNTIME_DIR is too long for a socket "
               "path (at most %zu bytes)", sizeof(dir_path) - sizeof(sock_name) - 12);
        return -1;
    }
    bool made = mkdir(dir_path, 0700) == 0;
    if (!made && errno != EEXIST) {
        bs_log(BS_LOG_WARN, "control socket disabled: cannot create %s (%s)", dir_path,
               strerror(errno));
        return -1;
    }
    int fd = open(dir_path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    struct stat st;
    const char *why = NULL;
    if (fd < 0)
        why = errno == ELOOP || errno == ENOTDIR ? "a symlink or not a directory"
                                                 : strerror(errno);
    else if (made && fchmod(fd, 0700) < 0) /* against an odd umask */
        why = strerror(errno);
    else if (fstat(fd, &st) < 0)
        why = strerror(errno);
    else if (st.st_uid != geteuid())
        why = "owned by another user";
    else if ((st.st_mode & 07777) != 0700)
        why = "not mode 0700";
    if (why) {
        bs_log(BS_LOG_WARN, "control socket disabled: %s is %s; it must be a directory of "
               "uid %u with mode 0700 (remove it, or set BLOCKSWAP_CONTROL=0)", dir_path, why,
               (unsigned)geteuid());
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

/* Binds the listening socket inside the checked directory, 0600. The directory is
 * reached through its open fd (/proc/self/fd/N), so it cannot be swapped in between. */
static int open_socket(void)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    struct stat st;
    int fd = -1;
    snprintf(sock_name, sizeof(sock_name), "%d.sock", (int)getpid());
    if (fstatat(dir_fd, sock_name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            bs_log(BS_LOG_WARN, "control socket disabled: %s/%s exists and is not a socket",
                   dir_path, sock_name);
            return -1;
        }
        unlinkat(dir_fd, sock_name, 0); /* a dead process that had this pid */
    }
    int n = access("/proc/self/fd", X_OK) == 0
                ? snprintf(sa.sun_path, sizeof(sa.sun_path), "/proc/self/fd/%d/%s", dir_fd,
                           sock_name)
                : snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/%s", dir_path, sock_name);
    errno = ENAMETOOLONG; /* checked in open_dir already */
    const char *what = "socket path";
    if (n < 0 || (size_t)n >= sizeof(sa.sun_path))
        goto fail;
    what = "socket";
    if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
        goto fail;
    what = "fchmod";
    if (fchmod(fd, 0600) < 0) /* the mode the bound file gets, before the umask */
        goto fail;
    what = "bind";
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        goto fail;
    what = "chmod";
    if (fchmodat(dir_fd, sock_name, 0600, 0) < 0)
        goto fail_unlink;
    what = "listen";
    if (listen(fd, 16) < 0)
        goto fail_unlink;
    return fd;
fail_unlink:
    unlinkat(dir_fd, sock_name, 0);
fail:
    bs_log(BS_LOG_WARN, "control socket disabled: %s of %s/%s failed (%s)", what, dir_path,
           sock_name, strerror(errno));
    if (fd >= 0)
        close(fd);
    return -1;
}

void bs_control_start(void)
{
    if (BS_LIKELY(__atomic_load_n(&started, __ATOMIC_RELAXED)))
        return;
    int expected = 0;
    if (!__atomic_compare_exchange_n(&started, &expected, 1, false, __ATOMIC_ACQ_REL,
                                     __ATOMIC_RELAXED))
        return;
    if (!bs_cfg.control)
        return;
    if ((dir_fd = open_dir()) < 0)
        return;
    if ((listen_fd = open_socket()) < 0) {
        close(dir_fd);
        dir_fd = -1;
        return;
    }
    owner = getpid();
    if (!exit_registered) { /* a child inherits the registration, and control_exit checks owner */
        exit_registered = true;
        atexit(control_exit);
    }
    pthread_t t;
    pthread_attr_t attr;
    sigset_t all, old;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    sigfillset(&all); /* the application's signals are for its own threads */
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int err = pthread_create(&t, &attr, serve, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    if (err) {
        bs_log(BS_LOG_WARN, "control socket disabled: cannot start its thread (%s)",
               strerror(err));
        control_exit();
        close(listen_fd);
        close(dir_fd);
        listen_fd = dir_fd = -1;
        return;
    }
    bs_log(BS_LOG_DEBUG, "control socket %s/%s", dir_path, sock_name);
}

/* The child of a fork has no control thread and must not answer on its parent's
 * socket: it starts its own, for its own pid, at its first managed allocation. */
void bs_control_reset_after_fork(void)
{
    if (listen_fd >= 0)
        close(listen_fd);
    if (dir_fd >= 0)
        close(dir_fd);
    listen_fd = dir_fd = -1;
    owner = 0;
    __atomic_store_n(&started, 0, __ATOMIC_RELAXED);
}
