//! Focused tests of the core, one per rule of the Raft paper's Figure 2 and per scenario of
//! its Figures 7 and 8, plus pre-vote, check-quorum, reads and transfer. Each drives real
//! `RaftGroup`s through a tiny in-memory network (`Network`) and checks exact outcomes.

mod eviction;
mod figure2;
mod figures_7_8;
mod liveness_rules;
mod membership;
mod network;
mod quiescence;
