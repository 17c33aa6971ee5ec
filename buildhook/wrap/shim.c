/* buildhook-cc / buildhook-c++, native: the compile path of the wrapper without Python.

   Why: a build runs the wrapper once per compile, and a CPython start alone
   costs more than the 3 % a compile may pay (bench/RESULTS.md).  This
   program does exactly what buildhook/wrap/main.py does for a plain compile
   (`-c`, settings from the environment): add the flags, run the compiler,
   and after a successful compile put each object into the store (blob named
   by its SHA-256, journal line in store/journal.py's format).  Everything
   else (links, -S, -E, response files, a config file, -flto, an unusual
   setting value, any error buildhook itself reports) is handed over, with
   the same arguments, to the Python wrapper installed beside it
   (buildhook-cc-python), so there is one implementation of every decision
   that is not on this path, and tests/test_wrap_shim.py checks that both give
   the compiler the same command and the store the same records.

   Built with the package (setup.py); without a C compiler the Python
   scripts are installed under these names instead. */

#define _GNU_SOURCE
#include <cpuid.h>
#include <errno.h>
#include <immintrin.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define FALLBACK_NAME "buildhook-cc-python"
#define HEADER_FOLDER "/../share/buildhook/include"  /* from the shim's folder, <prefix>/bin */
#ifndef SOURCE_HEADER_FOLDER
#define SOURCE_HEADER_FOLDER ""  /* setup.py: the package's own include/ it was built from (editable installs) */
#endif
#define MAX_WORDS 4096

/* ---- small helpers -------------------------------------------------------- */

static const char *program = "buildhook-cc";  /* argv[0]'s name, for messages */

static void *must_alloc(size_t size) {
    void *block = malloc(size ? size : 1);
    if (!block) {
        fprintf(stderr, "%s: error: out of memory\n", program);
        exit(1);
    }
    return block;
}

static char *joined(const char *first, const char *second) {
    size_t a = strlen(first), b = strlen(second);
    char *text = must_alloc(a + b + 1);
    memcpy(text, first, a);
    memcpy(text + a, second, b + 1);
    return text;
}

static int starts_with(const char *text, const char *prefix) {
    return strncmp(text, prefix, strlen(prefix)) == 0;
}

static int in_list(const char *word, const char *const *list) {
    for (; *list; list++)
        if (strcmp(word, *list) == 0)
            return 1;
    return 0;
}

