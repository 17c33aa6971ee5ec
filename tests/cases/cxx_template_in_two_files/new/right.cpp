#include "scale.h"
__attribute__((noinline)) int right(int x) { return scaled(x) - 2; }
