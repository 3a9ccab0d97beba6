#!/usr/bin/env bash
# Checks that the README, the guide (docs/src/, except the dated measurement pages, which record
# what was true when they were measured) and docs/ARCHITECTURE.md say only what the code has:
#
# - every backticked identifier exists somewhere in the code: a path (`Engine::solve`,
#   `strategy::Problem`: each segment), a snake_case name (`n_ctx`, `best_of_n`, `ensure_logits`),
#   a CamelCase name (`SolveLm`), a lone capitalised word (`Engine`), a SCREAMING_CASE name
#   (`PONDER_STATUS_OK`), a lone function call (`usage()`); "exists" means the word occurs in a
#   source file of the workspace (Rust, C, the header, scripts, the Makefile), since serde names,
#   C names and private items are all fair to name. Not checked: CLI flags (`--ctx`), commands (`ponder solve …`, `make test`), JSON
#   (`{"type": …}`), plain lower-case words (`vote`, `root`: values and prose);
# - every backticked source path (`src/lm/remote.rs`, `reward/judge.rs`, `crates/…/solve.c`,
#   `tests/`) exists;
# - every relative link of those pages points at a file that exists, and at a heading that exists
#   when it names one (`page.md#anchor`, mdBook's and GitHub's way of making ids);
# - every page with a Rust block is compiled by `cargo test --doc` (listed in src/lib.rs);
# - every C block of the README is a verbatim excerpt of a C file the C tests build;
# - the README stays within 200 lines and ARCHITECTURE.md within 250;
# - no page tells history instead of the present ("at a later commit", "an earlier version", …).
#
# Exit status 1 with one line per problem, 0 when all holds. Needs only python3.
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 - "$@" <<'PY'
import os, re, sys, glob

problems = []
def fail(where, what):
    problems.append(f"{where}: {what}")

# The words of the code.
SOURCE_GLOBS = ["src/**/*.rs", "crates/**/*.rs", "crates/**/*.c", "crates/**/*.h", "crates/**/*.toml",
                "tests/**/*.rs", "benches/**/*.rs", "fuzz/**/*.rs", "scripts/*", "Makefile", ".ci/*",
                "Cargo.toml", "cbindgen.toml", "crates/**/*.in", "crates/**/*.py", "tests/**/*.py"]
