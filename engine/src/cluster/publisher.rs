//! Carries the images the controller quorum applies on this node to the node's shards, in
//! log order.
//!
//! The quorum's state machine calls [`ImagePublisher`] (its `ImageSink`) from the Raft task
//! for every applied entry; publishing to the shards awaits the channel mesh, so the updates
//! are queued here and one task ([`ImagePublisher::run`], on the quorum's shard) hands them on
//! one after the other. An update that came from a snapshot carries no records; the records
//! that take the shards' last image to it are computed here (`MetadataImage::changes_since`),
//! so that partition tables retire and reconfigure as they would have record by record.
//!
//! Concurrency contract: owned by the quorum's shard (`!Send`); never borrowed across an
//! `.await`.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use crate::cluster::raft::metadata_machine::ImageSink;
use crate::metadata::image::MetadataImage;
use crate::metadata::MetadataUpdate;
use crate::notify::Notify;
use crate::shard::Shard;

/// How often the idle publisher looks at the shutdown flag.
const IDLE_CHECK_INTERVAL: Duration = Duration::from_millis(100);

/// See the module docs.
pub struct ImagePublisher {
    pending: RefCell<VecDeque<MetadataUpdate>>,
    arrived: Notify,
    /// The newest image the state machine applied: what the controller decides against.
    applied: RefCell<Arc<MetadataImage>>,
    /// The newest image handed to the shards.
    published: RefCell<Arc<MetadataImage>>,
}

impl ImagePublisher {
    /// A publisher whose shards start from `initial`.
    pub fn new(initial: Arc<MetadataImage>) -> Rc<ImagePublisher> {
        Rc::new(ImagePublisher {
            pending: RefCell::new(VecDeque::new()),
            arrived: Notify::default(),
            applied: RefCell::new(initial.clone()),
            published: RefCell::new(initial),
        })
    }

    /// The newest image the quorum's state machine has applied on this node.
    pub fn applied_image(&self) -> Arc<MetadataImage> {
        self.applied.borrow().clone()
    }

    /// Publishes queued updates until the node shuts down.
    pub async fn run(self: Rc<Self>, shard: Rc<Shard>) {
        while !shard.node.is_shutting_down() {
            let arrived = self.arrived.notified();
            let next = self.pending.borrow_mut().pop_front();
            let Some(mut update) = next else {
                futures_lite::future::or(arrived, glommio::timer::sleep(IDLE_CHECK_INTERVAL)).await;
                continue;
            };
            if update.records.is_empty() {
                let previous = self.published.borrow().clone();
                update.records = Arc::new(update.image.changes_since(&previous));
            }
            *self.published.borrow_mut() = update.image.clone();
            shard.publish_metadata(update).await;
        }
    }
}

impl ImageSink for ImagePublisher {
    fn applied(&self, update: MetadataUpdate) {
        *self.applied.borrow_mut() = update.image.clone();
        self.pending.borrow_mut().push_back(update);
        self.arrived.notify_all();
    }
}
