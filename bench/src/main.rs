//! Benchmark harness (to come with issue #4).
fn main() {
    eprintln!("tern-bench: no benchmarks yet (issue #4)");
}
