/* exit_code: reports failure code 42 through the test device ((42 << 16) | 0x3333),
 * so the host can check that a guest's code becomes ftvm's exit status. */
#include "lib.h"

int main(void)
{
    puts("exit_code: failing on purpose with code 42\n");
    return 42;
}
