//! `GET /v1/agents`' filters (`wrangle ps --filter`), read once and
//! applied in the daemon, so a client asking for the few agents it wants
//! among thousands gets only those.

use crate::error::EngineError;
use crate::model::Agent;
use wrangle_wire::{ListQuery, State};

/// What a list keeps.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    /// Ended agents too.
    all: bool,
    /// Only these states.
    states: Option<Vec<State>>,
    /// Only this group.
    group: Option<String>,
    /// Only agents with these labels (`None`: any value).
    labels: Vec<(String, Option<String>)>,
    /// At most this many.
    pub limit: usize,
}

impl Filter {
    /// Reads `query`; an error names what cannot be read and what can.
    pub fn parse(query: &ListQuery) -> Result<Filter, EngineError> {
        let states = query
            .state
            .as_deref()
            .map(|states| {
                states
                    .split(',')
                    .map(|state| {
                        state.trim().parse::<State>().map_err(|_| {
                            let known: Vec<&str> = State::ALL.iter().map(|s| s.as_str()).collect();
                            EngineError::invalid(format!(
                                "unknown state {state:?} in the filter: use {}",
                                known.join(", ")
                            ))
                        })
                    })
                    .collect::<Result<Vec<State>, EngineError>>()
            })
            .transpose()?;
        let mut labels = Vec::new();
        for label in query.label.iter().flat_map(|labels| labels.split(',')) {
            let (key, value) = match label.split_once('=') {
                Some((key, value)) => (key.trim(), Some(value.to_string())),
                None => (label.trim(), None),
            };
            if key.is_empty() {
                return Err(EngineError::invalid(format!(
                    "label filter {label:?} has no key: use KEY=VALUE or KEY"
                )));
            }
            labels.push((key.to_string(), value));
        }
        Ok(Filter {
            all: query.all,
            states,
            group: query.group.clone().filter(|group| !group.is_empty()),
            labels,
            limit: query.limit.unwrap_or(usize::MAX),
        })
    }

    /// Whether `agent` is listed.
    pub fn matches(&self, agent: &Agent) -> bool {
        let state = agent.status.state;
        let spec = &agent.identity.spec;
        let state_kept = match &self.states {
            Some(states) => states.contains(&state),
            None => self.all || !state.is_ended(),
        };
        state_kept
            && self
                .group
                .as_ref()
                .is_none_or(|group| spec.group.as_ref() == Some(group))
            && self.labels.iter().all(|(key, value)| {
                spec.labels
                    .get(key)
                    .is_some_and(|found| value.as_ref().is_none_or(|value| value == found))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filter_that_cannot_be_read_says_what_can() {
        let query = ListQuery {
            state: Some("running,sleeping".into()),
            ..ListQuery::default()
        };
        let error = Filter::parse(&query).unwrap_err().message;
        assert!(error.contains("\"sleeping\""), "{error}");
        assert!(error.contains("running, "), "{error}");
        let query = ListQuery {
            label: Some("=x".into()),
            ..ListQuery::default()
        };
        assert!(Filter::parse(&query)
            .unwrap_err()
            .message
            .contains("no key"));
        let query = ListQuery {
            state: Some("completed, failed".into()),
            label: Some("team=a,urgent".into()),
            limit: Some(3),
            ..ListQuery::default()
        };
        let filter = Filter::parse(&query).unwrap();
        assert_eq!(filter.states, Some(vec![State::Completed, State::Failed]));
        assert_eq!(
            filter.labels,
            [
                ("team".to_string(), Some("a".to_string())),
                ("urgent".to_string(), None)
            ]
        );
        assert_eq!(filter.limit, 3);
    }
}
