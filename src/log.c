/* log.c: the shim's only output. One line per call, "blockswap: " prefix, a fixed
 * buffer and write(2): no allocation, no stdio locks, safe from any hook. */
#define _GNU_SOURCE
#include "bs.h"

#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int log_fd = 2;
static enum bs_log_level log_level = BS_LOG_INFO;

static const char *const level_words[] = {
    [BS_LOG_ERROR] = "error: ",
    [BS_LOG_WARN] = "warning: ",
    [BS_LOG_INFO] = "",
    [BS_LOG_DEBUG] = "debug: ",
};

bool bs_log_enabled(enum bs_log_level level)
{
    return level <= __atomic_load_n(&log_level, __ATOMIC_RELAXED);
}

void bs_log_set_level(enum bs_log_level level)
{
    __atomic_store_n(&log_level, level, __ATOMIC_RELAXED);
}

int bs_log_open(const char *path)
{
    /* O_NOFOLLOW: a log path in a shared directory must not be redirected by a
     * planted symlink; 0600: lines may carry addresses. O_NONBLOCK, then only a
     * regular file or a character device (/dev/null, a terminal): a FIFO planted
     * there would block the application in open() or in a write, for good. */
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0600);
    struct stat st;
    int err = fd < 0 ? errno : 0;
    if (fd >= 0 && (fstat(fd, &st) != 0 || !(S_ISREG(st.st_mode) || S_ISCHR(st.st_mode)) ||
                    fcntl(fd, F_SETFL, O_APPEND) != 0))
        err = EINVAL;
    if (err) {
        if (fd >= 0)
            close(fd);
        bs_log(BS_LOG_WARN, "cannot open BLOCKSWAP_LOG_FILE=%s: %s; logging to stderr", path,
               err == EINVAL ? "not a regular file" : strerror(err));
        return -err;
    }
    __atomic_store_n(&log_fd, fd, __ATOMIC_RELAXED);
    return 0;
}

void bs_log_reset_after_fork(void)
{
    /* The child shares the parent's file (O_APPEND keeps lines whole). */
}

static void vlog(enum bs_log_level level, const char *suffix, const char *fmt, va_list ap)
{
    char buf[1024];
    int n = snprintf(buf, sizeof(buf), "blockswap: %s", level_words[level]);
    int m = vsnprintf(buf + n, sizeof(buf) - (size_t)n, fmt, ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof(buf) - 64)
        len = sizeof(buf) - 64; /* truncated: keep room for the suffix */
    len += (size_t)snprintf(buf + len, sizeof(buf) - len, "%s\n", suffix);
    const char *p = buf;
    while (len > 0) {
        ssize_t w = write(__atomic_load_n(&log_fd, __ATOMIC_RELAXED), p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        p += w;
        len -= (size_t)w;
    }
}

void bs_log(enum bs_log_level level, const char *fmt, ...)
{
    if (!bs_log_enabled(level))
        return;
    int saved = errno;
    va_list ap;
    va_start(ap, fmt);
    vlog(level, "", fmt, ap);
    va_end(ap);
    errno = saved;
}

void bs_log_rl_(bool last, enum bs_log_level level, const char *fmt, ...)
{
    if (!bs_log_enabled(level))
        return;
    int saved = errno;
    va_list ap;
    va_start(ap, fmt);
    vlog(level, last ? " (repeats of this message are suppressed)" : "", fmt, ap);
    va_end(ap);
    errno = saved;
}

void bs_buf_add(struct bs_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->len < b->cap ? b->p + b->len : NULL,
                      b->len < b->cap ? b->cap - b->len : 0, fmt, ap);
    va_end(ap);
    if (n > 0)
        b->len += (size_t)n;
}

const char *bs_size_str(uint64_t bytes, char *buf, size_t len)
{
    if (bytes >= (10ull << 30))
        snprintf(buf, len, "%.1f GiB", bytes / 1073741824.0);
    else
        snprintf(buf, len, "%.1f MiB", bytes / 1048576.0);
    return buf;
}
