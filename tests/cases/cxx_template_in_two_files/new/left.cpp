#include "scale.h"
__attribute__((noinline)) int left(int x) { return scaled(x) + scaled<long>(x) % 7; }
