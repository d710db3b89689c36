/* LLVMFuzzerInitialize for every target: no log output, then the target's fuzz_init. */
#include "bs.h"
#include "fuzz.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    bs_log_open("/dev/null"); /* the targets' error lines would only slow them down */
    fuzz_init();
    return 0;
}