static const char *base_name(const char *path) {
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

/* posixpath.normpath, for the absolute or relative paths built here. */
static char *normpath(const char *path) {
    size_t length = strlen(path);
    char *out = must_alloc(length + 2);
    const char **parts = must_alloc((length / 2 + 2) * sizeof *parts);
    size_t *sizes = must_alloc((length / 2 + 2) * sizeof *sizes);
    int leading = path[0] == '/' ? (path[1] == '/' && path[2] != '/' ? 2 : 1) : 0;
    size_t count = 0;
    for (const char *cursor = path; *cursor;) {
        while (*cursor == '/')
            cursor++;
        const char *start = cursor;
        while (*cursor && *cursor != '/')
            cursor++;
        size_t size = (size_t)(cursor - start);
        if (size == 0 || (size == 1 && start[0] == '.'))
            continue;
        if (size == 2 && start[0] == '.' && start[1] == '.') {
            if (count && !(sizes[count - 1] == 2 && memcmp(parts[count - 1], "..", 2) == 0)) {
                count--;
                continue;
            }
            if (leading)
                continue;
        }
        parts[count] = start;
        sizes[count++] = size;
    }
    char *write = out;
    for (int slash = 0; slash < leading; slash++)
        *write++ = '/';
    for (size_t index = 0; index < count; index++) {
        if (index)
            *write++ = '/';
        memcpy(write, parts[index], sizes[index]);
        write += sizes[index];
    }
    if (write == out)
        *write++ = '.';
    *write = 0;
    free(parts);
    free(sizes);
    return out;
}

static char *absolute(const char *path, const char *cwd) {
    if (path[0] == '/')
        return normpath(path);
    char *with_slash = joined(cwd, "/");
    char *full = joined(with_slash, path);
    char *result = normpath(full);
    free(with_slash);
    free(full);
    return result;
}

static int is_executable_file(const char *path) {
    struct stat info;
    return stat(path, &info) == 0 && S_ISREG(info.st_mode) && access(path, X_OK) == 0;
}

/* ---- settings (buildhook/settings.py, environment only) --------------------- */

enum { NO = 0, YES = 1, UNUSABLE = -1 };

/* A yes/no setting as settings._coerce reads it; UNUSABLE when the Python side must explain. */
static int boolean_setting(const char *variable, int fallback) {
    const char *value = getenv(variable);
    if (!value)
        return fallback;
    while (*value == ' ' || (*value >= '\t' && *value <= '\r'))
        value++;
    char word[8];
    size_t size = 0;
    for (; value[size] && !(value[size] == ' ' || (value[size] >= '\t' && value[size] <= '\r')); size++) {
        if (size == sizeof word - 1)
            return UNUSABLE;
        word[size] = (char)(value[size] >= 'A' && value[size] <= 'Z' ? value[size] + 32 : value[size]);
    }
    word[size] = 0;
    for (const char *rest = value + size; *rest; rest++)
        if (!(*rest == ' ' || (*rest >= '\t' && *rest <= '\r')))
            return UNUSABLE;
    static const char *const yes[] = {"1", "yes", "true", "on", NULL};
    static const char *const no[] = {"0", "no", "false", "off", "", NULL};
    if (in_list(word, yes))
        return YES;
    if (in_list(word, no))
        return NO;
    return UNUSABLE;
}

static const char *nonempty_env(const char *variable) {
    const char *value = getenv(variable);
    return value && *value ? value : NULL;
}

/* settings.config_path(); NULL when it cannot be worked out without Python (no HOME). */
static char *config_path(void) {
    const char *explicit = nonempty_env("BUILDHOOK_CONFIG");
    if (explicit)
        return joined(explicit, "");
    const char *base = nonempty_env("XDG_CONFIG_HOME");
    if (base)
        return joined(base, "/buildhook/config.toml");
    const char *home = nonempty_env("HOME");
    return home ? joined(home, "/.config/buildhook/config.toml") : NULL;
}

/* Settings.store_path; NULL when the Python side must resolve it (`~user`, no HOME). */
static char *store_path(const char *cwd) {
    const char *explicit = nonempty_env("BUILDHOOK_STORE");
    char *path;
    if (explicit) {
        if (explicit[0] == '~') {
            const char *home = nonempty_env("HOME");
            if (!home || (explicit[1] && explicit[1] != '/'))
                return NULL;
            path = joined(home, explicit + 1);
        } else {
            path = joined(explicit, "");
        }
    } else {
        const char *base = nonempty_env("XDG_DATA_HOME");
        if (base) {
            path = joined(base, "/buildhook/store");
        } else {
            const char *home = nonempty_env("HOME");
            if (!home)
                return NULL;
            path = joined(home, "/.local/share/buildhook/store");
        }
    }
    char *result = absolute(path, cwd);
    free(path);
    if (strlen(result) > PATH_MAX - 200) {  /* no room for objects/ab/cdef…: Python reports it */
        free(result);
        return NULL;
    }
    return result;
}

/* ---- which compiler (buildhook/wrap/invocation.py) -------------------------- */

static char own_path[PATH_MAX];

static int is_buildhook(const char *word);

/* The first executable *name* on PATH (invocation.which), or with *not_buildhook* the first that is
   not buildhook itself (invocation._find_on_path); NULL when there is none. */
static char *path_search(const char *name, int not_buildhook) {
    const char *path = getenv("PATH");
    if (!path)
        path = "/bin:/usr/bin";  /* os.defpath */
    size_t name_size = strlen(name);
    for (const char *cursor = path;; cursor++) {
        const char *end = strchrnul(cursor, ':');
        size_t size = (size_t)(end - cursor);
        char *candidate = must_alloc((size ? size : 1) + name_size + 2);
        if (size)
            memcpy(candidate, cursor, size);
        else
            candidate[0] = '.', size = 1;
        candidate[size] = '/';
        memcpy(candidate + size + 1, name, name_size + 1);
        if (is_executable_file(candidate) && !(not_buildhook && is_buildhook(candidate)))
            return candidate;
        free(candidate);
        if (!*end)
            return NULL;
        cursor = end;
    }
}

static int named_like_buildhook(const char *path) {
    const char *name = base_name(path);
    return starts_with(name, "buildhook-cc") || starts_with(name, "buildhook-c++");
}

/* invocation.is_buildhook: a name or path that resolves to a buildhook wrapper. */
static int is_buildhook(const char *word) {
    char *located = strchr(word, '/') ? joined(word, "") : path_search(word, 0);
    if (!located)
        return named_like_buildhook(word);
    char real[PATH_MAX];
    int result = realpath(located, real) ? (strcmp(real, own_path) == 0 || named_like_buildhook(real))
                                         : named_like_buildhook(located);
    free(located);
    return result;
}

static const char *const source_suffixes[] = {
    ".c", "c", ".i", "cpp-output",
    ".cc", "c++", ".cp", "c++", ".cxx", "c++", ".cpp", "c++", ".CPP", "c++",
    ".c++", "c++", ".C", "c++", ".ii", "c++-cpp-output",
    ".m", "objective-c", ".mi", "objective-c-cpp-output",
    ".mm", "objective-c++", ".M", "objective-c++",
    ".s", "assembler", ".S", "assembler-with-cpp", ".sx", "assembler-with-cpp",
    ".f", "f77", ".for", "f77", ".F", "f77-cpp-input", ".f90", "f95", ".F90", "f95-cpp-input",
    NULL, NULL,
};

/* The suffix after the last dot of the base name ("" when none, or when the dot starts the name). */
static const char *suffix_of(const char *path) {
    const char *name = base_name(path);
    const char *dot = strrchr(name, '.');
    return dot ? dot : "";
}

static const char *language_of_suffix(const char *suffix) {
    if (!*suffix)
        return NULL;
    for (int index = 0; source_suffixes[index]; index += 2)
        if (strcmp(source_suffixes[index], suffix) == 0)
            return source_suffixes[index + 1];
    return NULL;
}

static int looks_like_program(const char *word) {
    if (word[0] == '-' || word[0] == '@')
        return 0;
    const char *suffix = suffix_of(word);
    if (*suffix && (language_of_suffix(suffix) || strcmp(suffix, ".o") == 0 || strcmp(suffix, ".a") == 0
                    || strcmp(suffix, ".so") == 0 || strcmp(suffix, ".lo") == 0))
        return 0;
    if (strchr(word, '/'))
        return is_executable_file(word);
    char *found = path_search(word, 0);
    free(found);
    return found != NULL;
}

struct words {
    const char **items;
    int count;
};

static void hand_over(void);

/* Every list is filled before the compiler runs, so a command too long for it is handed over. */
static void push(struct words *list, const char *word) {
    if (list->count >= MAX_WORDS)
        hand_over();
    list->items[list->count++] = word;
}

static const char *const launchers[] = {"ccache", "sccache", "distcc", "icecc", "buildcache", NULL};

/* invocation.resolve_invocation: fills *prefix and *args; 0 when the Python side must decide. */
static int resolve_invocation(int argc, char **argv, const char *language, struct words *prefix, struct words *args) {
    int first = 1;
    if (first < argc && looks_like_program(argv[first])) {
        push(prefix, argv[first++]);
        while (prefix->count && is_buildhook(prefix->items[prefix->count - 1])) {
            prefix->count--;
            if (first < argc && looks_like_program(argv[first]))
                push(prefix, argv[first++]);
        }
        if (prefix->count && in_list(base_name(prefix->items[prefix->count - 1]), launchers) && first < argc
            && looks_like_program(argv[first]))
            push(prefix, argv[first++]);
    }
    if (!prefix->count) {
        const char *configured = nonempty_env(strcmp(language, "c++") == 0 ? "BUILDHOOK_CXX" : "BUILDHOOK_CC");
        if (configured) {
            if (strpbrk(configured, "'\"\\"))
                return 0;  /* shlex quoting: Python splits it */
            char *copy = joined(configured, "");
            for (char *word = strtok(copy, " \t\n\r\f\v"); word; word = strtok(NULL, " \t\n\r\f\v")) {
                if (is_buildhook(word))
                    return 0;  /* Python explains */
                push(prefix, word);
            }
            if (!prefix->count)
                return 0;
        } else {
            char *compiler = path_search(strcmp(language, "c++") == 0 ? "c++" : "cc", 1);
            if (!compiler)
                return 0;  /* none: Python explains */
            push(prefix, compiler);
        }
    }
    for (; first < argc; first++)
        push(args, argv[first]);
    return 1;
}

/* flags.compiler_family */
static const char *compiler_family(const char *compiler) {
    char real[PATH_MAX];
    const char *name = realpath(compiler, real) ? base_name(real) : base_name(compiler);
    char lower[256];
    size_t size = strlen(name) < sizeof lower - 1 ? strlen(name) : sizeof lower - 1;
    for (size_t index = 0; index < size; index++)
        lower[index] = (char)(name[index] >= 'A' && name[index] <= 'Z' ? name[index] + 32 : name[index]);
    lower[size] = 0;
    if (strstr(lower, "clang"))
        return "clang";
    if (strstr(lower, "gcc") || strstr(lower, "g++") || strcmp(lower, "cc") == 0 || strcmp(lower, "c++") == 0)
        return "gcc";
    return "unknown";
}

/* ---- the command line (buildhook/wrap/cmdline.py) --------------------------- */

static const char *const separate_argument_options[] = {
    "-o", "-x", "-I", "-D", "-U", "-include", "-imacros", "-isystem", "-idirafter",
    "-iprefix", "-iwithprefix", "-iwithprefixbefore", "-isysroot", "-imultilib",
    "-iquote", "-MF", "-MT", "-MQ", "-Xlinker", "-Xassembler", "-Xpreprocessor",
    "-L", "-l", "-T", "-Tbss", "-Tdata", "-Ttext", "-u", "-z", "-e", "-aux-info",
    "--param", "-B", "-wrapper", "-G", "-A", "--sysroot", "-dumpbase",
    "-dumpbase-ext", "-dumpdir", "-Xclang", "-target", "-arch", "-include-pch",
    "-iframework", "-F", "--entry", "--include", "--output", NULL,
};
static const char *const info_options[] = {
    "--version", "-dumpversion", "-dumpfullversion", "-dumpmachine", "-dumpspecs",
    "--help", "-###", "--target-help", NULL,
};
static const char *const no_object_options[] = {"-E", "-M", "-MM", "-fsyntax-only", NULL};
static const char *const live_patching_conflicts[] = {
    "-fipa-icf", "-fipa-icf-functions", "-fipa-icf-variables", "-fipa-ra",
    "-fipa-pure-const", "-fipa-modref", "-fipa-reference",
    "-fipa-reference-addressable", "-fipa-stack-alignment", "-fipa-pta",
    "-fipa-bit-cp", "-fipa-vrp", "-fwhole-program", NULL,
};

struct source {
    const char *path;
    const char *language;
};

enum mode { HAND_OVER = 0, COMPILE, LINK };

struct command {
    struct source sources[MAX_WORDS];
    int nsources, other_inputs;
    const char *output;
    int conflicts;      /* an option -flive-patching=inline-clone cannot go with */
    int user_map;       /* -Wl,-Map=… or -Wl,-M: the user's own map (Python reads theirs) */
    int user_build_id;  /* -Wl,--build-id[=…]: no build-id flag is added */
};

/* A linker word (from -Wl, or -Xlinker) as DriverCommand.user_map_file / user_prints_map /
   user_build_id look at it. */
static void linker_word(struct command *command, const char *word, size_t size) {
    if ((size >= 5 && memcmp(word, "-Map=", 5) == 0) || (size >= 6 && memcmp(word, "--Map=", 6) == 0)
        || (size == 4 && memcmp(word, "-Map", 4) == 0) || (size == 5 && memcmp(word, "--Map", 5) == 0)
        || (size == 2 && memcmp(word, "-M", 2) == 0) || (size == 11 && memcmp(word, "--print-map", 11) == 0))
        command->user_map = 1;
    if ((size == 10 && memcmp(word, "--build-id", 10) == 0) || (size > 10 && memcmp(word, "--build-id=", 11) == 0))
        command->user_build_id = 1;
}

/* parse_driver_command for the two shapes handled here: a `-c` compile with sources (COMPILE)
   or a link of objects and libraries (LINK), with no response file and no -flto; HAND_OVER
   for every other mode (cmdline._mode) and anything else. */
static enum mode parse_command(const struct words *args, struct command *command) {
    const char *language = NULL;
    int compile = 0, lto = 0;
    memset(command, 0, sizeof *command);
    for (int index = 0; index < args->count; index++)
        if (args->items[index][0] == '@' && args->items[index][1])
            return HAND_OVER;  /* a response file, maybe an option's argument: Python expands them */
    for (int index = 0; index < args->count; index++) {
        const char *word = args->items[index];
        const char *next = index + 1 < args->count ? args->items[index + 1] : NULL;
        if (strcmp(word, "-") == 0 || word[0] != '-') {
            const char *found = language ? language : (strcmp(word, "-") == 0 ? NULL : language_of_suffix(suffix_of(word)));
            if (found) {
                command->sources[command->nsources].path = word;
                command->sources[command->nsources++].language = found;
            } else {
                command->other_inputs++;
            }
            continue;
        }
        if (in_list(word, live_patching_conflicts))
            command->conflicts = 1;
        if (starts_with(word, "-Wl,")) {
            for (const char *part = word + 4; *part;) {
                const char *comma = strchrnul(part, ',');
                if (comma > part)
                    linker_word(command, part, (size_t)(comma - part));
                part = *comma ? comma + 1 : comma;
            }
        } else if (strcmp(word, "-Xlinker") == 0 && next) {
            linker_word(command, next, strlen(next));
        }
        if (strcmp(word, "-x") == 0 && next) {
            language = strcmp(next, "none") == 0 ? NULL : next;
        } else if (starts_with(word, "-x") && word[2]) {
            language = strcmp(word + 2, "none") == 0 ? NULL : word + 2;
        } else if (strcmp(word, "-o") == 0 && next) {
            command->output = next;
        } else if (starts_with(word, "-o") && word[2]) {
            command->output = word + 2;
        } else if (strcmp(word, "-flto") == 0 || starts_with(word, "-flto=")) {
            lto = 1;
        } else if (strcmp(word, "-fno-lto") == 0) {
            lto = 0;
        } else if (strcmp(word, "-c") == 0) {
            compile = 1;
        } else if (strcmp(word, "-S") == 0 || strcmp(word, "-r") == 0 || in_list(word, no_object_options)
                   || in_list(word, info_options) || starts_with(word, "-print-") || starts_with(word, "--print-")
                   || starts_with(word, "--help=")) {
            return HAND_OVER;  /* another mode */
        }
        if (next && in_list(word, separate_argument_options))
            index++;
    }
    if (lto)
        return HAND_OVER;  /* refused with its reason there */
    if (compile)
        return command->nsources ? COMPILE : HAND_OVER;
    /* A link; with sources it compiles them first, which the Python side does (each its own record). */
    return command->other_inputs && !command->nsources ? LINK : HAND_OVER;
}

/* cmdline.implicit_object_name */
static char *implicit_object_name(const char *source) {
    const char *name = base_name(source);
    const char *dot = strrchr(name, '.');
    size_t stem = dot && dot != name ? (size_t)(dot - name) : strlen(name);
    char *object = must_alloc(stem + 3);
    memcpy(object, name, stem);
    memcpy(object + stem, ".o", 3);
    return object;
}

/* main.glob_match: `*`-only globs; -1 for a glob Python must match. */
static int glob_match(const char *name, const char *pattern, size_t pattern_size) {
    for (size_t index = 0; index < pattern_size; index++)
        if (pattern[index] == '?' || pattern[index] == '[' || pattern[index] == ']')
            return -1;
    const char *star = memchr(pattern, '*', pattern_size);
    size_t name_size = strlen(name);
    if (!star)
        return name_size == pattern_size && memcmp(name, pattern, pattern_size) == 0;
    const char *last_star = pattern + pattern_size - 1;
    while (*last_star != '*')
        last_star--;
    size_t head = (size_t)(star - pattern), tail = (size_t)(pattern + pattern_size - last_star - 1);
    if (name_size < head + tail || memcmp(name, pattern, head) != 0
        || memcmp(name + name_size - tail, last_star + 1, tail) != 0)
        return 0;
    size_t position = head, end = name_size - tail;
    const char *piece = star + 1;
    while (piece <= last_star) {
        const char *piece_end = memchr(piece, '*', (size_t)(last_star - piece) + 1);
        size_t size = (size_t)(piece_end - piece);
        if (size) {
            const char *found = memmem(name + position, end - position, piece, size);
            if (!found)
                return 0;
            position = (size_t)(found - name) + size;
        }
        piece = piece_end + 1;
    }
    return position <= end;
}

/* Whether *output* is skipped by BUILDHOOK_SKIP_OUTPUTS (main.recording_wanted); -1: ask Python. */
static int skipped(const char *output) {
    const char *globs = getenv("BUILDHOOK_SKIP_OUTPUTS");
    if (!globs)
        globs = "conftest*,cmTC_*";
    char *path = normpath(output);
    int result = 0;
    for (char *part = path; part && !result;) {
        char *slash = strchr(part, '/');
        if (slash)
            *slash = 0;
        for (const char *cursor = globs; result == 0;) {
            const char *end = strchrnul(cursor, ',');
            const char *start = cursor;
            const char *stop = end;
            while (start < stop && (*start == ' ' || (*start >= '\t' && *start <= '\r')))
                start++;
            while (stop > start && (stop[-1] == ' ' || (stop[-1] >= '\t' && stop[-1] <= '\r')))
                stop--;
            if (stop > start)
                result = glob_match(part, start, (size_t)(stop - start));
            if (!*end)
                break;
            cursor = end + 1;
        }
        part = slash ? slash + 1 : NULL;
    }
    free(path);
    return result;
}

static int regular_or_new(const char *path) {
    struct stat info;
    if (stat(path, &info) == 0)
        return S_ISREG(info.st_mode);
    return errno == ENOENT;
}

/* ---- SHA-256 (FIPS 180-4) --------------------------------------------------- */

static const uint32_t sha_k[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

#define ROTR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void sha256_block(uint32_t state[8], const unsigned char *block) {
    uint32_t w[64];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)block[4 * i] << 24 | (uint32_t)block[4 * i + 1] << 16 | (uint32_t)block[4 * i + 2] << 8
               | block[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ROTR(w[i - 15], 7) ^ ROTR(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ROTR(w[i - 2], 17) ^ ROTR(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = state[0], b = state[1], c = state[2], d = state[3];
    uint32_t e = state[4], f = state[5], g = state[6], h = state[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = h + (ROTR(e, 6) ^ ROTR(e, 11) ^ ROTR(e, 25)) + ((e & f) ^ (~e & g)) + sha_k[i] + w[i];
        uint32_t t2 = (ROTR(a, 2) ^ ROTR(a, 13) ^ ROTR(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        h = g, g = f, f = e, e = d + t1, d = c, c = b, b = a, a = t1 + t2;
    }
    state[0] += a, state[1] += b, state[2] += c, state[3] += d;
    state[4] += e, state[5] += f, state[6] += g, state[7] += h;
}

static void sha256_blocks_portable(uint32_t state[8], const unsigned char *data, size_t blocks) {
    for (; blocks; blocks--, data += 64)
        sha256_block(state, data);
}

/* The same with the x86 SHA extensions (most x86-64 CPUs since 2017): a link hashes its binary, map and
   objects, and the portable code alone is a measurable share of a small project's link. */
__attribute__((target("sha,sse4.1"))) static void sha256_blocks_sha_ni(uint32_t state[8], const unsigned char *data,
                                                                         size_t blocks) {
    const __m128i byte_swap = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
    __m128i cdab = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&state[0]), 0xB1);
    __m128i efgh = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&state[4]), 0x1B);
    __m128i abef = _mm_alignr_epi8(cdab, efgh, 8);
    __m128i cdgh = _mm_blend_epi16(efgh, cdab, 0xF0);
    for (; blocks; blocks--, data += 64) {
        __m128i abef_before = abef, cdgh_before = cdgh, w[16];
        for (int quad = 0; quad < 16; quad++) {
            if (quad < 4) {
                w[quad] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(data + 16 * quad)), byte_swap);
            } else {  /* W[t] = s1(W[t-2]) + W[t-7] + s0(W[t-15]) + W[t-16], four at a time */
                __m128i next = _mm_sha256msg1_epu32(w[quad - 4], w[quad - 3]);
                next = _mm_add_epi32(next, _mm_alignr_epi8(w[quad - 1], w[quad - 2], 4));
                w[quad] = _mm_sha256msg2_epu32(next, w[quad - 1]);
            }
            __m128i message = _mm_add_epi32(w[quad], _mm_loadu_si128((const __m128i *)&sha_k[4 * quad]));
            cdgh = _mm_sha256rnds2_epu32(cdgh, abef, message);
            abef = _mm_sha256rnds2_epu32(abef, cdgh, _mm_shuffle_epi32(message, 0x0E));
        }
        abef = _mm_add_epi32(abef, abef_before);
        cdgh = _mm_add_epi32(cdgh, cdgh_before);
    }
    __m128i feba = _mm_shuffle_epi32(abef, 0x1B);
    __m128i dchg = _mm_shuffle_epi32(cdgh, 0xB1);
    _mm_storeu_si128((__m128i *)&state[0], _mm_blend_epi16(feba, dchg, 0xF0));
    _mm_storeu_si128((__m128i *)&state[4], _mm_alignr_epi8(dchg, feba, 8));
}

