//! Authorized-operation bitfields (KIP-430). There is no authorizer yet, so every
//! operation a resource type supports is allowed; clients that ask for the bitfield
//! (Metadata v8+, DescribeCluster, DescribeGroups) get exactly what Kafka without an
//! authorizer answers, and never the "not requested" sentinel they cannot decode.

/// Kafka's AclOperation codes.
mod operation {
    pub const READ: u8 = 3;
    pub const WRITE: u8 = 4;
    pub const CREATE: u8 = 5;
    pub const DELETE: u8 = 6;
    pub const ALTER: u8 = 7;
    pub const DESCRIBE: u8 = 8;
    pub const CLUSTER_ACTION: u8 = 9;
    pub const DESCRIBE_CONFIGS: u8 = 10;
    pub const ALTER_CONFIGS: u8 = 11;
    pub const IDEMPOTENT_WRITE: u8 = 12;
}

/// The value Kafka sends when authorized operations were not requested.
pub const NOT_REQUESTED: i32 = i32::MIN;

fn bitfield(operations: &[u8]) -> i32 {
    operations
        .iter()
        .fold(0i32, |bits, &operation| bits | (1 << operation))
}

/// Operations on a topic.
pub fn topic_operations() -> i32 {
    use operation::*;
    bitfield(&[
        READ,
        WRITE,
        CREATE,
        DELETE,
        ALTER,
        DESCRIBE,
        DESCRIBE_CONFIGS,
        ALTER_CONFIGS,
    ])
}

/// Operations on the cluster.
pub fn cluster_operations() -> i32 {
    use operation::*;
    bitfield(&[
        CREATE,
        ALTER,
        DESCRIBE,
        CLUSTER_ACTION,
        DESCRIBE_CONFIGS,
        ALTER_CONFIGS,
        IDEMPOTENT_WRITE,
    ])
}

/// Operations on a consumer group.
pub fn group_operations() -> i32 {
    use operation::*;
    bitfield(&[READ, DESCRIBE, DELETE])
}

/// The field's value: the bitfield if the client asked, else the sentinel.
pub fn if_requested(requested: bool, operations: i32) -> i32 {
    if requested {
        operations
    } else {
        NOT_REQUESTED
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn topic_bits_match_kafka() {
        // READ..DESCRIBE (3..=8) plus DESCRIBE_CONFIGS and ALTER_CONFIGS (10, 11).
        assert_eq!(super::topic_operations(), 0b1101_1111_1000);
    }
}
