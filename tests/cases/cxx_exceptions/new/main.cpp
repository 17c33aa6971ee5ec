#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>

static int handled;  // state kept from line to line

__attribute__((noinline)) int check(int x)
{
    if (x == 42) throw std::out_of_range("forty-two");
    return x * 2;
}

__attribute__((noinline)) int handle(int x)
{
    std::string note = "line " + std::to_string(handled);  // a cleanup on every unwind
    handled++;
    if (x < 0) throw std::invalid_argument("negative: " + std::to_string(x));
    try {
        return check(x) + handled;
    } catch (const std::out_of_range &) {
        if (x == 42) return -42;
        throw;
    }
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
