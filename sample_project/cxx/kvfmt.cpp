#include "kvfmt.h"

#include <cstdlib>

namespace kvfmt {

std::string quote(const std::string &value) {
    std::string out = "\"";
    for (std::size_t i = 0; i < shown_length(value.size()); i++) out += value[i];
    if (value.size() > SHOWN_MAX) out += "...";
    return out + "\"";
}

long parse_count(const std::string &text) {
    return std::atol(text.c_str());
}

std::string summary(const std::string &key, long hits) {
    return quote(key) + column(hits, 6);
}

}  // namespace kvfmt