/* The SHA extensions when the CPU has them; BUILDHOOK_PORTABLE_SHA256 (for the tests) forces the portable code. */
static void (*sha256_blocks(void))(uint32_t *, const unsigned char *, size_t) {
    unsigned int eax, ebx, ecx, edx;
    int sha = __get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx) && (ebx & (1u << 29));
    int sse41 = __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & (1u << 19)) && (ecx & (1u << 9));  /* SSSE3 too */
    return sha && sse41 && !getenv("BUILDHOOK_PORTABLE_SHA256") ? sha256_blocks_sha_ni : sha256_blocks_portable;
}

static void sha256_hex(const unsigned char *data, size_t size, char hex[65]) {
    static void (*blocks)(uint32_t *, const unsigned char *, size_t);
    if (!blocks)
        blocks = sha256_blocks();
    uint32_t state[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                         0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    size_t whole = size & ~(size_t)63;
    blocks(state, data, whole / 64);
    unsigned char last[128] = {0};
    size_t rest = size - whole;
    memcpy(last, data + whole, rest);
    last[rest] = 0x80;
    size_t tail = rest < 56 ? 64 : 128;
    uint64_t bits = (uint64_t)size * 8;
    for (int i = 0; i < 8; i++)
        last[tail - 1 - i] = (unsigned char)(bits >> (8 * i));
    blocks(state, last, tail / 64);
    for (int i = 0; i < 8; i++)
        sprintf(hex + 8 * i, "%08x", state[i]);
}

/* ---- the store (buildhook/store/blobs.py, journal.py) ----------------------- */

static char failure[2 * PATH_MAX + 256];  /* what went wrong while recording, for the one line */

static int fail(const char *what, const char *path) {
    snprintf(failure, sizeof failure, "%s %s: %s", what, path, strerror(errno));
    return -1;
}

static int make_folders(char *path) {
    for (char *slash = strchr(path + 1, '/');; slash = strchr(slash + 1, '/')) {
        if (slash)
            *slash = 0;
        int made = mkdir(path, 0777) == 0 || errno == EEXIST;
        struct stat info;
        int folder = made && stat(path, &info) == 0 && S_ISDIR(info.st_mode);
        if (!folder) {
            if (made)
                errno = ENOTDIR;
            fail("cannot create folder", path);
            if (slash)
                *slash = '/';
            return -1;
        }
        if (!slash)
            return 0;
        *slash = '/';
    }
}

static int read_file(const char *path, unsigned char **data, size_t *size) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return fail("cannot read", path);
    struct stat info;
    if (fstat(fd, &info) != 0) {
        close(fd);
        return fail("cannot read", path);
    }
    size_t capacity = (size_t)info.st_size + 1, used = 0;
    unsigned char *buffer = must_alloc(capacity);
    for (;;) {
        if (used == capacity) {
            unsigned char *bigger = realloc(buffer, capacity *= 2);
            if (!bigger)
                exit(1);
            buffer = bigger;
        }
        ssize_t got = read(fd, buffer + used, capacity - used);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            close(fd);
            free(buffer);
            return fail("cannot read", path);
        }
        if (got == 0)
            break;
        used += (size_t)got;
    }
    close(fd);
    *data = buffer;
    *size = used;
    return 0;
}

