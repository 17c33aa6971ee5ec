#include <cstdio>
#include <cstdlib>

struct Shape {
    virtual ~Shape() {}
    virtual int area(int scale) const = 0;
};
struct Square : Shape {
    int side;
    explicit Square(int s) : side(s) {}
    int area(int scale) const override { return side * side * scale; }
};
struct Line : Shape {
    int length;
    explicit Line(int l) : length(l) {}
    int area(int scale) const override { return length * scale + 1; }
};

// Built before any line is read: their vtable pointers are the old binary's.
static Square square(3);
static Line line_shape(4);
static const Shape *shapes[] = {&square, &line_shape};

__attribute__((noinline)) int measure(int which, int scale) { return shapes[which & 1]->area(scale); }

int main()
{
    char text[256];
    while (std::fgets(text, sizeof text, stdin)) {
        int x = std::atoi(text);
        std::printf("%d %d\n", measure(0, x), measure(1, x));
        std::fflush(stdout);
    }
    return 0;
}
