//! Property tests of the parsers of what people type (issue 16): no input
//! makes one panic, every refusal names the input and says what is
//! accepted, and what wrangle prints reads back as the same value.

mod durations;
mod enums;
mod limits;
mod names;
mod near;
mod probes;
mod signals;
mod since;
mod sizes;