static int write_all(int fd, const char *data, size_t size) {
    while (size) {
        ssize_t written = write(fd, data, size);
        if (written < 0 && errno == EINTR)
            continue;
        if (written < 0)
            return -1;
        data += written;
        size -= (size_t)written;
    }
    return 0;
}

/* BlobStore.put_file: the object's bytes under objects/ab/cdef…, written privately, renamed into place. */
static int put_blob(const char *store, const char *object, char sha256[65]) {
    unsigned char *data;
    size_t size;
    if (read_file(object, &data, &size) != 0)
        return -1;
    sha256_hex(data, size, sha256);
    char final[PATH_MAX + 256], folder[PATH_MAX], tmp_dir[PATH_MAX], temporary[PATH_MAX + 256];
    snprintf(folder, sizeof folder, "%s/objects/%.2s", store, sha256);
    snprintf(final, sizeof final, "%s/%s", folder, sha256 + 2);
    struct stat info;
    if (stat(final, &info) == 0 && S_ISREG(info.st_mode)) {
        free(data);
        return 0;
    }
    snprintf(tmp_dir, sizeof tmp_dir, "%s/objects/tmp", store);
    if (make_folders(folder) != 0 || make_folders(tmp_dir) != 0) {
        free(data);
        return -1;
    }
    unsigned char noise[6];
    if (getrandom(noise, sizeof noise, 0) != (ssize_t)sizeof noise)
        memset(noise, 0, sizeof noise);
    snprintf(temporary, sizeof temporary, "%s/%.16s.%d.%02x%02x%02x%02x%02x%02x", tmp_dir, sha256, (int)getpid(),
             noise[0], noise[1], noise[2], noise[3], noise[4], noise[5]);
    int fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444);
    if (fd < 0) {
        free(data);
        return fail("cannot write", temporary);
    }
    int written = write_all(fd, (const char *)data, size);
    free(data);
    if (written != 0 || close(fd) != 0 || rename(temporary, final) != 0) {
        fail("cannot write", final);
        unlink(temporary);
        return -1;
    }
    return 0;
}

