/* sanitizer_canary.c: two known bugs, run by scripts/sanitize.sh to prove that
 * the sanitizer toolchain reports what it should before trusting its silence.
 *
 *   canary heap-overflow     reads one byte past a heap block (ASan)
 *   canary signed-overflow   overflows a signed int (UBSan)
 *   canary leak              loses a heap block (LeakSanitizer)
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    /* volatile: keep the compiler from folding the bugs away */
    volatile int n = argc > 2 ? atoi(argv[2]) : 8;
    if (argc > 1 && strcmp(argv[1], "heap-overflow") == 0) {
        char *p = malloc((size_t)n);
        memset(p, 'x', (size_t)n);
        volatile char c = p[n];
        printf("read %d\n", c);
        free(p);
        return 0;
    }
    if (argc > 1 && strcmp(argv[1], "signed-overflow") == 0) {
        volatile int big = INT_MAX;
        int sum = big + n;
        printf("sum %d\n", sum);
        return 0;
    }
    if (argc > 1 && strcmp(argv[1], "leak") == 0) {
        static char *volatile lost;
        lost = malloc((size_t)n * 100);
        lost[0] = 'x';
        lost = NULL;
        return 0;
    }
    fprintf(stderr, "usage: canary heap-overflow|signed-overflow|leak\n");
    return 2;
}
