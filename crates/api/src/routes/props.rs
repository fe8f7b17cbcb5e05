//! Property tests of the `Idempotency-Key` header (issue 16): any value a
//! client sends is taken or refused, never a panic, and a refusal names
//! the value and says what is accepted.

use super::{idempotency_key, SHOWN};
use axum::http::{HeaderMap, HeaderValue};
use proptest::prelude::*;
use wrangle_wire::IDEMPOTENCY_KEY;

proptest! {
    #![proptest_config(crate::proptest_config())]

    #[test]
    fn any_key_is_taken_or_refused_by_name(bytes in prop_oneof![
        prop::collection::vec(any::<u8>(), 0..300),
        "[ -~]{0,260}".prop_map(String::into_bytes),
        "\\PC{0,20}".prop_map(String::into_bytes),
    ]) {
        // Only what a header can hold reaches the route.
        let Ok(value) = HeaderValue::from_bytes(&bytes) else {
            return Ok(());
        };
        let mut headers = HeaderMap::new();
        headers.insert(IDEMPOTENCY_KEY, value);
        match idempotency_key(&headers) {
            Ok(Some(key)) => {
                prop_assert!((1..=200).contains(&key.len()) && !key.contains(','));
                prop_assert_eq!(key.as_bytes(), bytes.trim_ascii());
            }
            Ok(None) => prop_assert!(false, "a key sent was not seen"),
            Err(error) => {
                let message = &error.0.error.message;
                let sent: String = String::from_utf8_lossy(&bytes).chars().take(SHOWN).collect();
                prop_assert!(message.contains(&format!("{sent:?}")), "{message}");
                prop_assert!(message.contains("1 to 200 visible ASCII characters"), "{message}");
            }
        }
    }
}

#[test]
fn no_header_is_no_key() {
    assert!(matches!(idempotency_key(&HeaderMap::new()), Ok(None)));
}
