//! The authorizer as handlers meet it: [`Access`] is one request's view of who asks and of
//! the ACLs (`security::acl`) in the shard's image.
//!
//! Each handler checks the operations Kafka's `KafkaApis` checks for its API and answers
//! Kafka's error for a refusal (TOPIC_AUTHORIZATION_FAILED per topic, GROUP_... per group,
//! CLUSTER_... for the request). Without `--authorizer acl` every check is a branch that
//! allows, and no image is cloned for it.

use std::sync::Arc;

use super::acl::{AclOperation, AclStore, ResourceType, Subject, CLUSTER_NAME};
use crate::handlers::RequestContext;
use crate::metadata::image::MetadataImage;
use crate::shard::Shard;

/// The message of an authorization error where the response has room for one (Kafka's
/// words).
pub const AUTHORIZATION_FAILED: &str = "Authorization failed.";

/// One request's authorizer; see the module docs.
pub struct Access<'a> {
    /// The image whose ACLs are checked; `None` when the authorizer is off.
    image: Option<Arc<MetadataImage>>,
    config: &'a super::acl::AuthorizerConfig,
    subject: Subject<'a>,
}

impl<'a> Access<'a> {
    /// The access of a request on a shard.
    pub fn new(shard: &'a Shard, context: &'a RequestContext) -> Access<'a> {
        let config = &shard.node.config.authorizer;
        Access {
            image: config.enabled.then(|| shard.image()),
            config,
            subject: Subject {
                principal: &context.principal,
                host: context.client_host.trim_start_matches('/'),
            },
        }
    }

    /// Whether the authorizer checks anything (`--authorizer acl`).
    pub fn enabled(&self) -> bool {
        self.image.is_some()
    }

    /// Whether the request may create a topic: CREATE on the cluster or on the topic.
    pub fn may_create_topic(&self, name: &str) -> bool {
        self.cluster(AclOperation::Create) || self.topic(name, AclOperation::Create)
    }

    fn acls(&self) -> Option<&AclStore> {
        self.image.as_deref().map(MetadataImage::acls)
    }

    /// Whether the request may do `operation` on a resource. A refusal is logged (at most
    /// once a second per shard), as Kafka's authorizer log has it.
    pub fn allows(&self, resource_type: ResourceType, name: &str, operation: AclOperation) -> bool {
        let allowed = self.allows_quietly(resource_type, name, operation);
        if !allowed {
            super::log_refusal_with("authorization denied", self.subject.host, || {
                format!(
                    "{} may not {} {}:{name}",
                    self.subject.principal,
                    operation.name(),
                    resource_type.name()
                )
            });
        }
        allowed
    }

    /// [`Self::allows`] without the log line: for what only filters a listing (Metadata of
    /// every topic, ListGroups), where a refusal is no error.
    pub fn allows_quietly(
        &self,
        resource_type: ResourceType,
        name: &str,
        operation: AclOperation,
    ) -> bool {
        self.acls().is_none_or(|acls| {
            acls.authorize(self.config, self.subject, resource_type, name, operation)
        })
    }

    /// [`Self::allows`] on a topic.
    pub fn topic(&self, name: &str, operation: AclOperation) -> bool {
        self.allows(ResourceType::Topic, name, operation)
    }

    /// [`Self::allows`] on a group.
    pub fn group(&self, name: &str, operation: AclOperation) -> bool {
        self.allows(ResourceType::Group, name, operation)
    }

    /// [`Self::allows`] on the cluster.
    pub fn cluster(&self, operation: AclOperation) -> bool {
        self.allows(ResourceType::Cluster, CLUSTER_NAME, operation)
    }

    /// Whether the request may do `operation` on some resource of a type (KIP-679).
    pub fn any(&self, resource_type: ResourceType, operation: AclOperation) -> bool {
        self.acls().is_none_or(|acls| {
            acls.authorize_any(self.config, self.subject, resource_type, operation)
        })
    }

    /// The authorized-operations bitfield of a resource (KIP-430).
    pub fn operations(&self, resource_type: ResourceType, name: &str) -> i32 {
        match self.acls() {
            Some(acls) => {
                acls.authorized_operations(self.config, self.subject, resource_type, name)
            }
            None => AclStore::default().authorized_operations(
                self.config,
                self.subject,
                resource_type,
                name,
            ),
        }
    }
}
