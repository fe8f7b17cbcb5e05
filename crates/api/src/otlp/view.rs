//! A log record as received, its strings borrowed from the body where
//! they can be: what both encodings decode into (JSON by [`super::json`],
//! protobuf through prost's types, viewed in place), so that a record's
//! key and the engine's record are made in one place, and the strings
//! wrangle does not keep (most of a record) are never copied.
//!
//! A record's key is a digest of its protobuf encoding, written here from
//! the view byte for byte as prost writes the `LogRecord` (the tests hold
//! the two equal): the same record has the same key in either encoding,
//! and the keys are those of wrangle's earlier releases, which built the
//! `LogRecord` to encode it.

use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use prost::bytes::BufMut;
use prost::encoding::{encode_key, encode_varint, encoded_len_varint, WireType};
use std::borrow::Cow;

/// A log record: `LogRecord`'s fields, each as OTLP defines it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Record<'a> {
    /// When the event happened (0: not given).
    pub time_unix_nano: u64,
    /// When the exporter saw it (0: not given).
    pub observed_time_unix_nano: u64,
    /// Its severity as a number.
    pub severity_number: i32,
    /// Its severity as the source named it.
    pub severity_text: Cow<'a, str>,
    /// Its body (the CLIs put the event's name there).
    pub body: Option<Any<'a>>,
    /// Its attributes, in the order they came.
    pub attributes: Vec<Pair<'a>>,
    /// Attributes the exporter dropped.
    pub dropped_attributes_count: u32,
    /// Trace flags.
    pub flags: u32,
    /// The trace it belongs to, if any.
    pub trace_id: Cow<'a, [u8]>,
    /// The span it belongs to, if any.
    pub span_id: Cow<'a, [u8]>,
    /// The event's name (newer exporters).
    pub event_name: Cow<'a, str>,
}

/// An `AnyValue`: `Any(None)` is one that is there but empty (protobuf
/// can say so; JSON's `{}` is read as no value at all).
#[derive(Debug, Clone, PartialEq)]
pub struct Any<'a>(pub Option<Value<'a>>);

