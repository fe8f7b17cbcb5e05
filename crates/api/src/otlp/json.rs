//! OTLP/JSON log bodies, decoded into [`view::Record`]s: their log
//! records alone (wrangle reads nothing of a resource or a scope), each
//! value read as it comes, each string borrowed from the body unless it
//! has escapes.
//!
//! opentelemetry-proto's own serde mapping buffers every attribute's value
//! to find out which kind it is (a flattened oneof), reads every 64-bit
//! number into a `String` first and copies every string: that was most of
//! the telemetry port's allocations. This one takes what that one takes,
//! and more: times written as numbers, and an empty value (`{}`, which
//! OpenTelemetry's JavaScript exporters write for an attribute that is
//! null or undefined) read as no value, where the mapping refuses the
//! whole body for it. The records are the same, so that a record's key
//! (a digest of its protobuf encoding) does not depend on how it came.

use super::view::{self, Any, Pair};
use base64::Engine as _;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;

/// Every log record of the OTLP/JSON `ExportLogsServiceRequest` in `body`.
pub fn log_records(body: &[u8]) -> Result<Vec<view::Record<'_>>, serde_json::Error> {
    let request: Request = serde_json::from_slice(body)?;
    Ok(request
        .resource_logs
        .into_iter()
        .flat_map(|resource| resource.scope_logs)
        .flat_map(|scope| scope.log_records)
        .map(|record| record.0)
        .collect())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Request<'a> {
    #[serde(borrow)]
    resource_logs: Vec<ResourceLogs<'a>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct ResourceLogs<'a> {
    resource: IgnoredAny,
    #[serde(borrow)]
    scope_logs: Vec<ScopeLogs<'a>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct ScopeLogs<'a> {
    scope: IgnoredAny,
    #[serde(borrow)]
    log_records: Vec<Record<'a>>,
}

/// A log record as OTLP/JSON writes it.
struct Record<'a>(view::Record<'a>);

impl<'de: 'a, 'a> Deserialize<'de> for Record<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize, Default)]
        #[serde(rename_all = "camelCase", default)]
        struct Fields<'a> {
            #[serde(deserialize_with = "int_of_text_or_number")]
            time_unix_nano: u64,
            #[serde(deserialize_with = "int_of_text_or_number")]
            observed_time_unix_nano: u64,
            severity_number: i32,
            #[serde(borrow)]
            severity_text: Text<'a>,
            #[serde(borrow)]
            body: Option<Value<'a>>,
            #[serde(borrow)]
            attributes: Vec<Attribute<'a>>,
            dropped_attributes_count: u32,
            flags: u32,
            #[serde(deserialize_with = "hex_bytes")]
            trace_id: Vec<u8>,
            #[serde(deserialize_with = "hex_bytes")]
            span_id: Vec<u8>,
            #[serde(borrow)]
            event_name: Text<'a>,
        }
        let fields = Fields::deserialize(deserializer)?;
        Ok(Record(view::Record {
            time_unix_nano: fields.time_unix_nano,
            observed_time_unix_nano: fields.observed_time_unix_nano,
            severity_number: fields.severity_number,
            severity_text: fields.severity_text.0,
            body: fields.body.and_then(Value::any),
            attributes: fields.attributes.into_iter().map(|pair| pair.0).collect(),
            dropped_attributes_count: fields.dropped_attributes_count,
            flags: fields.flags,
            trace_id: Cow::Owned(fields.trace_id),
            span_id: Cow::Owned(fields.span_id),
            event_name: fields.event_name.0,
        }))
    }
}

/// A key and its value.
struct Attribute<'a>(Pair<'a>);

impl<'de: 'a, 'a> Deserialize<'de> for Attribute<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Fields<'a> {
            #[serde(borrow)]
            key: Text<'a>,
            #[serde(borrow)]
            value: Option<Value<'a>>,
        }
        let fields = Fields::deserialize(deserializer)?;
        Ok(Attribute(Pair {
            key: fields.key.0,
            value: fields.value.and_then(Value::any),
        }))
    }
}

