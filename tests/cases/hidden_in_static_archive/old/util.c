/* Internal helpers of the library part: hidden, as libraries mark what is not their API. */
#define INTERNAL __attribute__((visibility("hidden")))

INTERNAL int checksum_seed = 17;

INTERNAL __attribute__((noinline)) unsigned mix(unsigned h, unsigned c)
{
    return h * 31 + c;
}
