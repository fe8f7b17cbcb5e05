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
    use proptest::prelude::*;

    /// A comma-separated filter of states or labels, some of them
    /// mistyped, some odd.
    fn filter_text() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            prop::sample::select(State::ALL.map(State::as_str).to_vec()).prop_map(str::to_string),
            prop::sample::select(vec![
                "", " ", "=", "team=a", "=x", "k=", "Running", "\0", "é=ü"
            ])
            .prop_map(str::to_string),
            "\\PC{0,8}",
        ];
        prop::collection::vec(piece, 0..5).prop_map(|pieces| pieces.join(","))
    }

    proptest! {
        #![proptest_config(crate::proptest_config())]

        /// `ps --filter`: any text is read, or refused naming the piece
        /// that cannot be read and saying what can.
        #[test]
        fn any_filter_is_read_or_refused_by_name(state in proptest::option::of(filter_text()), label in proptest::option::of(filter_text())) {
            let query = ListQuery { state: state.clone(), label: label.clone(), ..ListQuery::default() };
            if let Err(error) = Filter::parse(&query) {
                let pieces: Vec<String> = [state, label]
                    .into_iter()
                    .flatten()
                    .flat_map(|text| text.split(',').map(|piece| format!("{piece:?}")).collect::<Vec<_>>())
                    .collect();
                let message = &error.message;
                prop_assert!(pieces.iter().any(|piece| message.contains(piece.as_str())), "{message}");
                prop_assert!(
                    message.contains("in the filter: use ") || message.contains("use KEY=VALUE or KEY"),
                    "{message}"
                );
            }
        }

        #[test]
        fn any_states_read_back(states in prop::collection::vec(prop::sample::select(State::ALL.to_vec()), 1..5)) {
            let text: Vec<&str> = states.iter().map(|state| state.as_str()).collect();
            let query = ListQuery { state: Some(text.join(" , ")), ..ListQuery::default() };
            prop_assert_eq!(Filter::parse(&query).map(|filter| filter.states), Ok(Some(states)));
        }
    }

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
