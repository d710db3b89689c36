/* Unit: log lines carry the prefix, rate-limited sites stop after their limit and
 * say so, the log file is created 0600 and a symlink in its place is refused. */
#include "bs.h"
#include "cutest.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void hot_path(int i)
{
    bs_log_limited(3, BS_LOG_WARN, "hot path message %d", i);
}

int main(void)
{
    char dir[] = "/tmp/bs-log-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[256], link_path[256], buf[4096];
    snprintf(path, sizeof(path), "%s/log.txt", dir);
    snprintf(link_path, sizeof(link_path), "%s/link.txt", dir);

    CHECK(symlink(path, link_path) == 0);
    bs_log_set_level(BS_LOG_ERROR); /* keep the refusal warning off the test output */
    CHECK(bs_log_open(link_path) == -ELOOP);

    bs_log_set_level(BS_LOG_INFO);
    CHECK(bs_log_open(path) == 0);
    struct stat st;
    CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);
    bs_log(BS_LOG_INFO, "hello %d", 42);
    bs_log(BS_LOG_DEBUG, "not shown");
    for (int i = 0; i < 100; i++)
        hot_path(i);
    bs_log(BS_LOG_ERROR, "bad thing");

    FILE *f = fopen(path, "r");
    CHECK(f != NULL);
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = 0;
    fclose(f);
    const char *want =
        "blockswap: hello 42\n"
        "blockswap: warning: hot path message 0\n"
        "blockswap: warning: hot path message 1\n"
        "blockswap: warning: hot path message 2 (repeats of this message are suppressed)\n"
        "blockswap: error: bad thing\n";
    if (strcmp(buf, want) != 0) {
        fprintf(stderr, "log file holds:\n%s", buf);
        return 1;
    }
    unlink(link_path);
    unlink(path);
    rmdir(dir);
    return 0;
}
