//! How a node joins a replicated cluster: the controller quorum's voters and this node's
//! place in it (`--controller-quorum-voters`, `--controller-listen`,
//! `--controller-security-protocol`, the heartbeat and session timeouts; Kafka's names).
//! [`ClusterArgs`] holds those flags, flattened into `config::ServeArgs`; [`resolve_cluster`]
//! checks them into a [`ClusterConfig`].

use std::net::SocketAddr;

use anyhow::Context;
use clap::Args;

pub use super::raft::transport::ControllerSecurity;

/// A member of the controller quorum, as `--controller-quorum-voters` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuorumVoter {
    /// Its node id.
    pub node_id: i32,
    /// Its controller port's address, `host:port` (a name is resolved when connecting).
    pub address: String,
}

/// How this node takes part in a replicated cluster.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// The controller quorum's voters, in the order given.
    pub voters: Vec<QuorumVoter>,
    /// Where this node's controller port listens, if it is a voter.
    pub controller_listen: Option<SocketAddr>,
    /// How the controller port is secured (`--controller-security-protocol`).
    pub controller_security: ControllerSecurity,
    /// controller.quorum.election.timeout.ms.
    pub election_timeout_ms: u64,
    /// broker.heartbeat.interval.ms: how often a node tells the controller it is alive.
    pub heartbeat_interval_ms: u64,
    /// broker.session.timeout.ms: a node not heard from for this long is fenced.
    pub session_timeout_ms: u64,
}

impl ClusterConfig {
    /// Whether `node_id` runs the controller.
    pub fn is_voter(&self, node_id: i32) -> bool {
        self.voters.iter().any(|voter| voter.node_id == node_id)
    }

    /// A secured controller port has what its TLS needs.
    pub(crate) fn check_controller_security(
        &self,
        tls: Option<&crate::security::tls::TlsSettings>,
    ) -> anyhow::Result<()> {
        if self.controller_security == ControllerSecurity::Ssl {
            anyhow::ensure!(
                tls.is_some_and(|tls| tls.ca.is_some()),
                "--controller-security-protocol SSL needs --ssl-cert, --ssl-key and --ssl-ca: \
                 members present the node's certificate and check each other's against the CA"
            );
        }
        Ok(())
    }

    /// What to warn about at start: an authorizer that checks Kafka requests while the
    /// controller port, which changes the same metadata, takes anyone.
    pub fn controller_warning(&self, authorizer_enabled: bool) -> Option<String> {
        (authorizer_enabled && self.controller_security == ControllerSecurity::Plaintext).then(
            || {
                "--authorizer acl is on but the controller port is PLAINTEXT: anyone who can reach \
             it can change the cluster's metadata without an ACL check; give every node \
             --controller-security-protocol SSL (with --ssl-cert, --ssl-key, --ssl-ca), or keep \
             the port on a network only the nodes reach"
                    .to_string()
            },
        )
    }
}

/// Parses Kafka's `controller.quorum.voters`: `ID@HOST:PORT` separated by commas (IPv6 hosts
/// in brackets).
pub fn parse_quorum_voters(text: &str) -> anyhow::Result<Vec<QuorumVoter>> {
    let mut voters: Vec<QuorumVoter> = Vec::new();
    for entry in text
        .split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
    {
        let (id, address) = entry
            .split_once('@')
            .with_context(|| format!("quorum voter '{entry}' is not ID@HOST:PORT"))?;
        let node_id: i32 = id
            .parse()
            .with_context(|| format!("quorum voter '{entry}': '{id}' is not a node id"))?;
        let (host, port) = address
            .rsplit_once(':')
            .with_context(|| format!("quorum voter '{entry}' has no port"))?;
        anyhow::ensure!(!host.is_empty(), "quorum voter '{entry}' has no host");
        port.parse::<u16>()
            .with_context(|| format!("quorum voter '{entry}': '{port}' is not a port"))?;
        anyhow::ensure!(
            !voters.iter().any(|voter| voter.node_id == node_id),
            "node {node_id} is listed twice in the quorum voters"
        );
        voters.push(QuorumVoter {
            node_id,
            address: address.to_string(),
        });
    }
    anyhow::ensure!(!voters.is_empty(), "the quorum voters list is empty");
    Ok(voters)
}