struct text {
    char *data;
    size_t size, capacity;
};

static void append(struct text *text, const char *data, size_t size) {
    if (text->size + size + 1 > text->capacity) {
        text->capacity = (text->size + size + 1) * 2;
        char *bigger = realloc(text->data, text->capacity);
        if (!bigger)
            exit(1);
        text->data = bigger;
    }
    memcpy(text->data + text->size, data, size);
    text->size += size;
    text->data[text->size] = 0;
}

/* A JSON string: quotes, backslashes and control characters escaped, other bytes as they are
   (journal.drain decodes the line as UTF-8 with surrogateescape, as the Python writer's bytes). */
static void append_json_string(struct text *text, const char *value) {
    append(text, "\"", 1);
    for (const unsigned char *cursor = (const unsigned char *)value; *cursor; cursor++) {
        char escaped[8];
        if (*cursor == '"' || *cursor == '\\') {
            escaped[0] = '\\', escaped[1] = (char)*cursor;
            append(text, escaped, 2);
        } else if (*cursor < 0x20) {
            snprintf(escaped, sizeof escaped, "\\u%04x", *cursor);
            append(text, escaped, 6);
        } else {
            append(text, (const char *)cursor, 1);
        }
    }
    append(text, "\"", 1);
}

static void append_json_words(struct text *text, const char *const *words, int count) {
    append(text, "[", 1);
    for (int index = 0; index < count; index++) {
        if (index)
            append(text, ", ", 2);
        append_json_string(text, words[index]);
    }
    append(text, "]", 1);
}

/* Strict UTF-8 (no surrogates, no overlong forms): what SQLite's text, and so the store, can hold. */
static int valid_utf8(const char *text) {
    for (const unsigned char *cursor = (const unsigned char *)text; *cursor;) {
        unsigned char lead = *cursor++;
        if (lead < 0x80)
            continue;
        int more = lead >= 0xc2 && lead <= 0xdf ? 1 : lead >= 0xe0 && lead <= 0xef ? 2 : lead >= 0xf0 && lead <= 0xf4 ? 3 : -1;
        if (more < 0)
            return 0;
        uint32_t code = lead & (0x3f >> more);
        for (int index = 0; index < more; index++, cursor++) {
            if ((*cursor & 0xc0) != 0x80)
                return 0;
            code = code << 6 | (*cursor & 0x3f);
        }
        if ((more == 2 && (code < 0x800 || (code >= 0xd800 && code <= 0xdfff))) || (more == 3 && (code < 0x10000 || code > 0x10ffff)))
            return 0;
    }
    return 1;
}

