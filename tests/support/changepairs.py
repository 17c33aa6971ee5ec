"""Random change pairs for the differential fuzzer: a small C program and one mutation of it.

A program is a list of *features* (a helper with arithmetic and constants,
a const table of numbers, a const table of function pointers, a const
table of strings, a switch, strings, an assert, a counter, a global
tunable, a function in another file …), each rendering to C in one of
three files (main.c, lib.c, util.c), all of them reached from
``handle()``, which ``main``'s line loop calls.  A *mutation* changes one
feature the way a security fix might: a constant, an operator, a string, a
new static helper, a function moved to another file, a table entry, a
switch case, a line shift above an assert, a tunable's initial value, a
constant made writable, a new static local, a new global variable.

Programs are built from a seed alone, so a divergence is reproduced by its
seed; ``reduce`` removes features while the divergence stays, which gives
the smallest program that shows it.  Arithmetic is unsigned and every
index masked: the programs are deterministic and free of undefined
behaviour at every optimisation level.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

OPERATORS = ["+", "-", "*", "^", "|", "&"]
WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet"]
FILES = ("main.c", "lib.c", "util.c")
# Build configurations crossed with every pair: optimisation × PIE × -fdata-sections.
OPTIMISATIONS = ("-O0", "-O1", "-O2", "-Os")


@dataclass
class Feature:
    """One piece of the program: a kind, the file it lives in, and its parameters."""

    kind: str
    name: str
    file: str
    params: dict = field(default_factory=dict)


@dataclass
class Program:
    """A generated program: its features (rendered in order) and how it is built."""

    features: list[Feature]
    optimisation: str = "-O2"
    pie: bool = True
    data_sections: bool = True

    def cflags(self) -> str:
        flags = [self.optimisation, "-g"]
        if not self.pie:
            flags.append("-fno-pie")
        if not self.data_sections:
            flags.append("-fno-data-sections")
        return " ".join(flags)

    def ldflags(self) -> str:
        return "" if self.pie else "-no-pie"


# -- generation ---------------------------------------------------------------------


def _expression(rng: random.Random, depth: int = 2) -> dict:
    """An unsigned expression of x: (x op c) op (x op c) …, as operators and constants."""
    terms = rng.randint(1, depth + 1)
    return {"ops": [rng.choice(OPERATORS) for _ in range(terms)],
            "constants": [rng.randint(1, 5000) for _ in range(terms)]}


def generate(seed: int) -> Program:
    """The base program of a seed."""
    rng = random.Random(seed)
    features: list[Feature] = []
    count = rng.randint(3, 7)
    kinds = ["helper", "global_helper", "table", "ops_table", "switch", "strings", "assert", "counter",
             "tunable", "global_table", "constant_global", "names"]
    for index in range(count):
        kind = rng.choice(kinds)
        name = f"{kind}_{index}"
        if kind in ("helper", "assert", "counter"):
            file = "main.c"
        elif kind in ("global_helper", "global_table", "constant_global"):
            file = "lib.c"
        else:
            file = rng.choice(("main.c", "lib.c"))
        params: dict = {"expr": _expression(rng)}
        if kind in ("table", "global_table"):
            params["values"] = [rng.randint(0, 999) for _ in range(8)]
        elif kind == "ops_table":
            params["order"] = [rng.randint(0, 2) for _ in range(4)]
        elif kind == "switch":
            params["cases"] = [rng.randint(1, 9999) for _ in range(rng.randint(5, 9))]
        elif kind in ("strings", "names"):
            params["words"] = rng.sample(WORDS, 4 if kind == "names" else 3)
            params["limit"] = rng.randint(1, 100)
        elif kind == "assert":
            params["sentinel"] = 77777 + index
            params["padding"] = 0
        elif kind in ("counter", "tunable", "constant_global"):
            params["initial"] = rng.randint(1, 50)
        features.append(Feature(kind, name, file, params))
    return Program(features, rng.choice(OPTIMISATIONS), rng.random() < 0.7, rng.random() < 0.7)


def _constant(feature: Feature, rng: random.Random) -> str:
    constants = feature.params["expr"]["constants"]
    position = rng.randrange(len(constants))
    constants[position] = rng.randint(1, 5000)
    return f"constant {position} of {feature.name}"


def _operator(feature: Feature, rng: random.Random) -> str:
    ops = feature.params["expr"]["ops"]
    position = rng.randrange(len(ops))
    ops[position] = rng.choice([op for op in OPERATORS if op != ops[position]])
    return f"operator {position} of {feature.name}"


def _replace_word(key: str, count: int, separator: str, what: str):  # type: ignore[no-untyped-def]
    def edit(feature: Feature, rng: random.Random) -> str:
        position = rng.randrange(count)
        feature.params[key][position] = rng.choice(WORDS) + separator + str(rng.randint(0, 99))
        return f"{what} {position} of {feature.name}"
    return edit


def _new_string(feature: Feature, rng: random.Random) -> str:
    feature.params["extra"] = rng.choice(WORDS) + "+"
    return f"new string in {feature.name}"


def _new_helper(feature: Feature, rng: random.Random) -> str:
    feature.params["extra_helper"] = _expression(rng, 1)
    return f"new static helper called by {feature.name}"


def _move_function(feature: Feature, rng: random.Random) -> str:
    feature.file = "util.c"
    if rng.random() < 0.7:
        feature.params["expr"]["constants"][0] += 1
    return f"{feature.name} moved to util.c"


def _table_entry(feature: Feature, rng: random.Random) -> str:
    position = rng.randrange(8)
    feature.params["values"][position] = rng.randint(1000, 1999)
    return f"entry {position} of {feature.name}"


def _ops_entry(feature: Feature, rng: random.Random) -> str:
    position = rng.randrange(4)
    feature.params["order"][position] = (feature.params["order"][position] + 1) % 3
    return f"entry {position} of {feature.name}"


def _switch_case(feature: Feature, rng: random.Random) -> str:
    position = rng.randrange(len(feature.params["cases"]))
    feature.params["cases"][position] = rng.randint(1, 9999)
    return f"case {position} of {feature.name}"


def _line_shift(feature: Feature, rng: random.Random) -> str:
    feature.params["padding"] += rng.randint(1, 4)
    return f"lines added above {feature.name}"


def _initial_value(feature: Feature, rng: random.Random) -> str:
    feature.params["initial"] += rng.randint(1, 9)
    return f"initial value of {feature.name}"


def _once(key: str, value, said: str):  # type: ignore[no-untyped-def]
    """A mutation that sets a parameter once: a feature that has it already is not a candidate."""
    def edit(feature: Feature, rng: random.Random) -> str | None:
        if key in feature.params:
            return None
        feature.params[key] = value(rng)
        return said.format(name=feature.name)
    return edit


# mutation → (the feature kinds it applies to, how it changes one of them)
MUTATIONS: dict[str, tuple[tuple[str, ...], Callable[[Feature, random.Random], str | None]]] = {
    "constant": (("helper", "global_helper", "counter", "table", "global_table", "switch", "tunable", "assert",
                  "constant_global"), _constant),
    "operator": (("helper", "global_helper", "counter", "switch"), _operator),
    "string": (("strings",), _replace_word("words", 3, "-", "string")),
    "new_string": (("strings",), _new_string),
    "new_helper": (("helper", "global_helper", "counter", "switch"), _new_helper),
    "move_function": (("global_helper",), _move_function),
    "table_entry": (("table", "global_table"), _table_entry),
    "ops_entry": (("ops_table",), _ops_entry),
    "switch_case": (("switch",), _switch_case),
    "line_shift": (("assert",), _line_shift),
    "initial_value": (("tunable", "counter"), _initial_value),
    "make_writable": (("constant_global",), _once("writable", lambda rng: True, "{name} made writable")),
    "names_entry": (("names",), _replace_word("words", 4, "/", "name")),
    "new_static_local": (("helper", "global_helper"),
                         _once("seen", lambda rng: rng.randint(0, 9), "new static local in {name}")),
    "new_global": (("helper", "global_helper"),
                   _once("new_global", lambda rng: rng.randint(1, 9), "new global variable used by {name}")),
}


def mutate(program: Program, seed: int) -> tuple[Program, str]:
    """The new version: one mutation (sometimes two) of the program, and what it did."""
    rng = random.Random(seed * 7919 + 1)
    new = copy.deepcopy(program)
    done = []
    names = tuple(MUTATIONS)
    for _ in range(1 if rng.random() < 0.8 else 2):
        for _attempt in range(20):
            kinds, edit = MUTATIONS[rng.choice(names)]
            candidates = [feature for feature in new.features if feature.kind in kinds]
            said = edit(rng.choice(candidates), rng) if candidates else None
            if said:
                done.append(said)
                break
    return new, "; ".join(done) or "nothing"


# -- rendering -------------------------------------------------------------------------


def _render_expr(expr: dict, variable: str = "x") -> str:
    text = variable
    for op, constant in zip(expr["ops"], expr["constants"]):
        text = f"({text} {op} {constant}u)"
    return text


NOINLINE = "__attribute__((noinline))"


def _render_feature(feature: Feature) -> tuple[list[str], list[str], str]:
    """(definitions, declarations for other files, the call handle() makes) of a feature."""
    p, name = feature.params, feature.name
    expr = _render_expr(p["expr"])
    extra_helper = ""
    if "extra_helper" in p:
        extra_helper = (f"{NOINLINE} static unsigned {name}_extra(unsigned x)\n{{\n"
                        f"    return {_render_expr(p['extra_helper'])};\n}}\n\n")
        expr = f"{name}_extra({expr})"
    kind = feature.kind
    prologue = ""
    if "seen" in p:  # a new static local: state the new code keeps from call to call
        prologue = f"    static unsigned seen = {p['seen']}u;\n    seen += 1;\n"
        expr = f"({expr} + seen)"
    if "new_global" in p:  # a new global variable the new code counts in
        extra_helper = f"unsigned {name}_hits = {p['new_global']}u;\n\n" + extra_helper
        prologue += f"    {name}_hits += 2u;\n"
        expr = f"({expr} ^ {name}_hits)"
    if kind == "helper":
        return [f"{extra_helper}{NOINLINE} static unsigned {name}(unsigned x)\n{{\n{prologue}    return {expr};\n}}\n"], [], \
            f"{name}(x)"
    if kind == "global_helper":
        return [f"{extra_helper}{NOINLINE} unsigned {name}(unsigned x)\n{{\n{prologue}    return {expr};\n}}\n"], \
            [f"unsigned {name}(unsigned x);"], f"{name}(x)"
    if kind == "names":
        words = ", ".join(f'"{word}"' for word in p["words"])
        static = "static " if feature.file == "main.c" else ""
        return [f"static const char *const {name}_names[4] = {{ {words} }};\n\n"
                f"{NOINLINE} {static}const char *{name}(unsigned x)\n{{\n    return {name}_names[(x ^ {p['limit']}u) & 3];\n}}\n"], \
            [] if static else [f"const char *{name}(unsigned x);"], f"{name}(x)"
    if kind == "counter":
        return [f"{extra_helper}{NOINLINE} unsigned {name}(unsigned x)\n{{\n    static unsigned calls = {p['initial']};\n"
                f"    calls += 1;\n    return {expr} + calls;\n}}\n"], [], f"{name}(x)"
    if kind in ("table", "global_table"):
        storage = "static const" if kind == "table" else "const"
        values = ", ".join(str(v) for v in p["values"])
        definition = f"{storage} unsigned {name}_values[8] = {{ {values} }};\n\n"
        if kind == "global_table":
            # read from main.c: the reader lives in another object
            return [definition], [f"extern const unsigned {name}_values[8];",
                                  f"{NOINLINE} static unsigned {name}(unsigned x)\n{{\n"
                                  f"    return {name}_values[x & 7] + {expr};\n}}\n"], f"{name}(x)"
        return [definition + f"{NOINLINE} {'static ' if feature.file == 'main.c' else ''}unsigned {name}(unsigned x)\n{{\n"
                f"    return {name}_values[x & 7] + {expr};\n}}\n"], \
            [] if feature.file == "main.c" else [f"unsigned {name}(unsigned x);"], f"{name}(x)"
    if kind == "ops_table":
        order = ", ".join(f"{name}_op{i}" for i in p["order"])
        static = "static " if feature.file == "main.c" else ""
        body = "".join(f"{NOINLINE} static unsigned {name}_op{i}(unsigned x)\n{{\n    return x * {i + 3}u + {i}u;\n}}\n\n"
                       for i in range(3))
        return [body + f"static unsigned (*const {name}_ops[4])(unsigned) = {{ {order} }};\n\n"
                f"{NOINLINE} {static}unsigned {name}(unsigned x)\n{{\n    return {name}_ops[x & 3](x);\n}}\n"], \
            [] if static else [f"unsigned {name}(unsigned x);"], f"{name}(x)"
    if kind == "switch":
        cases = "".join(f"    case {i}: return {value}u;\n" for i, value in enumerate(p["cases"]))
        static = "static " if feature.file == "main.c" else ""
        return [f"{extra_helper}{NOINLINE} {static}unsigned {name}(unsigned x)\n{{\n    switch ((x ^ {p['expr']['constants'][0]}u) % {len(p['cases']) + 2}u) {{\n"
                f"{cases}    default: return {expr};\n    }}\n}}\n"], \
            [] if static else [f"unsigned {name}(unsigned x);"], f"{name}(x)"
    if kind == "strings":
        words = p["words"]
        static = "static " if feature.file == "main.c" else ""
        extra = f"    if (x > 1000u)\n        return \"{p['extra']}\";\n" if "extra" in p else ""
        return [f"{NOINLINE} {static}const char *{name}(unsigned x)\n{{\n{extra}"
                f"    if (x < {p['limit']}u)\n        return \"{words[0]}\";\n"
                f"    if ((x & 1u) == 0)\n        return \"{words[1]}\";\n    return \"{words[2]}\";\n}}\n"], \
            [] if static else [f"const char *{name}(unsigned x);"], f"{name}(x)"
    if kind == "assert":
        padding = "".join(f"/* {i} */\n" for i in range(p["padding"]))
        return [f"{padding}{NOINLINE} static unsigned {name}(unsigned x)\n{{\n    assert(x != {p['sentinel']}u);\n"
                f"    return {expr};\n}}\n"], [], f"{name}(x)"
    if kind == "tunable":
        static = "" if feature.file == "lib.c" else "static "
        return [f"{static}unsigned {name}_limit = {p['initial']};\n\n"
                f"{NOINLINE} {static}unsigned {name}(unsigned x)\n{{\n    return x > {name}_limit ? {expr} : x;\n}}\n"], \
            [] if static else [f"unsigned {name}(unsigned x);"], f"{name}(x)"
    if kind == "constant_global":
        if p.get("writable"):
            return [f"unsigned {name}_value = {p['initial']};\n\n"
                    f"{NOINLINE} unsigned {name}(unsigned x)\n{{\n    if (x == 7u)\n        {name}_value += 1;\n"
                    f"    return {name}_value + {expr};\n}}\n"], [f"unsigned {name}(unsigned x);"], f"{name}(x)"
        return [f"const unsigned {name}_value = {p['initial']};\n\n"
                f"{NOINLINE} unsigned {name}(unsigned x)\n{{\n    return {name}_value + {expr};\n}}\n"], \
            [f"unsigned {name}(unsigned x);"], f"{name}(x)"
    raise ValueError(kind)


MAIN_LOOP = """
int main(void)
{
    char line[256];
    while (fgets(line, sizeof line, stdin)) {
        handle((unsigned)strtoul(line, NULL, 10));
        fflush(stdout);
    }
    return 0;
}
"""


def render(program: Program) -> dict[str, str]:
    """The program's source files, by name."""
    definitions: dict[str, list[str]] = {name: [] for name in FILES}
    declarations: list[str] = []
    calls: list[tuple[str, bool]] = []
    for feature in program.features:
        defs, decls, call = _render_feature(feature)
        if feature.kind == "global_table":
            definitions["lib.c"].extend(defs)
            definitions["main.c"].append(decls[1])
            declarations.append(decls[0])
        else:
            definitions[feature.file].extend(defs)
            declarations.extend(decls)
        calls.append((call, feature.kind in ("strings", "names")))
    numbers = " + ".join(call for call, text in calls if not text) or "0u"
    texts = [call for call, text in calls if text]
    formats = "%u" + " %s" * len(texts)
    handle = (f"{NOINLINE} static void handle(unsigned x)\n{{\n    printf(\"{formats}\\n\", {numbers}"
              + "".join(f", {text}" for text in texts) + ");\n}\n")
    header = "#include <assert.h>\n#include <stdio.h>\n#include <stdlib.h>\n\n"
    sources = {}
    for name in FILES:
        body = "\n".join(definitions[name])
        if name == "main.c":
            sources[name] = header + "\n".join(declarations) + "\n\n" + body + "\n" + handle + MAIN_LOOP
        elif body:
            sources[name] = header + body
    if "lib.c" not in sources:
        sources["lib.c"] = "/* nothing here in this program */\nint lib_unused_marker;\n"
    return sources


