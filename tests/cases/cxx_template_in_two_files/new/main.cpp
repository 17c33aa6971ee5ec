#include <cstdio>
#include <cstdlib>
#include "scale.h"
int main()
{
    char line[256];
    while (std::fgets(line, sizeof line, stdin)) {
        int x = std::atoi(line);
        std::printf("%d %d\n", left(x), right(x));
        std::fflush(stdout);
    }
    return 0;
}