/* journal.append_compiles (and link_journal's lines): every line in one write, under a shared flock. */
static int append_journal(const char *store, const char *name, const struct text *lines) {
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s", store);
    if (make_folders(path) != 0)
        return -1;
    snprintf(path, sizeof path, "%s/%s", store, name);
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return fail("cannot write", path);
    int ok = flock(fd, LOCK_SH) == 0 && write_all(fd, lines->data, lines->size) == 0;
    if (!ok)
        fail("cannot write", path);
    close(fd);
    return ok ? 0 : -1;
}

/* ---- running the compiler ------------------------------------------------------ */

static void ignore_interrupt(int signo) {
    (void)signo;  /* the compiler got the same SIGINT: wait for it to go, as main.run does */
}

static int run_compiler(const struct words *command) {
    setenv("BUILDHOOK_DEPTH", "1", 1);  /* Invocation.child_environment: one level deeper (never before a hand-over) */
    struct sigaction action = {0};
    action.sa_handler = ignore_interrupt;
    sigaction(SIGINT, &action, NULL);  /* a caught signal is reset to default in the child */
    pid_t pid;
    char **words = (char **)command->items;
    int error = posix_spawnp(&pid, words[0], NULL, NULL, words, environ);
    if (error) {
        fprintf(stderr, "%s: error: cannot run %s: %s\n", program, words[0], strerror(error));
        exit(1);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) {
            fprintf(stderr, "%s: error: lost the compiler: %s\n", program, strerror(errno));
            exit(1);
        }
    if (WIFSIGNALED(status)) {
        signal(WTERMSIG(status), SIG_DFL);
        kill(getpid(), WTERMSIG(status));
        return (-WTERMSIG(status)) & 0xff;
    }
    return WEXITSTATUS(status);
}

/* ---- handing over to the Python wrapper ---------------------------------------- */

static char **original_argv;
static char own_folder[PATH_MAX];
static char header_folder[PATH_MAX];
static const char *language = "c";

static void hand_over(void) {
    char *fallback = joined(own_folder, "/" FALLBACK_NAME);
    setenv("BUILDHOOK_SHIM_PROGRAM", program, 1);
    setenv("BUILDHOOK_SHIM_LANGUAGE", language, 1);
    if (header_folder[0])
        setenv("BUILDHOOK_SHIM_HEADER", header_folder, 1);
    original_argv[0] = fallback;
    execv(fallback, original_argv);
    fprintf(stderr, "%s: error: cannot run %s: %s; reinstall buildhook\n", program, fallback, strerror(errno));
    exit(1);
}

/* ---- the compile and the link -------------------------------------------------------- */

/* What main worked out before choosing a path. */
struct plan {
    struct words prefix, args;
    struct command command;
    const char *family;
    char cwd[PATH_MAX];
    int function_sections, data_sections, live_patching, header, build_id, link_map, record, plain_on_error;
};

static struct words run_words(const struct plan *plan, const struct words *injected) {
    struct words run = {must_alloc(MAX_WORDS * sizeof(char *)), 0};
    for (int index = 0; index < plan->prefix.count; index++)
        push(&run, plan->prefix.items[index]);
    for (int index = 0; index < injected->count; index++)
        push(&run, injected->items[index]);
    for (int index = 0; index < plan->args.count; index++)
        push(&run, plan->args.items[index]);
    push(&run, NULL);
    run.count--;
    return run;
}

/* The injected words followed by the command's own: the "flags" a record keeps. */
static struct words recorded_flags(const struct plan *plan, const struct words *injected) {
    struct words flags = {must_alloc(MAX_WORDS * sizeof(char *)), 0};
    for (int index = 0; index < injected->count; index++)
        push(&flags, injected->items[index]);
    for (int index = 0; index < plan->args.count; index++)
        push(&flags, plan->args.items[index]);
    return flags;
}

/* The first text that is not UTF-8 among the compiler words, the flags and *others*, or NULL. */
static const char *not_utf8(const struct plan *plan, const struct words *flags, const char *const *others) {
    for (; *others; others++)
        if (!valid_utf8(*others))
            return *others;
    for (int word = 0; word < plan->prefix.count + flags->count; word++) {
        const char *text = word < plan->prefix.count ? plan->prefix.items[word] : flags->items[word - plan->prefix.count];
        if (!valid_utf8(text))
            return text;
    }
    return NULL;
}

static int refuse_not_utf8(const char *text) {  /* journal.NotUtf8Error: refused before it is written */
    snprintf(failure, sizeof failure, "'%s' is not valid UTF-8, and the store records only UTF-8 paths and flags", text);
    return -1;
}

/* The start of a journal line: a fresh entry id and the time. */
static int append_line_start(struct text *lines, const char *about) {
    unsigned char entry[8];
    struct timeval now;
    if (getrandom(entry, sizeof entry, 0) != (ssize_t)sizeof entry) {
        errno = EIO;
        return fail("cannot draw an entry id for", about);
    }
    gettimeofday(&now, NULL);
    char field[64];
    snprintf(field, sizeof field, "[\"%02x%02x%02x%02x%02x%02x%02x%02x\", %ld.%06ld, ", entry[0], entry[1], entry[2],
             entry[3], entry[4], entry[5], entry[6], entry[7], (long)now.tv_sec, (long)now.tv_usec);
    append(lines, field, strlen(field));
    return 0;
}

/* main.record's failure: warn and keep the outputs (BUILDHOOK_ON_ERROR=plain), or remove them so that
   the next make retries the step, and fail it. */
static int recording_failed(const struct plan *plan, const char *store, char *const *outputs, int count) {
    if (plan->plain_on_error) {
        fprintf(stderr, "%s: warning: not recorded in store %s: %s\n", program, store, failure);
        return 0;
    }
    for (int index = 0; index < count; index++)
        if (regular_or_new(outputs[index]))
            unlink(outputs[index]);
    fprintf(stderr, "%s: error: could not record in store %s: %s\n", program, store, failure);
    return 1;
}

struct object {
    char *source, *path;
    const char *language;
};

