//! The price table: USD per million tokens per model, shipped with wrangle
//! (dated, with its source) and overridden by `$WRANGLE_HOME/prices.toml`.
//! A model the table does not know gives no cost, never a guess.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;
use wrangle_wire::TokenCounts;

/// The table shipped with this wrangle.
const SHIPPED: &str = include_str!("prices.toml");

/// File name of the home's own prices.
pub const OVERRIDES: &str = "prices.toml";

/// What a model costs, in USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    /// Input not read from the cache nor written to it.
    pub input: f64,
    /// Output, reasoning included.
    pub output: f64,
    /// Input read from the cache; unpriced when absent.
    #[serde(default)]
    pub cache_read: Option<f64>,
    /// Input written to the cache; unpriced when absent.
    #[serde(default)]
    pub cache_write: Option<f64>,
}

/// A price table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prices {
    /// When its figures were read.
    pub date: String,
    /// Where they come from.
    pub source: String,
    /// By model id.
    #[serde(default)]
    pub models: BTreeMap<String, Price>,
}

/// A home's own table: every key may be left out.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Overrides {
    date: Option<String>,
    source: Option<String>,
    #[serde(default)]
    models: BTreeMap<String, Price>,
}

impl Prices {
    /// The table shipped with wrangle.
    pub fn shipped() -> Prices {
        // Checked by a test: the shipped file always parses.
        toml::from_str(SHIPPED).expect("the shipped price table parses")
    }

    /// The shipped table with `home/prices.toml` over it, if there is one.
    /// A file that cannot be read or parsed is an error that names it.
    pub fn for_home(home: &Path) -> Result<Prices, String> {
        let path = home.join(OVERRIDES);
        let mut prices = Prices::shipped();
        match std::fs::read_to_string(&path) {
            Ok(text) => prices
                .apply(&text)
                .map_err(|error| format!("{}: {error}", path.display()))?,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(format!("cannot read {}: {error}", path.display())),
        }
        Ok(prices)
    }

    /// Puts the models of a table in TOML over these.
    pub fn apply(&mut self, text: &str) -> Result<(), String> {
        let overrides: Overrides = toml::from_str(text).map_err(|error| error.to_string())?;
        for (model, price) in &overrides.models {
            let prices = [
                price.input,
                price.output,
                price.cache_read.unwrap_or(0.0),
                price.cache_write.unwrap_or(0.0),
            ];
            if prices.iter().any(|p| !p.is_finite() || *p < 0.0) {
                return Err(format!(
                    "the price of {model:?} must be numbers of 0 or more"
                ));
            }
        }
        if let Some(date) = overrides.date {
            self.date = date;
        }
        if let Some(source) = overrides.source {
            self.source = source;
        }
        self.models.extend(overrides.models);
        Ok(())
    }

    /// The price of `model`: by its exact id, else by the id without a
    /// provider's prefix, a date or a version suffix
    /// (`us.anthropic.claude-sonnet-4-5-20250929-v1:0` is
    /// `claude-sonnet-4-5`).
    pub fn find(&self, model: &str) -> Option<&Price> {
        self.models
            .get(model)
            .or_else(|| self.models.get(&normalize(model)))
    }

    /// The cost of `tokens` by model: `Ok(None)` when there are none,
    /// `Err` (a note for people) when a model, or a kind of token used, has
    /// no price.
    pub fn cost(&self, tokens: &BTreeMap<String, TokenCounts>) -> Result<Option<f64>, String> {
        let mut total = 0.0;
        let mut any = false;
        for (model, used) in tokens {
            if used.total() == 0 {
                continue;
            }
            any = true;
            if model.is_empty() {
                return Err("no model is named by the agent's output or its arguments".into());
            }
            let price = self.find(model).ok_or_else(|| {
                format!("no price for model {model} (add it to $WRANGLE_HOME/prices.toml)")
            })?;
            let kind_price = |count: u64, price: Option<f64>, kind: &str| match (count, price) {
                (0, _) => Ok(0.0),
                (count, Some(price)) => Ok(count as f64 * price),
                (_, None) => Err(format!("no price for the {kind} tokens of model {model}")),
            };
            total += used.input as f64 * price.input
                + used.output as f64 * price.output
                + kind_price(used.cache_read, price.cache_read, "cache-read")?
                + kind_price(used.cache_write, price.cache_write, "cache-write")?;
        }
        Ok(any.then_some(total / 1e6))
    }
}