/// The flags of `spate serve` that make a node part of a replicated cluster (also read from
/// the environment and the config file); flattened into `config::ServeArgs`.
#[derive(Debug, Default, Args)]
pub struct ClusterArgs {
    /// Address of this node's controller port, where the controller quorum's members talk
    /// to each other (Kafka's controller listener). [default: this node's entry in
    /// --controller-quorum-voters]
    #[arg(long, env = "SPATE_CONTROLLER_LISTEN")]
    pub controller_listen: Option<SocketAddr>,
    /// The controller quorum, `ID@HOST:PORT,...` (Kafka's controller.quorum.voters): nodes
    /// listed run the controller on their controller port; with it the node joins a cluster.
    /// [default: none: a one-node cluster, as always]
    #[arg(long, env = "SPATE_CONTROLLER_QUORUM_VOTERS")]
    pub controller_quorum_voters: Option<String>,
    /// How the controller port is secured (Kafka's CONTROLLER listener in
    /// listener.security.protocol.map): PLAINTEXT, or SSL: mutual TLS with --ssl-cert,
    /// --ssl-key and --ssl-ca, every member presenting its certificate; with --authorizer acl
    /// its principal must be a super user or be allowed ClusterAction. Give every node the
    /// same. [default: PLAINTEXT]
    #[arg(long, env = "SPATE_CONTROLLER_SECURITY_PROTOCOL")]
    pub controller_security_protocol: Option<String>,
    /// How long a quorum member waits without hearing from a leader before it stands for
    /// election (controller.quorum.election.timeout.ms); a randomized timeout between this
    /// and twice this is used, and a follower refuses other candidates for twice this after
    /// it last heard from its leader (openraft's leader lease). [default: 500, half of
    /// Kafka's: at 1000 a kill of the controller's node stalled producers 5.3 s (p50), at
    /// 500 2.0 s, within the 3 s the cluster aims for; BENCHMARKS.md]
    #[arg(long, env = "SPATE_CONTROLLER_QUORUM_ELECTION_TIMEOUT_MS")]
    pub controller_quorum_election_timeout_ms: Option<u64>,
    /// How often a cluster node tells the controller it is alive
    /// (broker.heartbeat.interval.ms). [default: 500]
    #[arg(long, env = "SPATE_BROKER_HEARTBEAT_INTERVAL_MS")]
    pub broker_heartbeat_interval_ms: Option<u64>,
    /// A cluster node the controller has not heard from for this long is fenced: clients are
    /// no longer sent to it (broker.session.timeout.ms; Kafka's default is 9000, ours is
    /// shorter so that a failed node is noticed within the 3 s a producer should stall at
    /// most). [default: 3000]
    #[arg(long, env = "SPATE_BROKER_SESSION_TIMEOUT_MS")]
    pub broker_session_timeout_ms: Option<u64>,
}

impl ClusterArgs {
    /// Each setting from `self` (flags and environment), else from `file`.
    pub fn or(self, file: ClusterArgs) -> ClusterArgs {
        ClusterArgs {
            controller_listen: self.controller_listen.or(file.controller_listen),
            controller_quorum_voters: self
                .controller_quorum_voters
                .or(file.controller_quorum_voters),
            controller_security_protocol: self
                .controller_security_protocol
                .or(file.controller_security_protocol),
            controller_quorum_election_timeout_ms: self
                .controller_quorum_election_timeout_ms
                .or(file.controller_quorum_election_timeout_ms),
            broker_heartbeat_interval_ms: self
                .broker_heartbeat_interval_ms
                .or(file.broker_heartbeat_interval_ms),
            broker_session_timeout_ms: self
                .broker_session_timeout_ms
                .or(file.broker_session_timeout_ms),
        }
    }
}

