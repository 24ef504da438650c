//! The `idsync` command: REPL, script file, or one-liner.

fn main() {
    println!("idsync {}", env!("CARGO_PKG_VERSION"));
}