INPUTS = "0\n1\n2\n3\n5\n7\n8\n13\n42\n99\n100\n1001\n4096\n65535\n77776\n123456\n"


def write_case(old: Program, new: Program, folder: Path, description: str) -> None:
    """Write a change pair as a case folder of tests/cases (old/, new/, input, case.toml)."""
    for version, program in (("old", old), ("new", new)):
        target = folder / version
        target.mkdir(parents=True, exist_ok=True)
        for stale in target.glob("*.c"):
            stale.unlink()
        for name, text in render(program).items():
            (target / name).write_text(text)
    (folder / "input").write_text(INPUTS)
    (folder / "case.toml").write_text(
        f'description = "{description}"\n\n[build]\ncflags = "{old.cflags()}"\nldflags = "{old.ldflags()}"\n'
        "warnings_fatal = false\n")


def reduce(old: Program, new: Program, still_fails) -> tuple[Program, Program]:  # type: ignore[no-untyped-def]
    """Drop features (from both versions alike) while *still_fails(old, new)* holds."""
    changed = True
    while changed:
        changed = False
        for index in range(len(old.features) - 1, -1, -1):
            if len(old.features) <= 1:
                break
            smaller_old = copy.deepcopy(old)
            smaller_new = copy.deepcopy(new)
            del smaller_old.features[index]
            del smaller_new.features[index]
            if still_fails(smaller_old, smaller_new):
                old, new, changed = smaller_old, smaller_new, True
    return old, new


