/* hello: the smallest program — UART output and a pass through the test device. */
#include "lib.h"

int main(void)
{
    puts("hello from ftvm guest\n");
    return 0;
}
