//! Unit tests of `stats.rs`.

use super::*;

#[test]
fn counts_land_on_the_current_shard_only() {
    let node = NodeStats::new(2, Instant::now());
    cross_shard(CrossShard::ControllerCall); // no shard on this thread: not counted
    enter_shard(node.shards[1].clone());
    cross_shard(CrossShard::ControllerCall);
    cross_shard(CrossShard::MetadataUpdate);
    node.shards[1].request(0, 100);
    node.shards[1].request(1, 50);
    node.shards[1].request(i16::MAX, 1);
    let json = node.to_json();
    assert_eq!(json["shards"][0]["cross_shard"]["controller_call"], 0);
    assert_eq!(json["shards"][1]["cross_shard"]["controller_call"], 1);
    assert_eq!(json["shards"][1]["cross_shard"]["metadata_update"], 1);
    assert_eq!(json["shards"][1]["requests"]["Produce"], 1);
    assert_eq!(json["shards"][1]["requests"]["Fetch"], 1);
    assert_eq!(json["shards"][1]["request_bytes"], 151);
    assert!(json["rss_bytes"].as_u64().unwrap() > 0);
    let text = node.to_prometheus();
    assert!(text.contains("spate_cross_shard_total{shard=\"1\",kind=\"controller_call\"} 1"));
    assert!(text.contains("spate_requests_total{shard=\"1\",api=\"Produce\"} 1"));
}

#[test]
fn the_grafana_dashboard_uses_only_metrics_the_broker_serves() {
    let dashboard: serde_json::Value =
        serde_json::from_str(include_str!("../grafana/spate-dashboard.json")).unwrap();
    let mut used = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expression = target["expr"].as_str().unwrap();
            for (start, _) in expression.match_indices("spate_") {
                let name: String = expression[start..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                let family = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|suffix| name.strip_suffix(suffix))
                    .unwrap_or(&name);
                assert!(
                    HELP.iter().any(|(known, _)| *known == family),
                    "the dashboard asks for {name}, which /metrics does not serve"
                );
                used += 1;
            }
        }
    }
    assert!(used >= 10);
}
