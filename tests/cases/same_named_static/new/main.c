#include <stdio.h>

int config_timeout(int requested);
int request_size(int requested);

int main(void)
{
    for (int i = 3; i < 9000; i *= 7)
        printf("%d %d\n", config_timeout(i), request_size(i));
    return 0;
}
