/* Prints the reference of every BLOCKSWAP_* variable from the one table, for
 * docs/configuration.md (a test checks the document holds it verbatim). */
#include "bs.h"

int main(void)
{
    bs_config_print_help(1);
    return 0;
}
