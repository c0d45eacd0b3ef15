//! What the `gpuledger` command shares with `gpuledger-bench` (crates/bench): the simulated
//! fleet's arguments, so that `produce` and the benchmarks take the same flags for the same fleet.

pub mod fleet;
