use super::*;

fn mapped(rules: &str, subject: &str) -> Option<String> {
    PrincipalMapper::parse(rules).unwrap().name(subject)
}

#[test]
fn kafkas_documented_examples_map_as_kafka_maps_them() {
    // The rules of Kafka's documentation for ssl.principal.mapping.rules.
    let rules = "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/,\
                 RULE:^CN=(.*?),OU=(.*?),O=(.*?),L=(.*?),ST=(.*?),C=(.*?)$/$1@$2/L,\
                 RULE:^.*[Cc][Nn]=([a-zA-Z0-9.]*).*$/$1/L,\
                 DEFAULT";
    assert_eq!(
        mapped(
            rules,
            "CN=serviceuser,OU=ServiceUsers,O=Unknown,L=Unknown,ST=Unknown,C=Unknown"
        )
        .as_deref(),
        Some("serviceuser")
    );
    assert_eq!(
        mapped(
            rules,
            "CN=adminUser,OU=Admin,O=Unknown,L=Unknown,ST=Unknown,C=Unknown"
        )
        .as_deref(),
        Some("adminuser@admin")
    );
    assert_eq!(
        mapped(rules, "OU=JavaSoft,O=Sun Microsystems,C=US,CN=Duke").as_deref(),
        Some("duke")
    );
    assert_eq!(mapped(rules, "O=Acme").as_deref(), Some("O=Acme"));
}

#[test]
fn the_default_keeps_the_whole_subject() {
    let mapper = PrincipalMapper::default();
    assert_eq!(
        mapper.name("CN=alice,O=Acme\\, Inc.").as_deref(),
        Some("CN=alice,O=Acme\\, Inc.")
    );
    assert_eq!(mapped("DEFAULT", "CN=bob").as_deref(), Some("CN=bob"));
}

#[test]
fn the_first_rule_that_matches_the_whole_subject_wins_and_none_refuses() {
    let rules = "RULE:^CN=([a-z]+)$/$1/U, RULE:^CN=(.*)$/other-$1/";
    assert_eq!(mapped(rules, "CN=alice").as_deref(), Some("ALICE"));
    assert_eq!(mapped(rules, "CN=Alice1").as_deref(), Some("other-Alice1"));
    // A pattern that matches only part of the subject does not apply (Java's matches()).
    assert_eq!(mapped("RULE:CN=[a-z]+/x/", "CN=alice,O=acme"), None);
    assert_eq!(mapped("RULE:^CN=(.*)$/$1/", "O=acme"), None);
}

#[test]
fn replacements_read_groups_and_escapes_as_kafka_does() {
    // Two groups: `$12` is group 1 then "2"; `$3` is literal text; `\$` a dollar.
    assert_eq!(
        mapped("RULE:^CN=(.*?),O=(.*)$/$12-$3-\\$-$2/", "CN=al,O=acme").as_deref(),
        Some("al2-$3-$-acme")
    );
    assert_eq!(
        mapped("RULE:^CN=(?P<user>[a-z]+)$/${user}!/", "CN=carol").as_deref(),
        Some("carol!")
    );
    // An escaped slash inside the pattern, and a comma inside it.
    assert_eq!(
        mapped("RULE:^CN=a\\/b,O=(.*)$/$1/,DEFAULT", "CN=a/b,O=x").as_deref(),
        Some("x")
    );
}

#[test]
fn bad_rules_are_refused_at_start_naming_the_rule() {
    for (rules, expected) in [
        ("RULE:^CN=(.*)$/$1", "RULE:pattern/replacement/"),
        ("NOPE", "expected DEFAULT or RULE"),
        ("RULE:^CN=(.*)$/$1/X", "expected L, U"),
        ("RULE:^CN=((.*)$/$1/", "the pattern"),
        ("RULE:^CN=(.*)$/$x/", "must name a group"),
        ("", "empty"),
        (" , ", "empty"),
    ] {
        let error = format!("{:#}", PrincipalMapper::parse(rules).unwrap_err());
        assert!(error.contains(expected), "{rules}: {error}");
    }
}