/// The value an `AnyValue` holds, one of its kinds.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    /// `string_value`.
    Text(Cow<'a, str>),
    /// `bool_value`.
    Bool(bool),
    /// `int_value`.
    Int(i64),
    /// `double_value`.
    Double(f64),
    /// `array_value`.
    Array(Vec<Any<'a>>),
    /// `kvlist_value`.
    List(Vec<Pair<'a>>),
    /// `bytes_value`.
    Bytes(Cow<'a, [u8]>),
}

/// A `KeyValue`: a key and, unless absent, its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Pair<'a> {
    /// The key.
    pub key: Cow<'a, str>,
    /// Its value.
    pub value: Option<Any<'a>>,
}

impl<'a> From<&'a LogRecord> for Record<'a> {
    fn from(record: &'a LogRecord) -> Record<'a> {
        Record {
            time_unix_nano: record.time_unix_nano,
            observed_time_unix_nano: record.observed_time_unix_nano,
            severity_number: record.severity_number,
            severity_text: Cow::Borrowed(&record.severity_text),
            body: record.body.as_ref().map(Any::from),
            attributes: record.attributes.iter().map(Pair::from).collect(),
            dropped_attributes_count: record.dropped_attributes_count,
            flags: record.flags,
            trace_id: Cow::Borrowed(&record.trace_id),
            span_id: Cow::Borrowed(&record.span_id),
            event_name: Cow::Borrowed(&record.event_name),
        }
    }
}

impl<'a> From<&'a AnyValue> for Any<'a> {
    fn from(value: &'a AnyValue) -> Any<'a> {
        Any(value.value.as_ref().map(|value| match value {
            any_value::Value::StringValue(text) => Value::Text(Cow::Borrowed(text)),
            any_value::Value::BoolValue(flag) => Value::Bool(*flag),
            any_value::Value::IntValue(number) => Value::Int(*number),
            any_value::Value::DoubleValue(number) => Value::Double(*number),
            any_value::Value::ArrayValue(array) => {
                Value::Array(array.values.iter().map(Any::from).collect())
            }
            any_value::Value::KvlistValue(list) => {
                Value::List(list.values.iter().map(Pair::from).collect())
            }
            any_value::Value::BytesValue(bytes) => Value::Bytes(Cow::Borrowed(bytes)),
        }))
    }
}

impl<'a> From<&'a KeyValue> for Pair<'a> {
    fn from(pair: &'a KeyValue) -> Pair<'a> {
        Pair {
            key: Cow::Borrowed(&pair.key),
            value: pair.value.as_ref().map(Any::from),
        }
    }
}

impl Record<'_> {
    /// Appends the record's protobuf encoding to `out`: proto3's, fields
    /// in the order of their numbers, those at their default left out.
    pub fn encode(&self, out: &mut Vec<u8>) {
        if self.time_unix_nano != 0 {
            encode_key(1, WireType::SixtyFourBit, out);
            out.put_u64_le(self.time_unix_nano);
        }
        if self.severity_number != 0 {
            encode_key(2, WireType::Varint, out);
            // An int32 is sign-extended to 64 bits.
            encode_varint(i64::from(self.severity_number) as u64, out);
        }
        put_text_unless_empty(3, &self.severity_text, out);
        if let Some(body) = &self.body {
            put_message(5, body, out);
        }
        for pair in &self.attributes {
            put_message(6, pair, out);
        }
        if self.dropped_attributes_count != 0 {
            encode_key(7, WireType::Varint, out);
            encode_varint(u64::from(self.dropped_attributes_count), out);
        }
        if self.flags != 0 {
            encode_key(8, WireType::ThirtyTwoBit, out);
            out.put_u32_le(self.flags);
        }
        put_bytes_unless_empty(9, &self.trace_id, out);
        put_bytes_unless_empty(10, &self.span_id, out);
        if self.observed_time_unix_nano != 0 {
            encode_key(11, WireType::SixtyFourBit, out);
            out.put_u64_le(self.observed_time_unix_nano);
        }
        put_text_unless_empty(12, &self.event_name, out);
    }
}

/// A message nested in another: its length is written before it.
trait Nested {
    /// The length of its encoding.
    fn len(&self) -> usize;
    /// Appends its encoding to `out`.
    fn write(&self, out: &mut Vec<u8>);
}

impl Nested for Any<'_> {
    fn len(&self) -> usize {
        // Every field number here is below 16: its key is one byte.
        match &self.0 {
            None => 0,
            Some(Value::Text(text)) => delimited_len(text.len()),
            Some(Value::Bytes(bytes)) => delimited_len(bytes.len()),
            Some(Value::Bool(_)) => 2,
            Some(Value::Int(number)) => 1 + encoded_len_varint(*number as u64),
            Some(Value::Double(_)) => 9,
            Some(Value::Array(values)) => delimited_len(repeated_len(values)),
            Some(Value::List(pairs)) => delimited_len(repeated_len(pairs)),
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        // A oneof's field is written even when it holds its default.
        match &self.0 {
            None => {}
            Some(Value::Text(text)) => put_delimited(1, text.as_bytes(), out),
            Some(Value::Bool(flag)) => {
                encode_key(2, WireType::Varint, out);
                encode_varint(u64::from(*flag), out);
            }
            Some(Value::Int(number)) => {
                encode_key(3, WireType::Varint, out);
                encode_varint(*number as u64, out);
            }
            Some(Value::Double(number)) => {
                encode_key(4, WireType::SixtyFourBit, out);
                out.put_f64_le(*number);
            }
            Some(Value::Array(values)) => put_repeated(5, values, out),
            Some(Value::List(pairs)) => put_repeated(6, pairs, out),
            Some(Value::Bytes(bytes)) => put_delimited(7, bytes, out),
        }
    }
}

impl Nested for Pair<'_> {
    fn len(&self) -> usize {
        let key = if self.key.is_empty() {
            0
        } else {
            delimited_len(self.key.len())
        };
        key + self
            .value
            .as_ref()
            .map_or(0, |value| delimited_len(value.len()))
    }

    fn write(&self, out: &mut Vec<u8>) {
        put_text_unless_empty(1, &self.key, out);
        if let Some(value) = &self.value {
            put_message(2, value, out);
        }
    }
}

/// The length of a one-byte key, a length and `len` bytes.
fn delimited_len(len: usize) -> usize {
    1 + encoded_len_varint(len as u64) + len
}

/// The length of an `ArrayValue` or `KeyValueList`: its items, each as
/// its field 1.
fn repeated_len(items: &[impl Nested]) -> usize {
    items.iter().map(|item| delimited_len(item.len())).sum()
}

/// Field `tag` holding a message of `items`, each as its field 1.
fn put_repeated(tag: u32, items: &[impl Nested], out: &mut Vec<u8>) {
    encode_key(tag, WireType::LengthDelimited, out);
    encode_varint(repeated_len(items) as u64, out);
    for item in items {
        put_message(1, item, out);
    }
}

fn put_message(tag: u32, message: &impl Nested, out: &mut Vec<u8>) {
    encode_key(tag, WireType::LengthDelimited, out);
    encode_varint(message.len() as u64, out);
    message.write(out);
}

fn put_delimited(tag: u32, bytes: &[u8], out: &mut Vec<u8>) {
    encode_key(tag, WireType::LengthDelimited, out);
    encode_varint(bytes.len() as u64, out);
    out.put_slice(bytes);
}

fn put_text_unless_empty(tag: u32, text: &str, out: &mut Vec<u8>) {
    put_bytes_unless_empty(tag, text.as_bytes(), out);
}

fn put_bytes_unless_empty(tag: u32, bytes: &[u8], out: &mut Vec<u8>) {
    if !bytes.is_empty() {
        put_delimited(tag, bytes, out);
    }
}
