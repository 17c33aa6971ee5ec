struct conn { int id; };
struct conn *serve(int n);

__attribute__((noinline)) int report(int n)
{
    return serve(n)->id * 100;
}
