//! The `--config` TOML file: every setting as a file may give it (each optional, with the
//! flag and environment names of `ServeArgs`), and reading it. Part of `config`, which
//! resolves flags, environment, file and defaults into a `BrokerConfig`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;

/// Broker settings as a file may give them. Every field is optional; see [`super::BrokerConfig`]
/// for meanings and defaults.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub(super) data_dir: Option<PathBuf>,
    pub(super) smp: Option<usize>,
    pub(super) node_id: Option<i32>,
    pub(super) default_partitions: Option<i32>,
    pub(super) auto_create_topics: Option<bool>,
    pub(super) socket_request_max_bytes: Option<usize>,
    pub(super) tail_cache_bytes: Option<usize>,
    pub(super) segment_bytes: Option<u64>,
    pub(super) log_zero_ahead_bytes: Option<u64>,
    pub(super) max_message_bytes: Option<u32>,
    pub(super) io_properties: Option<PathBuf>,
    pub(super) group_initial_rebalance_delay_ms: Option<u64>,
    pub(super) group_min_session_timeout_ms: Option<i32>,
    pub(super) group_consumer_session_timeout_ms: Option<u64>,
    pub(super) group_consumer_heartbeat_interval_ms: Option<i32>,
    pub(super) group_consumer_max_size: Option<usize>,
    pub(super) group_max_session_timeout_ms: Option<i32>,
    pub(super) offsets_topic_partitions: Option<i32>,
    pub(super) offsets_topic_replication_factor: Option<i16>,
    pub(super) offsets_retention_minutes: Option<i64>,
    pub(super) transaction_state_log_num_partitions: Option<i32>,
    pub(super) transaction_state_log_replication_factor: Option<i16>,
    pub(super) transaction_state_log_min_isr: Option<i16>,
    pub(super) transaction_max_timeout_ms: Option<i32>,
    pub(super) transaction_abort_timed_out_transaction_cleanup_interval_ms: Option<u64>,
    pub(super) transaction_version: Option<i16>,
    pub(super) transaction_partition_verification_enable: Option<bool>,
    pub(super) log_cleaner_enable: Option<bool>,
    pub(super) log_cleaner_backoff_ms: Option<u64>,
    pub(super) log_cleaner_io_max_bytes_per_second: Option<u64>,
    pub(super) log_cleaner_dedupe_buffer_size: Option<usize>,
    pub(super) stats_listen: Option<SocketAddr>,
    pub(super) metrics_topic_labels: Option<bool>,
    pub(super) metrics_consumer_lag_interval_ms: Option<u64>,
    pub(super) max_partitions_per_request: Option<u32>,
    pub(super) max_broker_partitions: Option<u64>,
    pub(super) auto_create_topics_max_per_request: Option<usize>,
    pub(super) fetch_max_bytes: Option<usize>,
    pub(super) max_connections: Option<usize>,
    pub(super) max_connections_per_ip: Option<usize>,
    pub(super) queued_max_request_bytes: Option<usize>,
    pub(super) quota_window_num: Option<u32>,
    pub(super) quota_window_size_seconds: Option<u64>,
    pub(super) request_receive_timeout_ms: Option<u64>,
    pub(super) producer_id_expiration_ms: Option<i64>,
    pub(super) replica_lag_time_max_ms: Option<u64>,
    pub(super) replica_high_watermark_checkpoint_interval_ms: Option<u64>,
    pub(super) replica_fetch_max_bytes: Option<usize>,
    pub(super) replica_fetch_response_max_bytes: Option<usize>,
    pub(super) auto_leader_rebalance_enable: Option<bool>,
    pub(super) leader_imbalance_check_interval_seconds: Option<u64>,
    pub(super) replica_selector: Option<String>,
    pub(super) open_segments_max: Option<usize>,
    pub(super) controller_listen: Option<SocketAddr>,
    pub(super) controller_quorum_voters: Option<String>,
    pub(super) controller_security_protocol: Option<String>,
    pub(super) controller_quorum_election_timeout_ms: Option<u64>,
    pub(super) broker_rack: Option<String>,
    pub(super) broker_heartbeat_interval_ms: Option<u64>,
    pub(super) broker_session_timeout_ms: Option<u64>,
    // Listener and security settings (`security::settings::SecurityArgs`).
    pub(super) listen: Option<SocketAddr>,
    pub(super) advertised_host: Option<String>,
    pub(super) listeners: Option<String>,
    pub(super) advertised_listeners: Option<String>,
    pub(super) sasl_mechanisms: Option<String>,
    pub(super) connections_max_reauth_ms: Option<u64>,
    pub(super) authorizer: Option<String>,
    pub(super) super_users: Option<String>,
    pub(super) allow_everyone_if_no_acl_found: Option<bool>,
    pub(super) ssl_cert: Option<PathBuf>,
    pub(super) ssl_key: Option<PathBuf>,
    pub(super) ssl_ca: Option<PathBuf>,
    pub(super) ssl_client_auth: Option<String>,
    pub(super) ssl_principal_mapping_rules: Option<String>,
    pub(super) inter_broker_listener_name: Option<String>,
    pub(super) inter_broker_sasl_mechanism: Option<String>,
    pub(super) inter_broker_user: Option<String>,
    pub(super) inter_broker_password: Option<String>,
}

impl ConfigFile {
    /// The cluster settings, as flags would give them.
    pub(super) fn cluster(&mut self) -> crate::cluster::config::ClusterArgs {
        crate::cluster::config::ClusterArgs {
            controller_listen: self.controller_listen.take(),
            controller_quorum_voters: self.controller_quorum_voters.take(),
            controller_security_protocol: self.controller_security_protocol.take(),
            controller_quorum_election_timeout_ms: self
                .controller_quorum_election_timeout_ms
                .take(),
            broker_heartbeat_interval_ms: self.broker_heartbeat_interval_ms.take(),
            broker_session_timeout_ms: self.broker_session_timeout_ms.take(),
        }
    }

    /// The listener and security settings, as flags would give them.
    pub(super) fn security(&mut self) -> crate::security::settings::SecurityArgs {
        crate::security::settings::SecurityArgs {
            listen: self.listen.take(),
            advertised_host: self.advertised_host.take(),
            listeners: self.listeners.take(),
            advertised_listeners: self.advertised_listeners.take(),
            sasl_mechanisms: self.sasl_mechanisms.take(),
            connections_max_reauth_ms: self.connections_max_reauth_ms.take(),
            authorizer: self.authorizer.take(),
            super_users: self.super_users.take(),
            allow_everyone_if_no_acl_found: self.allow_everyone_if_no_acl_found.take(),
            ssl_cert: self.ssl_cert.take(),
            ssl_key: self.ssl_key.take(),
            ssl_ca: self.ssl_ca.take(),
            ssl_client_auth: self.ssl_client_auth.take(),
            ssl_principal_mapping_rules: self.ssl_principal_mapping_rules.take(),
            inter_broker_listener_name: self.inter_broker_listener_name.take(),
            inter_broker_sasl_mechanism: self.inter_broker_sasl_mechanism.take(),
            inter_broker_user: self.inter_broker_user.take(),
            inter_broker_password: self.inter_broker_password.take(),
        }
    }
}

/// Reads and parses the `--config` file.
pub(super) fn read_config_file(path: &Path) -> anyhow::Result<ConfigFile> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))
}