/// A model id without what providers add to it: a prefix (`openai/`,
/// `us.anthropic.`), a date (`-20250929`, `-2025-08-07`), a version
/// (`-v1:0`), `-latest`.
fn normalize(model: &str) -> String {
    let mut name = model.rsplit('/').next().unwrap_or(model);
    for prefix in ["us.", "eu.", "apac.", "jp.", "global."] {
        name = name.strip_prefix(prefix).unwrap_or(name);
    }
    for prefix in ["anthropic.", "openai.", "google."] {
        name = name.strip_prefix(prefix).unwrap_or(name);
    }
    let mut name = name.to_string();
    if let Some(at) = name.find("-v").filter(|at| {
        let rest = &name[at + 2..];
        !rest.is_empty() && rest.chars().all(|c| c.is_ascii_digit() || c == ':')
    }) {
        name.truncate(at);
    }
    for suffix in ["-latest", "@latest"] {
        if let Some(stripped) = name.strip_suffix(suffix) {
            name = stripped.to_string();
        }
    }
    // A trailing date: -YYYYMMDD or -YYYY-MM-DD.
    let digits = |text: &str| !text.is_empty() && text.chars().all(|c| c.is_ascii_digit());
    if let Some((head, tail)) = name.rsplit_once('-') {
        if tail.len() == 8 && digits(tail) {
            name = head.to_string();
        }
    }
    // `get`, not `split_at`: a model named in non-ASCII letters may have
    // no character boundary there, and the model is what an agent printed.
    let cut = name.len().saturating_sub(11);
    if let (true, Some(head), Some(tail)) = (cut > 0, name.get(..cut), name.get(cut..)) {
        let parts: Vec<&str> = tail.trim_start_matches('-').split('-').collect();
        if tail.starts_with('-')
            && parts.len() == 3
            && parts[0].len() == 4
            && parts.iter().all(|part| digits(part))
        {
            name = head.to_string();
        }
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(
        model: &str,
        input: u64,
        output: u64,
        read: u64,
        write: u64,
    ) -> BTreeMap<String, TokenCounts> {
        BTreeMap::from([(
            model.to_string(),
            TokenCounts {
                input,
                output,
                cache_read: read,
                cache_write: write,
            },
        )])
    }

    #[test]
    fn the_shipped_table_parses_and_has_a_date_and_a_source() {
        let prices = Prices::shipped();
        assert!(!prices.date.is_empty() && prices.source.starts_with("https://"));
        assert!(prices.models.len() > 20);
    }

    #[test]
    fn model_ids_are_found_under_their_plain_names() {
        let prices = Prices::shipped();
        for id in [
            "claude-sonnet-4-5-20250929",
            "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
            "anthropic/claude-sonnet-4-5",
            "claude-sonnet-4-5@latest",
        ] {
            assert_eq!(prices.find(id).map(|p| p.input), Some(3.0), "{id}");
        }
        assert_eq!(prices.find("gpt-5-2025-08-07").map(|p| p.input), Some(1.25));
        assert_eq!(
            prices.find("openai/gpt-5-codex").map(|p| p.output),
            Some(10.0)
        );
        assert!(prices.find("claude-sonnet-4-50").is_none());
        assert!(prices.find("llama-3").is_none());
    }

    #[test]
    fn costs_are_exact_and_unknown_prices_give_none_with_a_reason() {
        let prices = Prices::shipped();
        // The Sonnet row of AGENT-FORMATS.md's transcript: $0.0553014.
        let cost = prices
            .cost(&tokens("claude-sonnet-4-5-20250929", 6, 583, 42853, 8982))
            .unwrap()
            .unwrap();
        assert!((cost - 0.0553014).abs() < 1e-12, "{cost}");
        assert_eq!(prices.cost(&BTreeMap::new()), Ok(None));
        assert!(prices
            .cost(&tokens("mystery-model", 1, 1, 0, 0))
            .unwrap_err()
            .contains("no price for model mystery-model"));
        assert!(prices
            .cost(&tokens("", 1, 1, 0, 0))
            .unwrap_err()
            .contains("no model is named"));
        // GPT-5 has no cache-write price: a write is not priced at 0.
        assert!(prices
            .cost(&tokens("gpt-5", 1, 1, 0, 5))
            .unwrap_err()
            .contains("cache-write"));
    }

    #[test]
    fn a_home_adds_and_replaces_models_and_bad_files_are_refused() {
        let mut prices = Prices::shipped();
        prices
            .apply(
                "date = \"2027-01-01\"\n[models.\"my-model\"]\ninput = 1\noutput = 2\n\
                 [models.\"gpt-5\"]\ninput = 2\noutput = 20\ncache_read = 0.2\n",
            )
            .unwrap();
        assert_eq!(prices.date, "2027-01-01");
        assert_eq!(prices.find("my-model").map(|p| p.output), Some(2.0));
        assert_eq!(prices.find("gpt-5").map(|p| p.input), Some(2.0));
        assert!(prices.apply("[models.x]\ninput = -1\noutput = 1").is_err());
        assert!(prices.apply("[models.x]\ninput = 1").is_err());
        assert!(prices.apply("colour = 1").is_err());
        let home = tempfile::tempdir().unwrap();
        std::fs::write(home.path().join(OVERRIDES), "[models").unwrap();
        let error = Prices::for_home(home.path()).unwrap_err();
        assert!(error.contains("prices.toml"), "{error}");
    }
}
