//! Workspace-level integration suites against real peers.
