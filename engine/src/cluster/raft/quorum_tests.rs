//! Three [`Quorum`] members in one executor, on their real file stores and TCP network
//! (loopback ports), cut apart with the network's fault table.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use glommio::net::TcpListener;
use glommio::LocalExecutorBuilder;

use super::{Quorum, QuorumOptions, QuorumWriteError};
use crate::cluster::publisher::ImagePublisher;
use crate::cluster::raft::log_store::FileLogStore;
use crate::cluster::raft::metadata_machine::MetadataStateMachine;
use crate::cluster::raft::network::{self, ControllerPort, Faults, TcpNetworkFactory};
use crate::metadata::image::MetadataImage;
use crate::metadata::records::MetadataRecord;
use crate::partition::{BrokerId, NodeId, ShardId};

const WAIT: Duration = Duration::from_secs(20);

/// No node forwards controller calls in these tests.
struct NoCalls;

impl ControllerPort for NoCalls {
    fn call(&self, _request: Vec<u8>) -> futures::future::LocalBoxFuture<'static, Vec<u8>> {
        Box::pin(async { Vec::new() })
    }

    fn admits(&self, _principal: &str, _host: &str) -> bool {
        true
    }
}

struct Member {
    quorum: Quorum,
    faults: Faults,
    _dir: tempfile::TempDir,
}

async fn start_members() -> BTreeMap<u64, Member> {
    let listeners: Vec<TcpListener> = (0..3)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("binds"))
        .collect();
    let voters: BTreeMap<u64, String> = listeners
        .iter()
        .enumerate()
        .map(|(index, listener)| {
            let address = listener.local_addr().expect("address");
            (index as u64 + 1, address.to_string())
        })
        .collect();
    let mut members = BTreeMap::new();
    for (index, listener) in listeners.into_iter().enumerate() {
        let node_id = index as u64 + 1;
        let dir = tempfile::tempdir().expect("tempdir");
        let publisher = ImagePublisher::new(Arc::new(MetadataImage::default()));
        let machine = MetadataStateMachine::open(dir.path(), publisher).expect("machine");
        let log = FileLogStore::open(dir.path()).await.expect("log");
        let faults = Faults::default();
        let options = QuorumOptions {
            node_id,
            voters: voters.clone(),
            election_timeout_ms: 300,
        };
        let quorum = Quorum::start(
            options,
            TcpNetworkFactory::new(node_id, faults.clone(), None),
            log,
            machine,
        )
        .await
        .expect("member starts");
        glommio::spawn_local(network::serve(
            listener,
            quorum.raft().clone(),
            faults.clone(),
            Rc::new(NoCalls),
            None,
        ))
        .detach();
        members.insert(
            node_id,
            Member {
                quorum,
                faults,
                _dir: dir,
            },
        );
    }
    members
}

/// Waits until one of `among` leads and has its lease (it can commit); returns it.
async fn wait_for_leader(members: &BTreeMap<u64, Member>, among: &[u64]) -> u64 {
    let deadline = Instant::now() + WAIT;
    loop {
        for id in among {
            let quorum = &members[id].quorum;
            if quorum.is_leader()
                && quorum
                    .write(vec![record(*id)], Instant::now() + Duration::from_secs(1))
                    .await
                    .is_ok()
            {
                return *id;
            }
        }
        assert!(Instant::now() < deadline, "no leader among {among:?}");
        glommio::timer::sleep(Duration::from_millis(20)).await;
    }
}

fn record(node: u64) -> MetadataRecord {
    MetadataRecord::Controller {
        broker: BrokerId::of_shard(NodeId(node as i32), ShardId(0)),
    }
}

fn cut_off(members: &BTreeMap<u64, Member>, node: u64, cut: bool) {
    for (id, member) in members {
        let peers: Vec<u64> = if *id == node {
            members
                .keys()
                .copied()
                .filter(|peer| *peer != node)
                .collect()
        } else {
            vec![node]
        };
        for peer in peers {
            if cut {
                member.faults.block(peer);
            } else {
                member.faults.unblock(peer);
            }
        }
    }
}

/// A leader cut off proposes a round and asks for a linearizable read (the controller's
/// catch-up before each round), neither of which it can complete; the others elect a new
/// leader. Healed, the old leader learns it was deposed: both calls must end then, not wait
/// for an answer openraft may never give (a dropped read callback leaves its caller waiting
/// for good), nor for their deadline, which is far off here.
async fn a_deposed_leaders_pending_calls_end_when_it_learns_it() {
    let members = start_members().await;
    let old = wait_for_leader(&members, &[1, 2, 3]).await;
    cut_off(&members, old, true);
    let far_off = Instant::now() + Duration::from_secs(600);
    let write = glommio::spawn_local({
        let quorum = members[&old].quorum.clone();
        async move { quorum.write(vec![record(old)], far_off).await }
    });
    let read = glommio::spawn_local({
        let quorum = members[&old].quorum.clone();
        async move { quorum.catch_up(far_off).await }
    });
    let others: Vec<u64> = [1, 2, 3].into_iter().filter(|id| *id != old).collect();
    let new = wait_for_leader(&members, &others).await;
    assert_ne!(new, old);
    let healed = Instant::now();
    cut_off(&members, old, false);
    let read = within(read.detach()).await;
    assert!(
        matches!(read, Some(Err(_))),
        "the deposed leader's read: {read:?} within {WAIT:?} of the heal"
    );
    let write = within(write.detach()).await;
    assert!(
        matches!(
            write,
            Some(Err(
                QuorumWriteError::Unknown | QuorumWriteError::NotLeader { .. }
            ))
        ),
        "the deposed leader's write: {write:?} within {WAIT:?} of the heal"
    );
    println!(
        "the deposed leader's calls ended {:?} after the heal",
        healed.elapsed()
    );
    for member in members.values() {
        member.quorum.shutdown().await;
    }
}

/// The task's outcome, or None if it did not end within [`WAIT`].
async fn within<T>(task: glommio::task::JoinHandle<T>) -> Option<T> {
    futures_lite::future::or(task, async {
        glommio::timer::sleep(WAIT).await;
        None
    })
    .await
}

#[test]
fn a_deposed_leaders_pending_calls_end_when_it_learns_it_was_deposed() {
    LocalExecutorBuilder::default()
        .spawn(|| {
            spate_storage::wakeup::guarded(a_deposed_leaders_pending_calls_end_when_it_learns_it())
        })
        .expect("executor starts")
        .join()
        .expect("scenario finishes");
}
