/* Starts a thread and exits 0: scripts/test runs it to learn whether ThreadSanitizer
 * works on this kernel as is, or needs address-space randomisation turned off. */
#include <pthread.h>

static void *run(void *arg) { return arg; }

int main(void)
{
    pthread_t t;
    if (pthread_create(&t, NULL, run, NULL))
        return 1;
    return pthread_join(t, NULL) != 0;
}
