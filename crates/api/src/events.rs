//! `GET /v1/events`: the event stream as Server-Sent Events (the default)
//! or as JSON lines (`Accept: application/x-ndjson`).
//!
//! In SSE an event is `id:` (its id, which a browser's `EventSource`
//! sends back as `Last-Event-ID` when it reconnects), `event:` (its type)
//! and `data:` (its JSON); a notice (`gap`, `lagged`) has no `id:`; a
//! keep-alive is a comment line. In JSON lines each message is one line,
//! and a keep-alive is an empty line.

use crate::error::ApiError;
use crate::routes::QueryArgs;
use crate::AppState;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use std::fmt::Write as _;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use wrangle_engine::events::stream::Item;
use wrangle_wire::{EventsQuery, EVENT_ID_HEADER};

/// How the stream is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    /// `text/event-stream`.
    Sse,
    /// `application/x-ndjson`.
    JsonLines,
}

impl Format {
    fn of(headers: &HeaderMap) -> Format {
        let accept = headers
            .get(header::ACCEPT)
            .and_then(|accept| accept.to_str().ok())
            .unwrap_or_default();
        if accept.contains("application/x-ndjson") {
            Format::JsonLines
        } else {
            Format::Sse
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Format::Sse => "text/event-stream",
            Format::JsonLines => "application/x-ndjson",
        }
    }

    /// One message as it goes on the wire.
    fn frame(self, item: &Item) -> Bytes {
        match (self, item) {
            (format, Item::Events(events)) => {
                let size: usize = events.iter().map(|event| event.body.len() + 64).sum();
                let mut text = String::with_capacity(size);
                for event in events {
                    match format {
                        Format::Sse => {
                            let _ = write!(
                                text,
                                "id: {}\nevent: {}\ndata: {}\n\n",
                                event.id, event.kind, event.body
                            );
                        }
                        Format::JsonLines => {
                            text.push_str(&event.body);
                            text.push('\n');
                        }
                    }
                }
                Bytes::from(text)
            }
            (format, Item::Notice(notice)) => {
                let json = serde_json::to_string(notice).unwrap_or_default();
                Bytes::from(match format {
                    Format::Sse => format!("event: {}\ndata: {json}\n\n", notice.name()),
                    Format::JsonLines => format!("{json}\n"),
                })
            }
            (Format::Sse, Item::KeepAlive) => Bytes::from_static(b": keep-alive\n\n"),
            (Format::JsonLines, Item::KeepAlive) => Bytes::from_static(b"\n"),
        }
    }
}

/// Every change as it happens, after the backlog `since` asks for.
#[utoipa::path(
    get,
    path = "/v1/events",
    params(EventsQuery, ("Last-Event-ID" = Option<String>, Header, description = "resume after this event id (wins over since)")),
    responses(
        (status = 200, description = "Server-Sent Events, or one JSON Event (or Notice) per line with Accept: application/x-ndjson", content_type = "text/event-stream", body = wrangle_wire::Event,
            headers(("wrangle-event-id" = u64, description = "the id the stream starts after, when known before its first event"))),
        (status = 400, body = wrangle_wire::ErrorBody),
        (status = 503, body = wrangle_wire::ErrorBody, description = "too many streams are open")
    )
)]
pub async fn events(
    State(state): State<AppState>,
    QueryArgs(query): QueryArgs<EventsQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let last_event_id = headers
        .get("last-event-id")
        .map(|id| {
            id.to_str()
                .map_err(|_| ApiError::invalid("the Last-Event-ID header is not text"))
        })
        .transpose()?;
    let format = Format::of(&headers);
    let subscription = state.engine.events(&query, last_event_id)?;
    let after = subscription.after;
    let frames = ReceiverStream::new(subscription.items)
        .chain(ReceiverStream::new(subscription.last))
        .map(move |item| Ok::<_, std::convert::Infallible>(format.frame(&item)));
    let mut response = (
        [
            (header::CONTENT_TYPE, format.content_type()),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(frames),
    )
        .into_response();
    if let Some(after) = after {
        response
            .headers_mut()
            .insert(EVENT_ID_HEADER, HeaderValue::from(after));
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use wrangle_engine::events::EventRecord;
    use wrangle_wire::Notice;

    #[test]
    fn frames_follow_each_format() {
        let event = |id: u64| {
            Arc::new(EventRecord {
                id,
                at: chrono::Utc::now(),
                kind: "agent.running".into(),
                agent_id: None,
                agent_name: None,
                group: None,
                run: None,
                body: format!(r#"{{"id":{id},"type":"agent.running"}}"#),
            })
        };
        let events = Item::Events(vec![event(12), event(13)]);
        assert_eq!(
            Format::Sse.frame(&events),
            "id: 12\nevent: agent.running\ndata: {\"id\":12,\"type\":\"agent.running\"}\n\n\
             id: 13\nevent: agent.running\ndata: {\"id\":13,\"type\":\"agent.running\"}\n\n"
        );
        assert_eq!(
            Format::JsonLines.frame(&events),
            "{\"id\":12,\"type\":\"agent.running\"}\n{\"id\":13,\"type\":\"agent.running\"}\n"
        );
        let lagged = Item::Notice(Notice::Lagged { last_id: 12 });
        assert_eq!(
            Format::Sse.frame(&lagged),
            "event: lagged\ndata: {\"type\":\"lagged\",\"last_id\":12}\n\n"
        );
        assert_eq!(Format::Sse.frame(&Item::KeepAlive), ": keep-alive\n\n");
        assert_eq!(Format::JsonLines.frame(&Item::KeepAlive), "\n");
    }
}
