//! `dartwing-gateway`: see `gateway::cli`.
//!
//! The system allocator (glibc) stays: with `malloc_trim` after bursts ([`gateway::memory`])
//! it gave back more memory after an overload than mimalloc did (BENCHMARKS.md, memory after
//! overload), without another dependency.

fn main() -> anyhow::Result<()> {
    gateway::cli::main()
}
