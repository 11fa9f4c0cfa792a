//! Record keys that never repeat along a chain of snapshots: patient keys from a seeded bijection of a counter
//! space that includes the generation, and lab-specific accession numbers from per-generation counters.

use super::tables::AccessionFormat;
use std::fmt::Write;

/// Patient keys are 14 digits: `KEY_BASE + mix(x)`, where `x` is a counter unique within a chain of snapshots
/// (generation × `PATIENTS_PER_GENERATION` + counter) and `mix` a seeded bijection of 43-bit numbers (2^43 < 9·10^12,
/// so every key has 14 digits). Distinct counters give distinct keys that still look random.
const KEY_BASE: u64 = 10_000_000_000_000;
const KEY_BITS: u32 = 43;
const PATIENTS_PER_GENERATION: u64 = 10_000_000_000;
/// Malformed rows take their patient keys from the upper half of each generation's counters, so they never
/// collide with a real record.
pub(crate) const MALFORMED_PATIENT_BASE: u64 = PATIENTS_PER_GENERATION / 2;
const ACCESSIONS_PER_GENERATION: u64 = 1_000_000_000;
pub(crate) const MALFORMED_ACCESSION_BASE: u64 = ACCESSIONS_PER_GENERATION / 2;
/// Accession numbers start here, which makes them look like the samples' (`B001600000`).
const ACCESSION_OFFSET: u64 = 1_600_000;

/// The largest generation whose patient keys still fit the key space.
pub(crate) const MAX_GENERATION: u32 = ((1u64 << KEY_BITS) / PATIENTS_PER_GENERATION) as u32 - 1;

pub(crate) fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The patient key space of one chain of snapshots (fixed by the first snapshot's seed).
pub(crate) struct KeySpace {
    xor: u64,
    add: u64,
}

impl KeySpace {
    const MASK: u64 = (1 << KEY_BITS) - 1;

    pub(crate) fn new(chain_seed: u64) -> Self {
        KeySpace {
            xor: splitmix64(chain_seed ^ 0x6B65_7973) & Self::MASK,
            add: splitmix64(chain_seed ^ 0x6F66_6673) & Self::MASK,
        }
    }

    pub(crate) fn patient_key(&self, generation: u32, counter: u64) -> u64 {
        let mut x = u64::from(generation) * PATIENTS_PER_GENERATION + counter;
        debug_assert!(x <= Self::MASK);
        // Each step is a bijection of 43-bit numbers: xor or add a constant, multiply by an odd number, or
        // xor with a right shift of itself (all modulo 2^43).
        x ^= self.xor;
        x = x.wrapping_mul(0x2545_F491_4F6C_DD1D) & Self::MASK;
        x ^= x >> 22;
        x = x.wrapping_add(self.add) & Self::MASK;
        x = x.wrapping_mul(0x9E37_79B9_7F4A_7C15) & Self::MASK;
        x ^= x >> 19;
        x = x.wrapping_mul(0xD6E8_FEB8_6659_FD93) & Self::MASK;
        x ^= x >> 23;
        KEY_BASE + x
    }
}

/// The accession counter value `n` of a generation, as the number an accession format encodes.
pub(crate) fn accession_number(generation: u32, n: u64) -> u64 {
    ACCESSION_OFFSET + u64::from(generation) * ACCESSIONS_PER_GENERATION + n
}

/// Lab-specific accession numbers. Each format maps `n` one-to-one and formats differ in their first characters,
/// so distinct `n` never give equal accession numbers.
pub(crate) fn push_accession(format: AccessionFormat, n: u64, yy: i64, out: &mut String) {
    let _ = match format {
        AccessionFormat::Quest => write!(out, "1{n:08}"),
        AccessionFormat::LabCorp => write!(out, "2{n:010}"),
        AccessionFormat::BioReference => write!(out, "B{n:09}"),
        AccessionFormat::Northwell => write!(out, "NW{n:09}"),
        AccessionFormat::NycPhl => write!(out, "PHL-{yy:02}-{n:07}"),
        AccessionFormat::Acme => write!(out, "IDR{yy:02}{n:08}-01"),
        AccessionFormat::Cue => write!(out, "CUE-{n:08}"),
        AccessionFormat::Wadsworth => write!(out, "WC{yy:02}-{n:07}"),
        AccessionFormat::SmithJones => write!(out, "SJ{n:08}"),
        AccessionFormat::Mike => write!(out, "MK/{yy:02}/{n:07}"),
        AccessionFormat::Sinai => write!(out, "MSH{n:09}"),
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn patient_keys_are_14_digits_and_unique_across_generations() {
        let keys = KeySpace::new(42);
        let mut seen = HashSet::new();
        for generation in [0, 1, 2, MAX_GENERATION] {
            for counter in (0..5_000).chain(MALFORMED_PATIENT_BASE..MALFORMED_PATIENT_BASE + 100) {
                let key = keys.patient_key(generation, counter);
                assert_eq!(key.to_string().len(), 14);
                assert!(seen.insert(key), "key {key} repeated");
            }
        }
    }
}
