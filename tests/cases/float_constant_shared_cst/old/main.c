#include <stdio.h>
#include <stdlib.h>

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

/* Each line is a temperature in Celsius, at 60 % relative humidity. */
int main(void)
{
    char line[256];
    while (fgets(line, sizeof line, stdin)) {
        double celsius = atof(line);
        printf("%.2f %.2f\n", to_fahrenheit(celsius), dew_point(celsius, 60.0));
        fflush(stdout);
    }
    return 0;
}
