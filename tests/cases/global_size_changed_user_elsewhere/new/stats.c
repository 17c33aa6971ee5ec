extern unsigned histogram[];

/* One bucket's count: the same code whatever the histogram's size. */
unsigned bucket_value(unsigned i)
{
    return histogram[i];
}
