//! `dartwing-gateway`: see `gateway::cli`.

fn main() -> anyhow::Result<()> {
    gateway::cli::main()
}
