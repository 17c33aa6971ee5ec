template <typename T> T scaled(T value) { return value * 3 + 1; }
int left(int x);
int right(int x);
