//! What a heartbeat must be before it touches a group (Kafka's `GroupCoordinatorService`
//! checks), and the subscription regexes: compiled within bounds, matched against topic
//! names. Part of [`super::ConsumerGroup`].

use std::collections::BTreeSet;

use uuid::Uuid;

use super::{assignor, code, refuse, ConsumerMember, Heartbeat, Refusal, TopicsView};

/// Kafka's request checks (GroupCoordinatorService), before any state is touched.
/// Returns the subscription regex compiled, when the request sets a non-empty one.
pub(super) fn validate(request: &Heartbeat) -> Result<Option<regex::Regex>, Refusal> {
    let invalid = |message: &str| Err(refuse(code::INVALID_REQUEST, message));
    if (request.version >= 1 || request.member_epoch > 0 || request.member_epoch == -1)
        && request.member_id.is_empty()
    {
        return invalid("MemberId can't be empty.");
    }
    if request.instance_id.as_deref() == Some("") {
        return invalid("InstanceId can't be empty.");
    }
    if request.rack_id.as_deref() == Some("") {
        return invalid("RackId can't be empty.");
    }
    match request.member_epoch {
        0 => {
            if request.rebalance_timeout_ms == -1 {
                return invalid("RebalanceTimeoutMs must be provided in first request.");
            }
            if request
                .owned
                .as_ref()
                .is_none_or(|owned| owned.values().any(|p| !p.is_empty()))
            {
                return invalid("TopicPartitions must be empty when (re-)joining.");
            }
            if request.subscribed_topic_names.is_none() && request.subscribed_topic_regex.is_none()
            {
                return invalid(
                    "SubscribedTopicNames or SubscribedTopicRegex must be set in first request.",
                );
            }
        }
        -2 if request.instance_id.is_none() => {
            return invalid("InstanceId can't be null.");
        }
        epoch if epoch < -2 => return invalid("MemberEpoch is invalid."),
        _ => {}
    }
    let matcher = match request
        .subscribed_topic_regex
        .as_deref()
        .filter(|p| !p.is_empty())
    {
        Some(pattern) => Some(compile(pattern)?),
        None => None,
    };
    if let Some(name) = &request.server_assignor {
        if !assignor::ASSIGNORS.contains(&name.as_str()) {
            return Err(refuse(
                code::UNSUPPORTED_ASSIGNOR,
                format!(
                    "ServerAssignor {name} is not supported. Supported assignors: uniform, range."
                ),
            ));
        }
    }
    Ok(matcher)
}

/// A subscription regex, matching whole topic names (Kafka's RE2J `matches()`).
///
/// A client chooses the pattern, so what it may cost is bounded: at most
/// `REGEX_MAX_BYTES` of pattern, compiled within `REGEX_SIZE_LIMIT` (topic-name patterns
/// are a few hundred bytes compiled; `\w{100}` over Unicode is megabytes and refused), and
/// the pattern must compile on its own before it is anchored (so `x)|(?:.*` cannot
/// unbalance the anchoring).
fn compile(pattern: &str) -> Result<regex::Regex, Refusal> {
    const REGEX_MAX_BYTES: usize = 1024;
    const REGEX_SIZE_LIMIT: usize = 64 << 10;
    const REGEX_DFA_LIMIT: usize = 256 << 10;
    let invalid = |reason: String| {
        refuse(
            code::INVALID_REGULAR_EXPRESSION,
            format!(
                "SubscribedTopicRegex `{pattern}` is not a valid regular expression: {reason}."
            ),
        )
    };
    if pattern.len() > REGEX_MAX_BYTES {
        return Err(invalid(format!("longer than {REGEX_MAX_BYTES} bytes")));
    }
    let build = |text: &str| {
        regex::RegexBuilder::new(text)
            .size_limit(REGEX_SIZE_LIMIT)
            .dfa_size_limit(REGEX_DFA_LIMIT)
            .build()
            .map_err(|error| invalid(error.to_string()))
    };
    build(pattern)?;
    build(&format!("^(?:{pattern})$"))
}

/// The ids of the existing topics a member subscribes to.
pub(super) fn member_topic_ids(member: &ConsumerMember, topics: &TopicsView) -> BTreeSet<Uuid> {
    let mut ids: BTreeSet<Uuid> = member
        .subscribed_topic_names
        .iter()
        .filter_map(|name| topics.get(name).map(|(id, _)| *id))
        .collect();
    if let Some(regex) = &member.matcher {
        ids.extend(
            topics
                .iter()
                .filter(|(name, _)| regex.is_match(name))
                .map(|(_, (id, _))| *id),
        );
    }
    ids
}
