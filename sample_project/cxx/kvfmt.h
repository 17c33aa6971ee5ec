// kvfmt: formatting and parsing for kvd's clients, a C++ shared library.
#pragma once
#include <stdexcept>
#include <string>

namespace kvfmt {

// What a parse error says; thrown by parse_count, caught by the caller.
struct bad_input : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// The longest value a client shows, in bytes: inline, used by the library and the program.
constexpr std::size_t SHOWN_MAX = 16;
inline std::size_t shown_length(std::size_t length) { return length > SHOWN_MAX ? SHOWN_MAX : length; }

// A column of fixed width for numbers; a template instantiated in both.
template <typename T> std::string column(T value, std::size_t width) {
    std::string text = std::to_string(value);
    if (text.size() < width) text.insert(0, width - text.size(), ' ');
    return text;
}

std::string quote(const std::string &value);      // "value", shortened to shown_length
long parse_count(const std::string &text);         // a non-negative count
std::string summary(const std::string &key, long hits);

}  // namespace kvfmt