/* main._Wrapper.compile */
static int compile(const struct plan *plan) {
    const struct command *command = &plan->command;
    int gcc = strcmp(plan->family, "gcc") == 0, clang = strcmp(plan->family, "clang") == 0;
    struct words injected = {must_alloc(8 * sizeof(char *)), 0};
    if (plan->function_sections && (gcc || clang))
        push(&injected, "-ffunction-sections");
    if (plan->data_sections && (gcc || clang))
        push(&injected, "-fdata-sections");
    if (plan->live_patching && gcc)
        push(&injected, "-flive-patching=inline-clone");
    if (plan->header && (gcc || clang)) {
        push(&injected, "-idirafter");
        push(&injected, header_folder);
    }
    /* Which objects will be recorded: decided before the compile, as main.compile does. */
    struct object *objects = must_alloc((size_t)command->nsources * sizeof *objects);
    char **paths = must_alloc((size_t)command->nsources * sizeof *paths);
    int nobjects = 0;
    for (int index = 0; index < command->nsources; index++) {
        char *output = command->output && command->nsources == 1 ? joined(command->output, "")
                                                                  : implicit_object_name(command->sources[index].path);
        char *path = absolute(output, plan->cwd);
        int skip = plan->record ? skipped(output) : 1;
        if (skip < 0)
            hand_over();
        if (!skip && regular_or_new(path)) {
            objects[nobjects].source = absolute(command->sources[index].path, plan->cwd);
            objects[nobjects].path = paths[nobjects] = path;
            objects[nobjects++].language = command->sources[index].language;
        }
        free(output);
    }
    char *store = NULL;
    if (nobjects && !(store = store_path(plan->cwd)))
        hand_over();
    struct words run = run_words(plan, &injected);
    int status = run_compiler(&run);
    if (status != 0 || !nobjects)
        return status;

    struct text lines = {0};
    struct words flags = recorded_flags(plan, &injected);
    for (int index = 0; index < nobjects; index++) {
        struct stat object_info;
        if (stat(objects[index].path, &object_info) != 0 || !S_ISREG(object_info.st_mode))
            continue;  /* e.g. `-o /dev/null` */
        const char *texts[] = {plan->cwd, objects[index].source, objects[index].path, NULL};
        const char *bad = not_utf8(plan, &flags, texts);
        char sha256[65];
        if ((bad && refuse_not_utf8(bad)) || put_blob(store, objects[index].path, sha256) != 0
            || append_line_start(&lines, objects[index].path) != 0)
            return recording_failed(plan, store, paths, nobjects);
        append_json_string(&lines, plan->cwd);
        append(&lines, ", ", 2);
        append_json_string(&lines, objects[index].source);
        append(&lines, ", ", 2);
        append_json_string(&lines, objects[index].path);
        append(&lines, ", ", 2);
        append_json_string(&lines, objects[index].language);
        append(&lines, ", ", 2);
        append_json_words(&lines, plan->prefix.items, plan->prefix.count);
        append(&lines, ", ", 2);
        append_json_words(&lines, flags.items, flags.count);
        append(&lines, ", \"", 3);
        append(&lines, sha256, 64);
        append(&lines, "\"]\n", 3);
    }
    if (lines.size && append_journal(store, "compiles.journal", &lines) != 0)
        return recording_failed(plan, store, paths, nobjects);
    return 0;
}

/* Whether a link of *binary* must go to the Python wrapper for its post-link patch (postlink.py):
   the binary has a release, or the store predates released.list (Python writes it). */
static int needs_post_link_patch(const char *store, const char *binary) {
    const char *setting = getenv("BUILDHOOK_PATCH_FROM");
    if (setting) {
        while (*setting == ' ' || (*setting >= '\t' && *setting <= '\r'))
            setting++;
        if (strncasecmp(setting, "off", 3) == 0) {
            const char *rest = setting + 3;
            while (*rest == ' ' || (*rest >= '\t' && *rest <= '\r'))
                rest++;
            if (!*rest)
                return 0;
        }
    }
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/released.list", store);
    unsigned char *data;
    size_t size;
    if (read_file(path, &data, &size) != 0) {
        if (errno != ENOENT)
            return 1;
        snprintf(path, sizeof path, "%s/records.sqlite", store);
        struct stat info;
        return stat(path, &info) == 0 || errno != ENOENT;
    }
    size_t length = strlen(binary);
    int found = 0;
    for (size_t start = 0; start < size && !found;) {
        unsigned char *newline = memchr(data + start, '\n', size - start);
        size_t end = newline ? (size_t)(newline - data) : size;
        found = end - start == length && memcmp(data + start, binary, length) == 0;
        start = end + 1;
    }
    free(data);
    return found;
}

