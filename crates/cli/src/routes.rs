//! Paths and query strings of the daemon's API routes. An agent reference
//! is whatever the user typed, so it is percent-encoded as one path
//! segment.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use wrangle_wire::{CostQuery, EventsQuery, ListQuery, LogsQuery, API_PREFIX};

/// Characters left as they are in a path segment: RFC 3986's unreserved
/// ones. Everything else, `/` and `?` included, is encoded.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `GET /v1/daemon`.
pub fn daemon() -> String {
    format!("{API_PREFIX}/daemon")
}

/// `POST /v1/daemon/stop`.
pub fn daemon_stop() -> String {
    format!("{API_PREFIX}/daemon/stop")
}

/// `GET /v1/doctor`.
pub fn doctor() -> String {
    format!("{API_PREFIX}/doctor")
}

/// `POST /v1/agents` (create).
pub fn agents() -> String {
    format!("{API_PREFIX}/agents")
}

/// `POST /v1/batch` (create many; `dry_run`: check only).
pub fn batch(dry_run: bool) -> String {
    format!("{API_PREFIX}/batch?dry_run={dry_run}")
}

/// `GET /v1/agents?all=...` (list).
pub fn list(all: bool) -> String {
    format!("{API_PREFIX}/agents?all={all}")
}

/// `GET /v1/agents` with filters.
pub fn list_matching(query: &ListQuery) -> String {
    let value = |text: &str| utf8_percent_encode(text, SEGMENT).to_string();
    let mut path = list(query.all);
    for (key, filter) in [
        ("state", &query.state),
        ("group", &query.group),
        ("label", &query.label),
    ] {
        if let Some(filter) = filter {
            path += &format!("&{key}={}", value(filter));
        }
    }
    if let Some(limit) = query.limit {
        path += &format!("&limit={limit}");
    }
    if query.pretty {
        path += "&pretty=true";
    }
    path
}

/// `GET /v1/agents/{agent}`.
pub fn agent(reference: &str) -> String {
    format!(
        "{API_PREFIX}/agents/{}",
        utf8_percent_encode(reference, SEGMENT)
    )
}

/// `DELETE /v1/agents/{agent}?force=...`.
pub fn remove(reference: &str, force: bool) -> String {
    format!("{}?force={force}", agent(reference))
}

/// `POST /v1/agents/{agent}/kill`.
pub fn kill(reference: &str) -> String {
    format!("{}/kill", agent(reference))
}

/// `GET /v1/agents/{agent}/logs?...`, with only the parameters that are
/// set.
pub fn logs(reference: &str, query: &LogsQuery) -> String {
    let mut params = Vec::new();
    if let Some(stream) = query.stream {
        params.push(format!("stream={}", stream.as_str()));
    }
    if let Some(tail) = query.tail {
        params.push(format!("tail={tail}"));
    }
    if query.follow {
        params.push("follow=true".to_owned());
    }
    if let Some(run) = query.run {
        params.push(format!("run={run}"));
    }
    let value = |text: &str| utf8_percent_encode(text, SEGMENT).to_string();
    if let Some(since) = &query.since {
        params.push(format!("since={}", value(since)));
    }
    if let Some(until) = &query.until {
        params.push(format!("until={}", value(until)));
    }
    let path = format!("{}/logs", agent(reference));
    if params.is_empty() {
        path
    } else {
        format!("{path}?{}", params.join("&"))
    }
}

/// `POST /v1/agents/{agent}/restart`.
pub fn restart(reference: &str) -> String {
    format!("{}/restart", agent(reference))
}

/// `GET /v1/agents/{agent}/runs`.
pub fn runs(reference: &str) -> String {
    format!("{}/runs", agent(reference))
}

/// `POST /v1/validate`.
pub fn validate() -> String {
    format!("{API_PREFIX}/validate")
}

/// `GET /v1/groups`.
pub fn groups() -> String {
    format!("{API_PREFIX}/groups")
}

/// `PUT /v1/groups/{group}`.
pub fn group(name: &str) -> String {
    format!("{}/{}", groups(), utf8_percent_encode(name, SEGMENT))
}

/// `POST /v1/stop`.
pub fn stop() -> String {
    format!("{API_PREFIX}/stop")
}