/// An `AnyValue`: `None` when it is empty (`{}`).
struct Value<'a>(Option<view::Value<'a>>);

impl<'a> Value<'a> {
    /// The value, unless it is empty.
    fn any(self) -> Option<Any<'a>> {
        self.0.map(|value| Any(Some(value)))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Value<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(ValueVisitor(PhantomData))
    }
}

/// The kinds of value, as OTLP/JSON names them.
#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "camelCase")]
enum Kind {
    StringValue,
    BoolValue,
    IntValue,
    DoubleValue,
    ArrayValue,
    KvlistValue,
    BytesValue,
    #[serde(other)]
    Unknown,
}

struct ValueVisitor<'a>(PhantomData<Value<'a>>);

impl<'de: 'a, 'a> Visitor<'de> for ValueVisitor<'a> {
    type Value = Value<'a>;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("an OTLP AnyValue object")
    }

    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Value<'a>, M::Error> {
        #[derive(Deserialize)]
        struct Values<T> {
            values: Vec<T>,
        }
        let mut value = None;
        while let Some(kind) = map.next_key::<Kind>()? {
            value = Some(match kind {
                Kind::StringValue => view::Value::Text(map.next_value::<Text<'a>>()?.0),
                Kind::BoolValue => view::Value::Bool(map.next_value()?),
                Kind::IntValue => view::Value::Int(map.next_value::<Int>()?.0),
                Kind::DoubleValue => view::Value::Double(map.next_value()?),
                Kind::ArrayValue => {
                    let array: Values<Value<'a>> = map.next_value()?;
                    // An empty element is dropped, as it would be
                    // refused.
                    view::Value::Array(array.values.into_iter().filter_map(Value::any).collect())
                }
                Kind::KvlistValue => {
                    let list: Values<Attribute<'a>> = map.next_value()?;
                    view::Value::List(list.values.into_iter().map(|pair| pair.0).collect())
                }
                Kind::BytesValue => {
                    let text: Text<'a> = map.next_value()?;
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(text.0.as_ref())
                        .map_err(de::Error::custom)?;
                    view::Value::Bytes(Cow::Owned(bytes))
                }
                Kind::Unknown => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            });
        }
        Ok(Value(value))
    }
}

/// A 64-bit integer, written as text (as OTLP/JSON writes them) or as a
/// number.
struct Int(i64);

impl<'de> Deserialize<'de> for Int {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        int_of_text_or_number(deserializer).map(Int)
    }
}

/// An integer of type `T`, written as text or as a number.
fn int_of_text_or_number<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<i64> + TryFrom<u64> + FromStr,
{
    struct IntVisitor<T>(PhantomData<T>);
    impl<T: TryFrom<i64> + TryFrom<u64> + FromStr> Visitor<'_> for IntVisitor<T> {
        type Value = T;
        fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
            formatter.write_str("an integer, or one as text")
        }
        fn visit_i64<E: de::Error>(self, value: i64) -> Result<T, E> {
            T::try_from(value).map_err(|_| E::custom(format!("{value} is out of range")))
        }
        fn visit_u64<E: de::Error>(self, value: u64) -> Result<T, E> {
            T::try_from(value).map_err(|_| E::custom(format!("{value} is out of range")))
        }
        fn visit_str<E: de::Error>(self, text: &str) -> Result<T, E> {
            text.parse()
                .map_err(|_| E::custom(format!("{text:?} is not an integer in range")))
        }
    }
    deserializer.deserialize_any(IntVisitor(PhantomData))
}

/// Bytes written as hex (trace and span ids).
fn hex_bytes<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
    let text = Text::deserialize(deserializer)?;
    let digits = text.0.as_ref();
    hex::decode(digits.strip_prefix("0x").unwrap_or(digits)).map_err(de::Error::custom)
}

/// A string, borrowed from the body where it has no escapes.
#[derive(Deserialize, Default)]
struct Text<'a>(#[serde(borrow)] Cow<'a, str>);
