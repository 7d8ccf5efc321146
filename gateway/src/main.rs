//! `dartwing-gateway`: see `gateway::cli`.

/// With `--features mimalloc`, mimalloc instead of the system allocator (a measured option,
/// BENCHMARKS.md: memory after an overload burst).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    gateway::cli::main()
}
