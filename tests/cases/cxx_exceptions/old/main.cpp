#include <cstdio>
#include <cstdlib>
#include <stdexcept>

static int handled;  // state kept from line to line

__attribute__((noinline)) int check(int x)
{
    if (x == 42) throw std::out_of_range("forty-two");
    return x * 2;
}

__attribute__((noinline)) int handle(int x)
{
    handled++;
    if (x < 0) return -1;
    return check(x) + handled;
}

int main()
{
    char line[256];
    while (std::fgets(line, sizeof line, stdin)) {
        try {
            std::printf("%d\n", handle(std::atoi(line)));
        } catch (const std::exception &e) {
            std::printf("error: %s\n", e.what());
        }
        std::fflush(stdout);
    }
    return 0;
}