words = set()
for pattern in SOURCE_GLOBS:
    for path in glob.glob(pattern, recursive=True):
        if os.path.isfile(path) and "/target/" not in path and path != "scripts/check-docs.sh":
            try:
                text = open(path, encoding="utf-8", errors="replace").read()
            except OSError:
                continue
            words.update(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", text))

# Words that are not ponder's but are fair to name in backticks: other projects' and tools'
# identifiers (llama.cpp's, OpenAI's, TRL's), and names the docs use as placeholders.
EXTERNAL = set("""
llama_decode llama_context llama_memory_seq_cp llama_batch LlamaBatch LlamaContext LlamaModel
llama_cpp llama_cpp_2 kv_unified cache_prompt cache_n prompt_tokens_details cached_tokens
top_logprobs include_stop_str_in_output max_model_len reasoning_content finish_reason
max_completion_tokens model_extra extra_body add_special parse_special api_key base_url
tokenizer_json ggml ggml_cuda_init R_X86_64_PC32 LLAMA_LIB_PROFILE vec_dot_q4_1_q8_1 vec_dot_q8_0_q8_0 CMAKE_CUDA_ARCHITECTURES
CMAKE_POSITION_INDEPENDENT_CODE LD_LIBRARY_PATH PKG_CONFIG_PATH OMP_WAIT_POLICY RelWithDebInfo
Release MutexGuard parking_lot OnceLock ValueEnum ExitCode ModelWrapper BufRead
SFTTrainer DPOTrainer PRMTrainer RewardTrainer GRPOTrainer
""".split())
STD = {"std", "crate", "self", "Self", "super", "ponder", "core", "alloc", "serde", "serde_json",
       "tokio", "axum", "Default", "Option", "Result", "Vec", "String", "Box", "Arc", "Mutex",
       "Send", "Sync", "Debug", "Display", "Ok", "Err", "Some", "None", "Path", "PathBuf"}

def camel(snake):
    return "".join(part.capitalize() for part in snake.split("_"))

def known(word):
    if word in words or word in EXTERNAL or word in STD:
        return True
    # serde's rename_all = "snake_case" of a variant (`context_full` is `ContextFull`), and the C
    # statuses and events by their short names (`REENTRANT` is `PONDER_STATUS_REENTRANT`).
    if re.fullmatch(r"[a-z0-9_]+", word) and camel(word) in words:
        return True
    return any(prefix + word in words for prefix in ("PONDER_STATUS_", "PONDER_EVENT_KIND_", "PONDER_"))

ROOT_DIRS = ("src/", "crates/", "tests/", "docs/", "scripts/", "fuzz/", "benches/", "data/", "assets/", ".ci/")
SOURCE_EXT = (".rs", ".c", ".h", ".sh", ".py", ".supp", ".toml")

def path_exists(p):
    p = p.rstrip("/")
    for base in ("", "src/", "src/lm/", "docs/src/"):
        if os.path.exists(base + p):
            return True
    return bool(glob.glob("crates/*/" + p))

COMMANDS = ("ponder ", "make ", "cargo ", "cc ", "curl ", "bash ", "python", "git ", "dot ", "valgrind ",
            "llama-", "vllm ", "pip ", "sh ", "cmake ", "eval ", "export ", "./", "$", "cat ", "kill ")

def check_span(where, span):
    s = span.strip()
    if not s or s.startswith(("-", "{", "[", '"', "'", "<", "/", "~")) or s.startswith(COMMANDS):
        return
    if re.fullmatch(r"[A-Za-z0-9_.\-/]+", s) and os.path.exists(s):
        return
    if re.fullmatch(r"[A-Za-z0-9_.\-]+", s) and s.endswith(SOURCE_EXT):
        if not any(glob.glob(f"{d}/**/{s}", recursive=True) for d in ("src", "crates", "tests", "benches", "scripts", "fuzz")):
            fail(where, f"`{s}`: no such file")
        return
    if re.fullmatch(r"[A-Za-z0-9_.\-/]+/?", s) and ("/" in s) and (s.endswith(SOURCE_EXT) or s.endswith("/")):
        if s.startswith(ROOT_DIRS) or s.endswith(SOURCE_EXT):
            if not path_exists(s) and not s.startswith(("models/", "target/", "out/", "bench/")):
                fail(where, f"`{s}`: no such file or directory")
        return
    if re.search(r"\.(gguf|json|jsonl|md|svg|png|dot|txt|pc|so|a|html|csv)\b", s):
        return  # data and output files: named as examples, not checked
    for m in re.finditer(r"[A-Za-z_][A-Za-z0-9_]*(?:::[A-Za-z_][A-Za-z0-9_]*)*", s):
        token = m.group(0)
        if token.startswith("_") or token.endswith("_") or s[max(m.start() - 1, 0)] == "/":
            continue  # a suffix or prefix written alone (`_free`, `CMAKE_*`, `…_MAJOR/MINOR`)
        segments = token.split("::")
        if len(segments) > 1:
            check = [seg for seg in segments if seg not in STD]
        elif "_" in token.strip("_") or re.search(r"[a-z0-9][A-Z]", token) or re.fullmatch(r"[A-Z][A-Z0-9_]{2,}", token):
            check = [token]
        elif re.fullmatch(r"[A-Z][a-z0-9]+", token) and re.fullmatch(r"[A-Z][a-z0-9]+(\(\))?", s):
            check = [token]
        elif re.fullmatch(r"[a-z][a-z0-9]*\(\)", s):
            check = [token]  # a function called by name: `usage()`
        else:
            check = []
        for seg in check:
            if not known(seg):
                fail(where, f"`{span}`: `{seg}` is not in the code")

def slug(heading):
    text = re.sub(r"`", "", heading).strip().lower()
    out = []
    for ch in text:
        if ch.isalnum() or ch in "_-":
            out.append(ch)
        elif ch.isspace():
            out.append("-")
    return "".join(out)

def anchors(path):
    ids = set()
    fence = None
    for line in open(path, encoding="utf-8"):
        m = re.match(r"^(`{3,})", line)
        if m:
            fence = None if fence and m.group(1).startswith(fence) else (fence or m.group(1))
            continue
        if not fence:
            h = re.match(r"^#{1,6}\s+(.*)", line)
            if h:
                ids.add(slug(h.group(1)))
    return ids

HISTORY = ["at a later commit", "an earlier version", "the issue's goal", "no gpu was lent",
           "an earlier run", "as before", "since this run", "the old defaults", "(before)"]

def check_paragraph(path, para):
    """The backticked spans of one paragraph (a span may continue on the next line)."""
    if not para:
        return
    text = "\n".join(line for _, line in para)
    for m in re.finditer(r"(?<!`)`([^`]+)`(?!`)", text):
        line = para[0][0] + text.count("\n", 0, m.start())
        check_span(f"{path}:{line}", m.group(1).replace("\n", " "))

def check_page(path, identifiers=True, history=True):
    text = open(path, encoding="utf-8").read()
    lines = text.split("\n")
    fence = None
    para = []
    for i, line in enumerate(lines, 1):
        where = f"{path}:{i}"
        m = re.match(r"^\s*(`{3,})", line)
        if m:
            fence = None if fence and m.group(1).startswith(fence) else (fence or m.group(1))
            check_paragraph(path, para)
            para.clear()
            continue
        if fence:
            continue
        if identifiers:
            para.append((i, line))
            if not line.strip():
                check_paragraph(path, para)
                para.clear()
        low = line.lower() if history else ""
        for phrase in HISTORY:
            if phrase in low:
                fail(where, f"history in prose: \"{phrase}\"; say what is, or move it to a dated page")
        for target in re.findall(r"\]\(([^)\s]+)\)", line):
            if re.match(r"^[a-z]+:", target):
                continue
            file, _, anchor = target.partition("#")
            dest = os.path.normpath(os.path.join(os.path.dirname(path), file)) if file else path
            if not os.path.exists(dest):
                fail(where, f"link to {target}: {dest} does not exist")
            elif anchor and dest.endswith(".md") and anchor not in anchors(dest):
                fail(where, f"link to {target}: no heading #{anchor} in {dest}")
    if identifiers:
        check_paragraph(path, para)

pages = sorted(p for p in glob.glob("docs/src/**/*.md", recursive=True)
               if "/measurements/" not in p and "/examples/" not in p)
for page in ["README.md", "docs/ARCHITECTURE.md"] + pages:
    check_page(page)
for page in glob.glob("docs/src/measurements/*.md"):
    check_page(page, identifiers=False, history=False)

# The pages listed in SUMMARY.md exist (mdbook would refuse them anyway; this names them all).
for target in re.findall(r"\]\(([^)]+\.md)\)", open("docs/src/SUMMARY.md").read()):
    if not os.path.exists("docs/src/" + target):
        fail("docs/src/SUMMARY.md", f"{target} does not exist")

# Every page with a Rust block is a doctest.
lib = open("src/lib.rs").read()
for page in ["README.md"] + pages:
    if re.search(r"^```rust", open(page).read(), re.M):
        rel = "../" + page
        if f'include_str!("{rel}")' not in lib:
            fail(page, f'has a Rust block but src/lib.rs does not include it: add #[doc = include_str!("{rel}")] to mod guide')

# The README's C is what the C tests build.
c_sources = "".join(open(p).read() for p in glob.glob("crates/ponder-capi/examples/*.c") + glob.glob("crates/ponder-capi/tests/c/*.c"))
for block in re.findall(r"^```c\n(.*?)^```", open("README.md").read(), re.M | re.S):
    if block not in c_sources:
        fail("README.md", "a C block that is not a verbatim excerpt of crates/ponder-capi/examples/*.c or tests/c/*.c")

for path, most in (("README.md", 200), ("docs/ARCHITECTURE.md", 250)):
    n = open(path).read().count("\n")
    if n > most:
        fail(path, f"{n} lines; at most {most}")

for p in problems:
    print(p)
if problems:
    print(f"check-docs: {len(problems)} problem(s)", file=sys.stderr)
    sys.exit(1)
print("check-docs: README, guide and ARCHITECTURE.md agree with the code", file=sys.stderr)
PY
