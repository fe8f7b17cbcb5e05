//! OTLP/JSON log bodies, decoded straight into the protobuf types: their
//! log records alone (wrangle reads nothing of a resource or a scope),
//! each value read as it comes.
//!
//! opentelemetry-proto's own serde mapping buffers every attribute's value
//! to find out which kind it is (a flattened oneof), and reads every
//! 64-bit number into a `String` first: that was most of the telemetry
//! port's allocations. This one takes what that one takes, and more:
//! times written as numbers, and an empty value (`{}`, which
//! OpenTelemetry's JavaScript exporters write for an attribute that is
//! null or undefined) read as no value, where the mapping refuses the
//! whole body for it. The records are the same, so that a record's key
//! (a digest of its protobuf encoding) does not depend on how it came.

use base64::Engine as _;
use opentelemetry_proto::tonic::common::v1::{
    any_value, AnyValue, ArrayValue, KeyValue, KeyValueList,
};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;

/// Every log record of the OTLP/JSON `ExportLogsServiceRequest` in `body`.
pub fn log_records(body: &[u8]) -> Result<Vec<LogRecord>, serde_json::Error> {
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
struct Request {
    resource_logs: Vec<ResourceLogs>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct ResourceLogs {
    resource: IgnoredAny,
    scope_logs: Vec<ScopeLogs>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct ScopeLogs {
    scope: IgnoredAny,
    log_records: Vec<Record>,
}

/// A log record as OTLP/JSON writes it.
struct Record(LogRecord);

impl<'de> Deserialize<'de> for Record {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize, Default)]
        #[serde(rename_all = "camelCase", default)]
        struct Fields {
            #[serde(deserialize_with = "int_of_text_or_number")]
            time_unix_nano: u64,
            #[serde(deserialize_with = "int_of_text_or_number")]
            observed_time_unix_nano: u64,
            severity_number: i32,
            severity_text: String,
            body: Option<Value>,
            attributes: Vec<Attribute>,
            dropped_attributes_count: u32,
            flags: u32,
            #[serde(deserialize_with = "hex_bytes")]
            trace_id: Vec<u8>,
            #[serde(deserialize_with = "hex_bytes")]
            span_id: Vec<u8>,
            event_name: String,
        }
        let fields = Fields::deserialize(deserializer)?;
        Ok(Record(LogRecord {
            time_unix_nano: fields.time_unix_nano,
            observed_time_unix_nano: fields.observed_time_unix_nano,
            severity_number: fields.severity_number,
            severity_text: fields.severity_text,
            body: fields.body.and_then(|value| value.0),
            attributes: fields.attributes.into_iter().map(|pair| pair.0).collect(),
            dropped_attributes_count: fields.dropped_attributes_count,
            flags: fields.flags,
            trace_id: fields.trace_id,
            span_id: fields.span_id,
            event_name: fields.event_name,
        }))
    }
}

/// A key and its value.
struct Attribute(KeyValue);

impl<'de> Deserialize<'de> for Attribute {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Fields {
            key: String,
            value: Option<Value>,
        }
        let fields = Fields::deserialize(deserializer)?;
        Ok(Attribute(KeyValue {
            key: fields.key,
            value: fields.value.and_then(|value| value.0),
        }))
    }
}

/// An `AnyValue`: `None` when it is empty (`{}`).
struct Value(Option<AnyValue>);

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(ValueVisitor)
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

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("an OTLP AnyValue object")
    }

    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Value, M::Error> {
        #[derive(Deserialize)]
        struct Values<T> {
            values: Vec<T>,
        }
        let mut value = None;
        while let Some(kind) = map.next_key::<Kind>()? {
            value = Some(match kind {
                Kind::StringValue => any_value::Value::StringValue(map.next_value()?),
                Kind::BoolValue => any_value::Value::BoolValue(map.next_value()?),
                Kind::IntValue => any_value::Value::IntValue(map.next_value::<Int>()?.0),
                Kind::DoubleValue => any_value::Value::DoubleValue(map.next_value()?),
                Kind::ArrayValue => {
                    let array: Values<Value> = map.next_value()?;
                    any_value::Value::ArrayValue(ArrayValue {
                        // An empty element is dropped, as it would be
                        // refused.
                        values: array
                            .values
                            .into_iter()
                            .filter_map(|value| value.0)
                            .collect(),
                    })
                }
                Kind::KvlistValue => {
                    let list: Values<Attribute> = map.next_value()?;
                    any_value::Value::KvlistValue(KeyValueList {
                        values: list.values.into_iter().map(|pair| pair.0).collect(),
                    })
                }
                Kind::BytesValue => {
                    let text: Text<'de> = map.next_value()?;
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(text.as_ref())
                        .map_err(de::Error::custom)?;
                    any_value::Value::BytesValue(bytes)
                }
                Kind::Unknown => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            });
        }
        Ok(Value(value.map(|value| AnyValue { value: Some(value) })))
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
    let digits = text.as_ref();
    hex::decode(digits.strip_prefix("0x").unwrap_or(digits)).map_err(de::Error::custom)
}

/// A string, borrowed from the body where it has no escapes.
#[derive(Deserialize)]
struct Text<'a>(#[serde(borrow)] std::borrow::Cow<'a, str>);

impl AsRef<str> for Text<'_> {
    fn as_ref(&self) -> &str {
        &self.0
    }
}