/// `GET /v1/summary`.
pub fn summary() -> String {
    format!("{API_PREFIX}/summary")
}

/// `GET /v1/cost?...`, with only the parameters that are set.
pub fn cost(query: &CostQuery) -> String {
    let value = |text: &str| utf8_percent_encode(text, SEGMENT).to_string();
    let mut params = Vec::new();
    if let Some(by) = &query.by {
        params.push(format!("by={}", value(by)));
    }
    if let Some(since) = &query.since {
        params.push(format!("since={}", value(since)));
    }
    with_query(format!("{API_PREFIX}/cost"), &params)
}

/// `GET /v1/events?...`, with only the parameters that are set, each
/// value percent-encoded.
pub fn events(query: &EventsQuery) -> String {
    let value = |text: &str| utf8_percent_encode(text, SEGMENT).to_string();
    let mut params = Vec::new();
    if let Some(since) = &query.since {
        params.push(format!("since={}", value(since)));
    }
    if let Some(agent) = &query.agent {
        params.push(format!("agent={}", value(agent)));
    }
    if let Some(group) = &query.group {
        params.push(format!("group={}", value(group)));
    }
    if let Some(kind) = &query.kind {
        params.push(format!("type={}", value(kind)));
    }
    if let Some(follow) = query.follow {
        params.push(format!("follow={follow}"));
    }
    if let Some(heartbeat) = query.heartbeat {
        params.push(format!("heartbeat={heartbeat}"));
    }
    with_query(format!("{API_PREFIX}/events"), &params)
}

/// `path`, with `params` after a `?` when there are any.
fn with_query(path: String, params: &[String]) -> String {
    if params.is_empty() {
        path
    } else {
        format!("{path}?{}", params.join("&"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wrangle_wire::LogStream;

    #[test]
    fn fixed_routes() {
        assert_eq!(daemon(), "/v1/daemon");
        assert_eq!(daemon_stop(), "/v1/daemon/stop");
        assert_eq!(doctor(), "/v1/doctor");
        assert_eq!(agents(), "/v1/agents");
        assert_eq!(list(true), "/v1/agents?all=true");
        assert_eq!(list(false), "/v1/agents?all=false");
        assert_eq!(stop(), "/v1/stop");
        assert_eq!(summary(), "/v1/summary");
    }

    #[test]
    fn references_are_one_encoded_segment() {
        assert_eq!(agent("build-1.x_y~"), "/v1/agents/build-1.x_y~");
        assert_eq!(agent("a/b?c#d e"), "/v1/agents/a%2Fb%3Fc%23d%20e");
        assert_eq!(agent("é"), "/v1/agents/%C3%A9");
        assert_eq!(remove("a b", true), "/v1/agents/a%20b?force=true");
        assert_eq!(remove("x", false), "/v1/agents/x?force=false");
        assert_eq!(kill("x"), "/v1/agents/x/kill");
        assert_eq!(runs("a b"), "/v1/agents/a%20b/runs");
    }

    #[test]
    fn logs_send_only_what_is_set() {
        assert_eq!(logs("x", &LogsQuery::default()), "/v1/agents/x/logs");
        let query = LogsQuery {
            stream: Some(LogStream::Stderr),
            tail: Some(20),
            follow: true,
            run: None,
            since: Some("2026-12-06T10:00:00+01:00".into()),
            until: None,
        };
        assert_eq!(
            logs("x", &query),
            "/v1/agents/x/logs?stream=stderr&tail=20&follow=true&since=2026-12-06T10%3A00%3A00%2B01%3A00"
        );
    }

    #[test]
    fn event_queries_are_encoded() {
        assert_eq!(events(&EventsQuery::default()), "/v1/events");
        let query = EventsQuery {
            since: Some("2026-12-06T10:00:00+01:00".into()),
            agent: Some("a b".into()),
            kind: Some("agent.exited,agent.removed".into()),
            follow: Some(false),
            ..EventsQuery::default()
        };
        assert_eq!(
            events(&query),
            "/v1/events?since=2026-12-06T10%3A00%3A00%2B01%3A00&agent=a%20b&type=agent.exited%2Cagent.removed&follow=false"
        );
    }
}
