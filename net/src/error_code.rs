//! Kafka's error codes, as constants to `match` on, in one place.
//!
//! Code that produces an error maps its own error enum to kafka-protocol's
//! [`ResponseError`](kafka_protocol::ResponseError) (the engine's `handlers/errors.rs`);
//! code that reads a code (the CLI, the bench harness, the tests, the group state machine's
//! answers) uses these. A test checks each against kafka-protocol's table, so a typo cannot
//! hide here.

macro_rules! codes {
    ($($(#[$doc:meta])* $name:ident = $code:literal => $variant:ident,)*) => {
        $($(#[$doc])* pub const $name: i16 = $code;)*

        #[cfg(test)]
        mod tests {
            #[test]
            fn every_code_is_kafkas() {
                use kafka_protocol::ResponseError;
                $(assert_eq!(
                    ResponseError::$variant.code(),
                    super::$name,
                    stringify!($name)
                );)*
            }
        }
    };
}

/// No error.
pub const NONE: i16 = 0;

/// Kafka's name of an error code (`UNKNOWN_TOPIC_OR_PARTITION`, `NONE` for 0), or the
/// number for a code kafka-protocol does not know: a metric label.
pub fn code_name(code: i16) -> String {
    use kafka_protocol::ResponseError;
    match ResponseError::try_from_code(code) {
        None => "NONE".to_string(),
        Some(ResponseError::Unknown(code)) => code.to_string(),
        Some(error) => screaming_snake_case(&format!("{error:?}")),
    }
}

/// The Kafka name and number of an error code, e.g. `UNKNOWN_TOPIC_OR_PARTITION (3)`: what
/// a person reads.
pub fn error_name(code: i16) -> String {
    match kafka_protocol::ResponseError::try_from_code(code) {
        Some(kafka_protocol::ResponseError::Unknown(code)) => {
            format!("UNKNOWN_ERROR_CODE ({code})")
        }
        _ => format!("{} ({code})", code_name(code)),
    }
}

/// `UnknownTopicOrPartition` → `UNKNOWN_TOPIC_OR_PARTITION`, as Kafka's `Errors` names them.
fn screaming_snake_case(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 8);
    for (index, character) in camel.chars().enumerate() {
        if character.is_ascii_uppercase() && index > 0 {
            out.push('_');
        }
        out.push(character.to_ascii_uppercase());
    }
    out
}

codes! {
    /// The offset is outside the log (below its start or past its end).
    OFFSET_OUT_OF_RANGE = 1 => OffsetOutOfRange,
    /// A batch failed its CRC or could not be parsed.
    CORRUPT_MESSAGE = 2 => CorruptMessage,
    /// The topic or partition does not exist.
    UNKNOWN_TOPIC_OR_PARTITION = 3 => UnknownTopicOrPartition,
    /// This broker does not lead (or follow) the partition.
    NOT_LEADER_OR_FOLLOWER = 6 => NotLeaderOrFollower,
    /// A batch or request is larger than the broker accepts.
    MESSAGE_TOO_LARGE = 10 => MessageTooLarge,
    /// Committed offset metadata is longer than `offset.metadata.max.bytes`.
    OFFSET_METADATA_TOO_LARGE = 12 => OffsetMetadataTooLarge,
    /// The coordinator is still loading its state: retry.
    COORDINATOR_LOAD_IN_PROGRESS = 14 => CoordinatorLoadInProgress,
    /// The coordinator is not available (or the group is gone): find it again.
    COORDINATOR_NOT_AVAILABLE = 15 => CoordinatorNotAvailable,
    /// This broker is not the group's coordinator: find it again.
    NOT_COORDINATOR = 16 => NotCoordinator,
    /// Wrong group generation.
    ILLEGAL_GENERATION = 22 => IllegalGeneration,
    /// No common protocol, or the wrong protocol type.
    INCONSISTENT_GROUP_PROTOCOL = 23 => InconsistentGroupProtocol,
    /// Not a member of the group (or expired).
    UNKNOWN_MEMBER_ID = 25 => UnknownMemberId,
    /// Session timeout outside the broker's bounds.
    INVALID_SESSION_TIMEOUT = 26 => InvalidSessionTimeout,
    /// A rebalance is under way: rejoin.
    REBALANCE_IN_PROGRESS = 27 => RebalanceInProgress,
    /// The API version is not served.
    UNSUPPORTED_VERSION = 35 => UnsupportedVersion,
    /// CreateTopics: the topic exists.
    TOPIC_ALREADY_EXISTS = 36 => TopicAlreadyExists,
    /// An idempotent producer's sequence skipped ahead.
    OUT_OF_ORDER_SEQUENCE_NUMBER = 45 => OutOfOrderSequenceNumber,
    /// The group still has members.
    NON_EMPTY_GROUP = 68 => NonEmptyGroup,
    /// The group does not exist.
    GROUP_ID_NOT_FOUND = 69 => GroupIdNotFound,
    /// JoinGroup v4+: rejoin with the member id in this response.
    MEMBER_ID_REQUIRED = 79 => MemberIdRequired,
    /// Another member took this static instance id.
    FENCED_INSTANCE_ID = 82 => FencedInstanceId,
    /// The request's leader epoch is older than the partition's: refresh the metadata.
    FENCED_LEADER_EPOCH = 74 => FencedLeaderEpoch,
    /// The request's leader epoch is newer than the partition's: the broker lags, retry.
    UNKNOWN_LEADER_EPOCH = 75 => UnknownLeaderEpoch,
    /// OffsetDelete: the group still subscribes to the topic.
    GROUP_SUBSCRIBED_TO_TOPIC = 86 => GroupSubscribedToTopic,
    /// The request is malformed for its API (a missing field that must be set, ...).
    INVALID_REQUEST = 42 => InvalidRequest,
    /// The group has as many members as it may.
    GROUP_MAX_SIZE_REACHED = 81 => GroupMaxSizeReached,
    /// KIP-848: the member's epoch is not the one the coordinator holds: rejoin.
    FENCED_MEMBER_EPOCH = 110 => FencedMemberEpoch,
    /// KIP-848: the static member holding this instance id has not left.
    UNRELEASED_INSTANCE_ID = 111 => UnreleasedInstanceId,
    /// KIP-848: the server-side assignor named is not one the coordinator has.
    UNSUPPORTED_ASSIGNOR = 112 => UnsupportedAssignor,
    /// KIP-848: an offset commit or fetch at a member epoch that is no longer current.
    STALE_MEMBER_EPOCH = 113 => StaleMemberEpoch,
    /// KIP-848: the subscribed regular expression does not compile.
    INVALID_REGULAR_EXPRESSION = 128 => InvalidRegularExpression,
    /// The SASL mechanism asked for is not enabled on this listener.
    UNSUPPORTED_SASL_MECHANISM = 33 => UnsupportedSaslMechanism,
    /// A SASL request out of sequence (or on a listener without SASL).
    ILLEGAL_SASL_STATE = 34 => IllegalSaslState,
    /// SASL authentication failed (wrong credentials or a malformed exchange).
    SASL_AUTHENTICATION_FAILED = 58 => SaslAuthenticationFailed,
    /// A resource named in a request (a user's credential) does not exist.
    RESOURCE_NOT_FOUND = 91 => ResourceNotFound,
    /// A request names the same resource twice.
    DUPLICATE_RESOURCE = 92 => DuplicateResource,
    /// A credential does not meet the broker's requirements (iterations, empty name).
    UNACCEPTABLE_CREDENTIAL = 93 => UnacceptableCredential,
    /// The principal may not do this on the topic.
    TOPIC_AUTHORIZATION_FAILED = 29 => TopicAuthorizationFailed,
    /// The principal may not do this on the group.
    GROUP_AUTHORIZATION_FAILED = 30 => GroupAuthorizationFailed,
    /// The principal may not do this on the cluster.
    CLUSTER_AUTHORIZATION_FAILED = 31 => ClusterAuthorizationFailed,
    /// The principal may not use the transactional id.
    TRANSACTIONAL_ID_AUTHORIZATION_FAILED = 53 => TransactionalIdAuthorizationFailed,
    /// An ACL request to a broker without an authorizer.
    SECURITY_DISABLED = 54 => SecurityDisabled,
}

#[cfg(test)]
mod name_tests {
    use super::{code_name, error_name};

    #[test]
    fn error_names_follow_kafka() {
        assert_eq!(code_name(6), "NOT_LEADER_OR_FOLLOWER");
        assert_eq!(code_name(0), "NONE");
        assert_eq!(code_name(32000), "32000");
        assert_eq!(error_name(3), "UNKNOWN_TOPIC_OR_PARTITION (3)");
        assert_eq!(error_name(36), "TOPIC_ALREADY_EXISTS (36)");
        assert_eq!(error_name(17), "INVALID_TOPIC_EXCEPTION (17)");
        assert_eq!(error_name(68), "NON_EMPTY_GROUP (68)");
        assert_eq!(error_name(-1), "UNKNOWN_SERVER_ERROR (-1)");
        assert_eq!(error_name(9999), "UNKNOWN_ERROR_CODE (9999)");
    }
}