/// The cluster settings, from the voters list and the flags around it.
pub(crate) fn resolve_cluster(
    node_id: i32,
    args: ClusterArgs,
) -> anyhow::Result<Option<ClusterConfig>> {
    let voters = args.controller_quorum_voters;
    let controller_listen = args.controller_listen;
    let controller_security = args.controller_security_protocol;
    let election_timeout_ms = args.controller_quorum_election_timeout_ms.unwrap_or(500);
    let heartbeat_interval_ms = args.broker_heartbeat_interval_ms.unwrap_or(500);
    let session_timeout_ms = args.broker_session_timeout_ms.unwrap_or(3_000);
    let Some(voters) = voters else {
        anyhow::ensure!(
            controller_listen.is_none(),
            "--controller-listen needs --controller-quorum-voters"
        );
        anyhow::ensure!(
            controller_security.is_none(),
            "--controller-security-protocol needs --controller-quorum-voters"
        );
        return Ok(None);
    };
    let controller_security = controller_security
        .as_deref()
        .map(ControllerSecurity::parse)
        .transpose()?
        .unwrap_or_default();
    let voters = parse_quorum_voters(&voters)?;
    let own = voters.iter().find(|voter| voter.node_id == node_id);
    let controller_listen = match (controller_listen, own) {
        (Some(listen), _) => Some(listen),
        (None, Some(own)) => Some(own.address.parse().with_context(|| {
            format!(
                "node {node_id}'s quorum address '{}' is not IP:PORT; give --controller-listen",
                own.address
            )
        })?),
        (None, None) => None,
    };
    // A node that is a broker only is a learner of the quorum: the leader sends it the
    // metadata log on its controller port, whose address it gives when it joins.
    if own.is_none() {
        match controller_listen {
            None => anyhow::bail!(
                "node {node_id} is not among --controller-quorum-voters, so it is a broker only:                  give it --controller-listen IP:PORT, where the quorum's leader sends it the                  metadata log"
            ),
            Some(listen) if listen.ip().is_unspecified() => anyhow::bail!(
                "--controller-listen {listen}: a broker-only node gives this address to the                  quorum's leader, so it must be one the voters can reach, not {}",
                listen.ip()
            ),
            Some(_) => {}
        }
    }
    anyhow::ensure!(
        election_timeout_ms >= 100,
        "the quorum election timeout must be at least 100 ms"
    );
    anyhow::ensure!(
        heartbeat_interval_ms >= 10 && heartbeat_interval_ms * 2 <= session_timeout_ms,
        "the broker heartbeat interval ({heartbeat_interval_ms} ms) must be at least 10 ms and \
         at most half the session timeout ({session_timeout_ms} ms)"
    );
    Ok(Some(ClusterConfig {
        voters,
        controller_listen,
        controller_security,
        election_timeout_ms,
        heartbeat_interval_ms,
        session_timeout_ms,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::Harness;
    use clap::Parser;

    #[test]
    fn quorum_voters_make_a_cluster_node() {
        let config = Harness::parse_from([
            "spate",
            "--node-id",
            "2",
            "--controller-quorum-voters",
            "1@127.0.0.1:9301, 2@127.0.0.1:9302,3@localhost:9303",
        ])
        .serve
        .resolve()
        .unwrap();
        let cluster = config.cluster.expect("a cluster node");
        assert_eq!(cluster.voters.len(), 3);
        assert_eq!(cluster.voters[2].address, "localhost:9303");
        assert!(cluster.is_voter(2) && !cluster.is_voter(4));
        assert_eq!(
            cluster.controller_listen,
            Some("127.0.0.1:9302".parse().unwrap()),
            "the node's own entry is its controller port"
        );
        assert_eq!(cluster.election_timeout_ms, 500);
    }

    #[test]
    fn the_file_can_make_a_cluster_node() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spate.toml");
        std::fs::write(
            &path,
            "node_id = 4\ncontroller_quorum_voters = \"1@127.0.0.1:9301\"\nbroker_rack = \"r2\"\ncontroller_listen = \"127.0.0.1:9304\"\n",
        )
        .unwrap();
        let config = Harness::parse_from(["spate", "--config", path.to_str().unwrap()])
            .serve
            .resolve()
            .unwrap();
        let cluster = config.cluster.expect("a cluster node");
        assert!(!cluster.is_voter(4), "node 4 is a broker only");
        assert_eq!(
            cluster.controller_listen,
            Some("127.0.0.1:9304".parse().unwrap()),
            "where the leader sends it the metadata log"
        );
        assert_eq!(config.broker_rack.as_deref(), Some("r2"));
        // A broker-only node needs a controller port the voters can reach.
        for (listen, expected) in [(None, "is a broker only"), (Some("0.0.0.0:9304"), "reach")] {
            let mut args = vec![
                "spate",
                "--node-id",
                "4",
                "--controller-quorum-voters",
                "1@127.0.0.1:9301",
            ];
            if let Some(listen) = listen {
                args.extend(["--controller-listen", listen]);
            }
            let error = Harness::parse_from(args).serve.resolve().unwrap_err();
            assert!(format!("{error:#}").contains(expected), "{error:#}");
        }
    }

    #[test]
    fn bad_quorum_voters_are_refused() {
        for (voters, expected) in [
            ("1@127.0.0.1", "no port"),
            ("x@127.0.0.1:1", "not a node id"),
            ("1@127.0.0.1:99999", "not a port"),
            ("1@:9000", "no host"),
            ("1@a:1,1@b:2", "twice"),
            (" , ", "empty"),
        ] {
            let error = parse_quorum_voters(voters).unwrap_err();
            assert!(
                format!("{error:#}").contains(expected),
                "{voters}: {error:#}"
            );
        }
        let error = Harness::parse_from([
            "spate",
            "--node-id",
            "1",
            "--controller-quorum-voters",
            "1@somehost:9301",
        ])
        .serve
        .resolve()
        .unwrap_err();
        assert!(
            format!("{error:#}").contains("--controller-listen"),
            "{error:#}"
        );
        let error = Harness::parse_from(["spate", "--controller-listen", "127.0.0.1:9301"])
            .serve
            .resolve()
            .unwrap_err();
        assert!(format!("{error:#}").contains("needs"), "{error:#}");
    }

    #[test]
    fn a_secured_controller_port_needs_the_nodes_certificate_and_ca() {
        let resolve = |more: &[&str]| {
            let mut args = vec![
                "spate",
                "--node-id",
                "1",
                "--controller-quorum-voters",
                "1@127.0.0.1:9301",
            ];
            args.extend_from_slice(more);
            Harness::parse_from(args).serve.resolve()
        };
        let plain = resolve(&[]).unwrap().cluster.unwrap();
        assert_eq!(plain.controller_security, ControllerSecurity::Plaintext);
        assert!(plain.controller_warning(false).is_none());
        assert!(plain
            .controller_warning(true)
            .unwrap()
            .contains("PLAINTEXT"));
        for more in [
            &["--controller-security-protocol", "SSL"][..],
            &[
                "--controller-security-protocol",
                "SSL",
                "--ssl-cert",
                "n.pem",
                "--ssl-key",
                "n.key",
            ][..],
        ] {
            let error = resolve(more).unwrap_err();
            assert!(format!("{error:#}").contains("--ssl-ca"), "{error:#}");
        }
        let secured = resolve(&[
            "--controller-security-protocol",
            "ssl",
            "--ssl-cert",
            "n.pem",
            "--ssl-key",
            "n.key",
            "--ssl-ca",
            "ca.pem",
        ])
        .unwrap()
        .cluster
        .unwrap();
        assert_eq!(secured.controller_security, ControllerSecurity::Ssl);
        assert!(secured.controller_warning(true).is_none());
        let error = Harness::parse_from(["spate", "--controller-security-protocol", "SSL"])
            .serve
            .resolve()
            .unwrap_err();
        assert!(format!("{error:#}").contains("needs"), "{error:#}");
    }
}