/* An input the link record keeps the bytes of: a relocatable object or an archive (recording.py). */
static int kept_input(const char *path) {
    static const char *const toolchain[] = {"/usr/lib/", "/usr/lib64/", "/usr/libexec/", "/lib/", "/lib64/", NULL};
    char real[PATH_MAX];
    if (!realpath(path, real))
        return 0;
    for (int index = 0; toolchain[index]; index++)
        if (starts_with(real, toolchain[index]))
            return 0;  /* hashed from the disk when the line is folded: never part of a patch */
    unsigned char head[18];
    int fd = open(real, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t got = read(fd, head, sizeof head);
    close(fd);
    if (got >= 8 && (memcmp(head, "!<arch>\n", 8) == 0 || memcmp(head, "!<thin>\n", 8) == 0))
        return 1;
    return got == 18 && memcmp(head, "\177ELF", 4) == 0 && head[5] == 1 && head[16] == 1 && head[17] == 0;
}

/* main._Wrapper.link for a link of objects and libraries.  The link is recorded as one line of
   <store>/links.journal: the binary's and the map's blobs and a blob of every object and archive the
   map LOADs (their bytes as linked); the store folds it into a link record (store/link_journal.py),
   parsing the map with the same code as a link recorded by the Python wrapper. */
static int link_program(const struct plan *plan) {
    const struct command *command = &plan->command;
    if (command->conflicts && plan->live_patching && strcmp(plan->family, "gcc") == 0)
        hand_over();  /* refused with its reason there */
    if (command->user_map)
        hand_over();  /* the user's map is read there */
    const char *output = command->output ? command->output : "a.out";
    char *output_path = absolute(output, plan->cwd);
    int skip = plan->record ? skipped(output) : 1;
    if (skip < 0)
        hand_over();
    int wanted = !skip && regular_or_new(output_path);
    char *store = NULL;
    char binary[2 * PATH_MAX + 2];
    if (wanted) {
        struct stat info;
        if (!(store = store_path(plan->cwd)) || (lstat(output_path, &info) == 0 && S_ISLNK(info.st_mode)))
            hand_over();
        char *folder = joined(output_path, "");
        *strrchr(folder, '/') = 0;
        char real_folder[PATH_MAX];
        if (!realpath(folder[0] ? folder : "/", real_folder) || strlen(real_folder) + strlen(base_name(output_path)) + 2 > PATH_MAX)
            hand_over();
        snprintf(binary, sizeof binary, "%s/%s", strcmp(real_folder, "/") == 0 ? "" : real_folder, base_name(output_path));
        free(folder);
        if (needs_post_link_patch(store, binary))
            hand_over();
    }
    struct words injected = {must_alloc(4 * sizeof(char *)), 0};
    if (plan->build_id && !command->user_build_id)
        push(&injected, "-Wl,--build-id");
    char scratch[PATH_MAX], map_path[PATH_MAX + 16], map_flag[PATH_MAX + 32];
    scratch[0] = 0;
    if (wanted && plan->link_map) {
        const char *tmp = nonempty_env("TMPDIR");
        snprintf(scratch, sizeof scratch, "%s/buildhook-XXXXXX", tmp ? tmp : "/tmp");
        if (!mkdtemp(scratch))
            hand_over();
        snprintf(map_path, sizeof map_path, "%s/link.map", scratch);
        snprintf(map_flag, sizeof map_flag, "-Wl,-Map=%s", map_path);
        push(&injected, map_flag);
    }
    struct words run = run_words(plan, &injected);
    int status = run_compiler(&run);
    int result = status;
    if (status == 0 && wanted) {
        struct text lines = {0};
        struct words flags = recorded_flags(plan, &injected);
        const char *texts[] = {plan->cwd, binary, NULL};
        const char *bad = not_utf8(plan, &flags, texts);
        char sha256[65], map_sha256[65] = "";
        unsigned char *map = NULL;
        size_t map_size = 0;
        int ok = !(bad && refuse_not_utf8(bad)) && put_blob(store, binary, sha256) == 0
                 && (!scratch[0] || (put_blob(store, map_path, map_sha256) == 0 && read_file(map_path, &map, &map_size) == 0))
                 && append_line_start(&lines, binary) == 0;
        if (ok) {
            append_json_string(&lines, plan->cwd);
            append(&lines, ", ", 2);
            append_json_string(&lines, binary);
            append(&lines, ", \"", 3);
            append(&lines, sha256, 64);
            append(&lines, "\", ", 3);
            if (map_sha256[0]) {
                append(&lines, "\"", 1);
                append(&lines, map_sha256, 64);
                append(&lines, "\", ", 3);
            } else {
                append(&lines, "null, ", 6);
            }
            append_json_words(&lines, plan->prefix.items, plan->prefix.count);
            append(&lines, ", ", 2);
            append_json_words(&lines, flags.items, flags.count);
            append(&lines, ", {", 3);
            int first = 1;
            for (size_t start = 0; ok && start < map_size;) {  /* every `LOAD path` line */
                unsigned char *newline = memchr(map + start, '\n', map_size - start);
                size_t end = newline ? (size_t)(newline - map) : map_size;
                if (end - start > 5 && memcmp(map + start, "LOAD ", 5) == 0) {
                    size_t last = end;
                    while (last > start + 5 && (map[last - 1] == ' ' || map[last - 1] == '\r' || map[last - 1] == '\t'))
                        last--;
                    char *named = strndup((const char *)map + start + 5, last - start - 5);
                    char *path = absolute(named, plan->cwd);
                    char input_sha256[65];
                    if (kept_input(path)) {
                        if (!valid_utf8(path))
                            ok = !refuse_not_utf8(path);
                        else if (put_blob(store, path, input_sha256) != 0)
                            ok = 0;
                        else {
                            if (!first)
                                append(&lines, ", ", 2);
                            first = 0;
                            append_json_string(&lines, path);
                            append(&lines, ": \"", 3);
                            append(&lines, input_sha256, 64);
                            append(&lines, "\"", 1);
                        }
                    }
                    free(named);
                    free(path);
                }
                start = end + 1;
            }
            append(&lines, "}]\n", 3);
        }
        free(map);
        if (!ok || append_journal(store, "links.journal", &lines) != 0)
            result = recording_failed(plan, store, &output_path, 1);
    }
    if (scratch[0]) {
        unlink(map_path);
        rmdir(scratch);
    }
    return result;
}

int main(int argc, char **argv) {
    original_argv = argv;
    if (argc > 0 && argv[0][0])
        program = base_name(argv[0]);
    if (!realpath("/proc/self/exe", own_path)) {
        fprintf(stderr, "%s: error: cannot find itself: %s\n", program, strerror(errno));
        return 1;
    }
    snprintf(own_folder, sizeof own_folder, "%s", own_path);
    *strrchr(own_folder, '/') = 0;
    language = strstr(base_name(own_path), "c++") ? "c++" : "c";
    const char *headers[] = {joined(own_folder, HEADER_FOLDER), SOURCE_HEADER_FOLDER, NULL};
    for (int index = 0; headers[index] && !header_folder[0]; index++) {
        char *header_file = joined(headers[index], "/buildhook.h");
        if (headers[index][0] && access(header_file, R_OK) == 0 && realpath(headers[index], header_folder) == NULL)
            header_folder[0] = 0;
        free(header_file);
    }

    /* Settings: every one checked as settings.Settings would, so a value the Python side rejects
       reaches it and is explained there. */
    const char *booleans[] = {"BUILDHOOK_FUNCTION_SECTIONS", "BUILDHOOK_DATA_SECTIONS", "BUILDHOOK_LIVE_PATCHING",
                              "BUILDHOOK_HEADER", "BUILDHOOK_BUILD_ID", "BUILDHOOK_LINK_MAP", "BUILDHOOK_RECORD",
                              "BUILDHOOK_DISABLE", "BUILDHOOK_PATCH_STRICT", NULL};
    int values[16];
    int defaults[] = {YES, YES, YES, YES, YES, YES, YES, NO, NO};
    for (int index = 0; booleans[index]; index++)
        if ((values[index] = boolean_setting(booleans[index], defaults[index])) == UNUSABLE)
            hand_over();
    static struct plan plan;
    plan.function_sections = values[0], plan.data_sections = values[1], plan.live_patching = values[2];
    plan.header = values[3], plan.build_id = values[4], plan.link_map = values[5], plan.record = values[6];
    const char *on_error = getenv("BUILDHOOK_ON_ERROR");
    if (on_error && strcmp(on_error, "fail") != 0 && strcmp(on_error, "plain") != 0)
        hand_over();
    plan.plain_on_error = on_error && strcmp(on_error, "plain") == 0;
    const char *depth = getenv("BUILDHOOK_DEPTH");
    if (values[7] || (depth && *depth && strcmp(depth, "0") != 0) || (plan.header && !header_folder[0]))
        hand_over();  /* BUILDHOOK_DISABLE, nested, or no buildhook.h beside it */
    char *config = config_path();
    struct stat info;
    if (!config || stat(config, &info) == 0 || errno != ENOENT)
        hand_over();  /* a config file: Python reads TOML */

    plan.prefix = (struct words){must_alloc(MAX_WORDS * sizeof(char *)), 0};
    plan.args = (struct words){must_alloc(MAX_WORDS * sizeof(char *)), 0};
    if (!resolve_invocation(argc, argv, language, &plan.prefix, &plan.args) || !getcwd(plan.cwd, sizeof plan.cwd))
        hand_over();
    plan.family = compiler_family(plan.prefix.items[plan.prefix.count - 1]);
    enum mode mode = parse_command(&plan.args, &plan.command);
    if (mode == HAND_OVER)
        hand_over();
    if (mode == COMPILE) {
        if (plan.command.conflicts && plan.live_patching && strcmp(plan.family, "gcc") == 0)
            hand_over();  /* refused with its reason there */
        return compile(&plan);
    }
    return link_program(&plan);
}
