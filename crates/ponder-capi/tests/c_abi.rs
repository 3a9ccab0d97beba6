//! The C ABI from C: the header is what cbindgen generates, its version macros match
//! Cargo.toml, and C programs compiled with `-Wall -Wextra -Werror` against the built library
//! exercise every function on the real default model (once more under valgrind), including an
//! example built only from the installed header and `ponder.pc`.

#[path = "../../../tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

/// This crate's directory (the header, cbindgen.toml, the C tests and the example).
fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The directory holding `libponder.so`: this test binary's profile directory.
fn lib_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap().to_path_buf(); // target/<profile>/deps/..
    let lib = dir.join("libponder.so");
    assert!(
        lib.exists(),
        "{} is missing: the C tests link the cdylib that `cargo build --release` makes (make test builds it first)",
        lib.display()
    );
    dir
}

fn generated_header() -> String {
    let config = cbindgen::Config::from_file(crate_dir().join("cbindgen.toml")).unwrap();
    let mut out = Vec::new();
    cbindgen::Builder::new()
        .with_crate(crate_dir())
        .with_config(config)
        .generate()
        .expect("cbindgen generates the header")
        .write(&mut out);
    String::from_utf8(out).unwrap()
}

#[test]
fn header_is_what_cbindgen_generates() {
    let path = crate_dir().join("include/ponder.h");
    let fresh = generated_header();
    if std::env::var_os("PONDER_BLESS").is_some() {
        std::fs::write(&path, &fresh).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == fresh,
        "include/ponder.h differs from what cbindgen generates from src/; regenerate it with \
         PONDER_BLESS=1 cargo test --release -p ponder-capi --test c_abi header"
    );
}

#[test]
fn header_version_macros_match_cargo_toml() {
    let header = std::fs::read_to_string(crate_dir().join("include/ponder.h")).unwrap();
    for (name, value) in [
        ("PONDER_VERSION_MAJOR", env!("CARGO_PKG_VERSION_MAJOR")),
        ("PONDER_VERSION_MINOR", env!("CARGO_PKG_VERSION_MINOR")),
        ("PONDER_VERSION_PATCH", env!("CARGO_PKG_VERSION_PATCH")),
    ] {
        let line = format!("#define {name} {value}\n");
        assert!(header.contains(&line), "the header lacks {line:?}");
    }
}

/// Compiles `sources` into `out` with the project's warnings, against the built library.
fn compile(sources: &[&Path], out: &Path, extra: &[String]) {
    let lib = lib_dir();
    let mut cmd = Command::new("cc");
    cmd.args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-O1", "-g"])
        .arg("-I")
        .arg(crate_dir().join("include"))
        .args(sources)
        .arg("-o")
        .arg(out)
        .args(extra)
        .arg("-L")
        .arg(&lib)
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .args(["-lponder", "-lpthread", "-lm"]);
    let status = cmd.output().expect("run cc");
    assert!(
        status.status.success(),
        "cc failed:\n{}",
        String::from_utf8_lossy(&status.stderr)
    );
}

fn scratch(name: &str) -> PathBuf {
    common::scratch(&format!("c-{name}"))
}

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .env("PONDER_MODEL", common::model_path())
        .output()
        .expect("run the C program");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "exit {:?}:\n{text}", out.status);
    text
}

#[test]
fn c_tests_exercise_every_function() {
    let dir = scratch("test");
    let exe = dir.join("test_ponder");
    compile(&[&crate_dir().join("tests/c/test_ponder.c")], &exe, &[]);
    let out = run(&mut Command::new(&exe));
    assert!(out.contains("all C tests passed"), "{out}");
}

#[test]
fn c_tests_are_clean_under_valgrind() {
    let dir = scratch("valgrind");
    let exe = dir.join("test_ponder");
    compile(&[&crate_dir().join("tests/c/test_ponder.c")], &exe, &[]);
    let valgrind = Command::new("valgrind").arg("--version").output();
    assert!(
        valgrind.is_ok_and(|o| o.status.success()),
        "valgrind is missing: `make setup` installs it"
    );
    let out = run(Command::new("valgrind")
        .args([
            "--error-exitcode=99",
            "--leak-check=full",
            "--errors-for-leak-kinds=definite",
            "--show-leak-kinds=definite",
        ])
        .arg(&exe)
        .arg("--light"));
    assert!(out.contains("all C tests passed"), "{out}");
    assert!(out.contains("ERROR SUMMARY: 0 errors"), "{out}");
    assert!(
        out.contains("definitely lost: 0 bytes") || out.contains("no leaks are possible"),
        "{out}"
    );
}

/// A program that touches only the remote backend, under valgrind with every leak kind an error
/// (valgrind's defaults: definite and possible); the HTTP client's one-time process state is
/// suppressed by tests/c/valgrind.supp, which says why.
#[test]
fn remote_only_program_is_clean_under_valgrind_with_every_leak_kind() {
    let dir = scratch("remote-valgrind");
    let exe = dir.join("remote_only");
    compile(&[&crate_dir().join("tests/c/remote_only.c")], &exe, &[]);
    let out = run(Command::new("valgrind")
        .args(["--error-exitcode=99", "--leak-check=full"])
        .arg(format!(
            "--suppressions={}",
            crate_dir().join("tests/c/valgrind.supp").display()
        ))
        .arg(&exe));
    assert!(out.contains("remote C tests passed"), "{out}");
    assert!(out.contains("ERROR SUMMARY: 0 errors"), "{out}");
    assert!(
        out.contains("possibly lost: 0 bytes") || out.contains("no leaks are possible"),
        "{out}"
    );
}

#[test]
fn example_builds_from_the_installed_header_and_pkg_config() {
    let dir = scratch("install");
    let prefix = dir.join("prefix");
    let status = Command::new("make")
        .current_dir(common::root())
        .args(["-s", "install-files"])
        .arg(format!("PREFIX={}", prefix.display()))
        .arg(format!("LIBDIR={}", lib_dir().display()))
        .status()
        .unwrap();
    assert!(status.success(), "make install-files");
    for f in [
        "include/ponder.h",
        "lib/libponder.so",
        "lib/pkgconfig/ponder.pc",
    ] {
        assert!(prefix.join(f).exists(), "{f} is installed");
    }
    let pc = Command::new("pkg-config")
        .args(["--cflags", "--libs", "ponder"])
        .env("PKG_CONFIG_PATH", prefix.join("lib/pkgconfig"))
        .output()
        .expect("pkg-config");
    assert!(
        pc.status.success(),
        "{}",
        String::from_utf8_lossy(&pc.stderr)
    );
    let flags: Vec<String> = String::from_utf8_lossy(&pc.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let exe = dir.join("solve");
    // Only the installed files: the flags come from ponder.pc.
    let status = Command::new("cc")
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror"])
        .arg(crate_dir().join("examples/solve.c"))
        .arg("-o")
        .arg(&exe)
        .args(&flags)
        .arg(format!("-Wl,-rpath,{}", prefix.join("lib").display()))
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let out = run(Command::new(&exe).args([
        "--budget",
        "120",
        "Tom has 3 boxes with 4 apples in each box. How many apples does he have?",
    ]));
    assert!(out.contains("answer:"), "{out}");
    assert!(out.contains("step "), "events were streamed: {out}");
    assert!(out.contains("generated"), "{out}");
}
