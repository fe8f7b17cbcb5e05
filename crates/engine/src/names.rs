//! Ids and made-up names of agents.

/// A new agent id: 32 random lowercase hex digits.
pub fn new_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

const ADJECTIVES: &[&str] = &[
    "amber", "brave", "calm", "clever", "deft", "eager", "fair", "gentle", "happy", "keen",
    "lively", "merry", "nimble", "patient", "quick", "quiet", "steady", "swift", "tidy", "witty",
    "bold", "bright", "cosy", "daring", "fond", "jolly", "lucid", "noble", "proud", "sunny",
];

const NOUNS: &[&str] = &[
    "otter", "falcon", "badger", "heron", "lynx", "marten", "owl", "panda", "raven", "robin",
    "salmon", "seal", "sparrow", "stoat", "swan", "tiger", "turtle", "walrus", "wolf", "wren",
    "bison", "crane", "dingo", "eagle", "ferret", "gecko", "ibis", "koala", "lemur", "moose",
];

/// A name like `swift-otter` that `taken` does not know; a number is
/// appended when every plain pair is in use.
pub fn made_up_name(taken: impl Fn(&str) -> bool) -> String {
    for _ in 0..16 {
        let name = format!(
            "{}-{}",
            ADJECTIVES[rand::random_range(0..ADJECTIVES.len())],
            NOUNS[rand::random_range(0..NOUNS.len())]
        );
        if !taken(&name) {
            return name;
        }
    }
    loop {
        let name = format!(
            "{}-{}-{}",
            ADJECTIVES[rand::random_range(0..ADJECTIVES.len())],
            NOUNS[rand::random_range(0..NOUNS.len())],
            rand::random_range(2..100_000u32)
        );
        if !taken(&name) {
            return name;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_32_hex_digits_and_differ() {
        let a = new_id();
        assert_eq!(a.len(), 32);
        assert!(a
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(a, new_id());
    }

    #[test]
    fn made_up_names_are_valid_and_avoid_taken_ones() {
        let name = made_up_name(|_| false);
        assert!(wrangle_wire::parse::validate_name(&name).is_ok(), "{name}");
        let numbered = made_up_name(|candidate| candidate.matches('-').count() == 1);
        assert_eq!(numbered.matches('-').count(), 2, "{numbered}");
    }
}
