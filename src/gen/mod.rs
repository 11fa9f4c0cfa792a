//! Synthetic ECLRS snapshots (`sluice gen`, SPEC §8).