# -- one pair through the oracle ---------------------------------------------------


@dataclass
class PairResult:
    """What the oracle made of one seed's pair."""

    seed: int
    mutation: str
    cflags: str
    ldflags: str
    outcome: str = ""
    applied: bool = False
    rules: list[str] = field(default_factory=list)
    divergences: list[str] = field(default_factory=list)
    error: str = ""

    @property
    def diverged(self) -> bool:
        return bool(self.divergences)


def pair(seed: int) -> tuple[Program, Program, str]:
    """The old and new program of a seed, and the mutation."""
    old = generate(seed)
    new, mutation = mutate(old, seed)
    return old, new, mutation


def check_pair(old: Program, new: Program, folder: Path, description: str = "") -> PairResult:
    """Write the pair as a case under *folder*, build it, diff it and run the oracle."""
    from tests.support import oracle

    write_case(old, new, folder / "case", description or "generated pair")
    result = PairResult(-1, description, old.cflags(), old.ldflags())
    try:
        built = oracle.build_case(oracle.Case.load(folder / "case"), folder / "build")
        result.outcome = built.diff.outcome
        result.rules = sorted({item["rule"] for item in built.diff.report.get("refused", [])})
        verdict = oracle.check_behaviour(built)
        result.applied = verdict.applied
        result.divergences = verdict.divergences
    except oracle.OracleUnsupported as exc:
        result.error = f"unsupported: {exc}"
    except (oracle.CaseError, OSError, ValueError) as exc:
        result.error = f"{type(exc).__name__}: {str(exc)[:2000]}"
    return result


def run_seed(seed: int, folder: Path) -> PairResult:
    """Generate, mutate and check one seed."""
    old, new, mutation = pair(seed)
    result = check_pair(old, new, folder, f"seed {seed}: {mutation}")
    result.seed = seed
    result.mutation = mutation
    return result
