// kvcli: a line-oriented front end to kvfmt (one command per line, one answer per line).
//   QUOTE text  -> the quoted, shortened text
//   COUNT text  -> the parsed count, or "ERR ..." when it is not one
//   SHOW key n  -> the key's summary line; the key and its total are kept
//   TOTAL key   -> the hits SHOW recorded for key
#include <cstdio>
#include <iostream>
#include <map>
#include <sstream>
#include <string>

#include "kvfmt.h"

static std::map<std::string, long> totals;

static std::string answer(const std::string &line) {
    std::istringstream in(line);
    std::string command, argument;
    in >> command;
    std::getline(in >> std::ws, argument);
    if (command == "QUOTE") return kvfmt::quote(argument);
    if (command == "COUNT") return kvfmt::column(kvfmt::parse_count(argument), 4);
    if (command == "SHOW") {
        std::size_t space = argument.rfind(' ');
        std::string key = argument.substr(0, space);
        long hits = kvfmt::parse_count(argument.substr(space + 1));
        totals[key] += hits;
        return kvfmt::summary(key, hits) + " [" + std::to_string(kvfmt::shown_length(key.size())) + "]";
    }
    if (command == "TOTAL") return kvfmt::column(totals[argument], 8);
    return "ERR unknown command";
}

int main() {
    std::string line;
    std::cout << "ready" << std::endl;
    while (std::getline(std::cin, line)) {
        try {
            std::cout << answer(line) << std::endl;
        } catch (const std::exception &e) {
            std::cout << "ERR " << e.what() << std::endl;
        }
    }
    return 0;
}
