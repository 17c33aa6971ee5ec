#include <stdio.h>

/* Celsius to Fahrenheit. */
__attribute__((noinline)) double to_fahrenheit(double celsius)
{
    return celsius * 1.8 + 32.0;
}

/* Dew point approximation (Lawrence): T - (100 - RH) / 5. */
__attribute__((noinline)) double dew_point(double celsius, double humidity)
{
    return celsius - (100.0 - humidity) * 0.2;
}

int main(void)
{
    printf("%.2f %.2f\n", to_fahrenheit(21.5), dew_point(21.5, 60.0));
    return 0;
}
