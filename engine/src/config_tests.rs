use super::*;
use clap::Parser;

/// `spate serve`'s flags alone, for parsing tests (also `cluster::config`'s).
#[derive(Parser)]
pub(crate) struct Harness {
    #[command(flatten)]
    pub(crate) serve: ServeArgs,
}

#[test]
fn defaults_need_no_config() {
    let config = Harness::parse_from(["spate"]).serve.resolve().unwrap();
    assert_eq!(config.listen.port(), 9092);
    assert_eq!(config.data_dir, PathBuf::from("spate-data"));
    assert!(config.auto_create_topics);
    assert_eq!(config.advertised_host, "127.0.0.1");
}

#[test]
fn the_flags_are_well_formed() {
    // clap checks conflicts, names and flattened groups here even in release builds.
    use clap::CommandFactory;
    Harness::command().debug_assert();
}

#[test]
fn security_and_cluster_keys_come_from_the_file_under_the_flags() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spate.toml");
    std::fs::write(
        &path,
        "listeners = \"PLAINTEXT://127.0.0.1:9300,SASL_PLAINTEXT://127.0.0.1:9400\"\n\
         authorizer = \"acl\"\nsuper_users = \"User:admin\"\n\
         controller_quorum_voters = \"1@127.0.0.1:9301\"\nnode_id = 1\n\
         broker_session_timeout_ms = 4000\n",
    )
    .unwrap();
    let config = Harness::parse_from([
        "spate",
        "--config",
        path.to_str().unwrap(),
        "--super-users",
        "User:ops",
    ])
    .serve
    .resolve()
    .unwrap();
    assert_eq!(config.listeners.len(), 2);
    assert_eq!(config.listen.port(), 9300);
    assert!(config.authorizer.enabled);
    assert_eq!(config.authorizer.super_users, vec!["User:ops".to_string()]);
    let cluster = config.cluster.expect("a cluster node");
    assert_eq!(cluster.session_timeout_ms, 4000);
    assert_eq!(
        cluster.controller_listen,
        Some("127.0.0.1:9301".parse().unwrap())
    );
}

#[test]
fn flags_override_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spate.toml");
    std::fs::write(&path, "default_partitions = 7\nnode_id = 3\n").unwrap();
    let config = Harness::parse_from([
        "spate",
        "--config",
        path.to_str().unwrap(),
        "--node-id",
        "5",
    ])
    .serve
    .resolve()
    .unwrap();
    assert_eq!(config.default_partitions, 7);
    assert_eq!(config.node_id, 5);
}

#[test]
fn listeners_sasl_and_tls_settings_resolve_and_are_checked() {
    let resolve = |args: &[&str]| {
        let mut all = vec!["spate"];
        all.extend_from_slice(args);
        Harness::parse_from(all).serve.resolve()
    };
    let config = resolve(&[
        "--listeners",
        "PLAINTEXT://127.0.0.1:9092,SASL_SSL://0.0.0.0:9192",
        "--advertised-listeners",
        "SASL_SSL://broker.example:19192",
        "--ssl-cert",
        "c.pem",
        "--ssl-key",
        "k.pem",
        "--sasl-mechanisms",
        "PLAIN",
        "--connections-max-reauth-ms",
        "60000",
    ])
    .unwrap();
    assert_eq!(
        config.listen.port(),
        9092,
        "the PLAINTEXT listener is the inter-broker one"
    );
    let endpoints = config.listener_endpoints();
    assert_eq!(endpoints[1].name, "SASL_SSL");
    assert_eq!(
        (endpoints[1].host.as_str(), endpoints[1].base_port),
        ("broker.example", 19192)
    );
    assert!(config.tls.is_some());
    assert_eq!(config.sasl.mechanisms.len(), 1);
    assert_eq!(
        config.sasl.session_lifetime,
        Some(std::time::Duration::from_secs(60))
    );
    // A TLS listener needs a certificate and key; --listen and --listeners exclude each
    // other; a cluster node needs a PLAINTEXT listener for replication.
    assert!(resolve(&["--listeners", "SSL://127.0.0.1:9093"]).is_err());
    assert!(resolve(&["--listeners", "SSL://127.0.0.1:9093", "--ssl-cert", "c"]).is_err());
    assert!(Harness::try_parse_from([
        "spate",
        "--listen",
        "127.0.0.1:9092",
        "--listeners",
        "PLAINTEXT://127.0.0.1:9092"
    ])
    .is_err());
    assert!(resolve(&["--ssl-client-auth", "maybe"]).is_err());
    assert!(resolve(&[
        "--listeners",
        "SASL_PLAINTEXT://127.0.0.1:9092",
        "--controller-quorum-voters",
        "0@127.0.0.1:9301",
    ])
    .is_err());
}

#[test]
fn unknown_file_keys_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spate.toml");
    std::fs::write(&path, "data_dri = \"x\"\n").unwrap();
    let error = Harness::parse_from(["spate", "--config", path.to_str().unwrap()])
        .serve
        .resolve()
        .unwrap_err();
    assert!(format!("{error:#}").contains("data_dri"));
}

#[test]
fn quota_windows_default_to_kafkas_and_are_read_from_flags_and_file() {
    let config = Harness::parse_from(["spate"]).serve.resolve().unwrap();
    assert_eq!(config.quota_window, crate::quota::QuotaWindow::default());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spate.toml");
    std::fs::write(
        &path,
        "quota_window_num = 5\nquota_window_size_seconds = 2\n",
    )
    .unwrap();
    let config = Harness::parse_from([
        "spate",
        "--config",
        path.to_str().unwrap(),
        "--quota-window-num",
        "3",
    ])
    .serve
    .resolve()
    .unwrap();
    assert_eq!(config.quota_window.samples, 3);
    assert_eq!(
        config.quota_window.window,
        std::time::Duration::from_secs(2)
    );
}
