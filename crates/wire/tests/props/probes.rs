//! Health probe targets: `--health-tcp HOST:PORT`, `--health-http URL`.

use crate::near::{config, input, names};
use proptest::prelude::*;
use std::net::{Ipv4Addr, Ipv6Addr};
use wrangle_wire::parse::{parse_host_port, parse_http_url, HostPort};

const ADDRESSES: &[&str] = &[
    "127.0.0.1:8080",
    "localhost:5432",
    "[::1]:80",
    "db.local:1",
    "[fe80::1]:65535",
];

const URLS: &[&str] = &[
    "http://127.0.0.1:8080/health",
    "http://example.com",
    "http://[::1]:81?x",
    "HTTP://host/a/b?c=d#top",
    "https://host/",
];

/// A host as people write one: a name, an IPv4 or an IPv6 address.
fn host() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9][a-z0-9._-]{0,20}",
        any::<Ipv4Addr>().prop_map(|ip| ip.to_string()),
        any::<Ipv6Addr>().prop_map(|ip| ip.to_string()),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_address_is_taken_or_refused_by_name(text in input(ADDRESSES)) {
        if let Err(error) = parse_host_port(&text) {
            let prefix = format!("invalid --health-tcp {text:?}: ");
            prop_assert!(error.starts_with(&prefix), "{error:?}");
            prop_assert!(error.len() > prefix.len(), "{error:?} says nothing of why");
        }
    }

    #[test]
    fn any_url_is_taken_or_refused_by_name(text in input(URLS)) {
        match parse_http_url(&text) {
            Ok(url) => {
                prop_assert!(url.path.starts_with('/'));
                prop_assert!(url.address.port > 0);
            }
            Err(error) => {
                let prefix = format!("invalid --health-http {text:?}: ");
                prop_assert!(error.starts_with(&prefix), "{error:?}");
                prop_assert!(names(&error, &text));
                prop_assert!(error.len() > prefix.len(), "{error:?} says nothing of why");
            }
        }
    }

    #[test]
    fn addresses_read_back(host in host(), port in 1..=u16::MAX) {
        let address = HostPort { host, port };
        prop_assert_eq!(parse_host_port(&address.to_string()), Ok(address));
    }

    #[test]
    fn urls_read_back(
        host in host(),
        port in proptest::option::of(1..=u16::MAX),
        path in "(/[a-zA-Z0-9._~%-]{0,8}){0,3}",
        query in proptest::option::of("[a-z0-9=&]{0,10}"),
    ) {
        let address = HostPort { host, port: port.unwrap_or(80) };
        let authority = match port {
            Some(_) => address.to_string(),
            None if address.host.contains(':') => format!("[{}]", address.host),
            None => address.host.clone(),
        };
        let query = query.map(|query| format!("?{query}")).unwrap_or_default();
        let url = parse_http_url(&format!("http://{authority}{path}{query}#fragment"))
            .map_err(TestCaseError::fail)?;
        prop_assert_eq!(url.address, address);
        let expected = format!("{path}{query}");
        let expected = if expected.starts_with('/') { expected } else { format!("/{expected}") };
        prop_assert_eq!(url.path, expected);
    }
}
