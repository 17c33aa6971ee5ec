template <typename T> T scaled(T value) { return value * 5 - 1; }
int left(int x);
int right(int x);
