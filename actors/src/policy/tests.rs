use super::*;

fn roles(r: &[&str]) -> Vec<String> {
    r.iter().map(|s| (*s).to_owned()).collect()
}

fn user(name: &str) -> Target<'_> {
    Target {
        name,
        services: &[],
        required: &[],
    }
}

/// (allow?, roles, targets, tags)
type Line<'a> = (bool, &'a [&'a str], &'a [&'a str], &'a [&'a str]);

fn rules(text: &[Line<'_>]) -> Policy {
    let rule = |(_, r, to, tags): &Line<'_>| Rule {
        roles: roles(r),
        to: roles(to),
        tags: roles(tags),
    };
    Policy::new(&PolicyFile {
        allow: text.iter().filter(|r| r.0).map(rule).collect(),
        deny: text.iter().filter(|r| !r.0).map(rule).collect(),
    })
    .unwrap()
}

const CONTROL: &[&str] = &["head", "worker", "operator"];

#[test]
fn defaults_open_user_actors_to_nodes_and_system_actors_to_their_roles() {
    let p = Policy::default();
    assert!(p
        .decide(&roles(&["worker"]), &user("ledger"), "demo.Add")
        .is_ok());
    assert!(p
        .decide(&roles(&["head"]), &user("ledger"), "demo.Add")
        .is_ok());
    for who in [&["operator"][..], &["billing"], &[]] {
        assert!(matches!(
            p.decide(&roles(who), &user("ledger"), "demo.Add"),
            Err(RemoteError::Forbidden { .. })
        ));
    }
    let raft = Target {
        name: "swarm.raft",
        services: &[],
        required: &["head"],
    };
    let err = p
        .decide(&roles(&["worker"]), &raft, "swarm.RaftVote")
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "forbidden: swarm.raft takes messages from the roles [\"head\"] (roles [\"worker\"])"
    );
    assert!(p.decide(&roles(&["head"]), &raft, "swarm.RaftVote").is_ok());
}

#[test]
fn operators_read_admins_change_and_neither_hosts_or_votes() {
    let p = Policy::default();
    let control = Target {
        name: "swarm.control",
        services: &[],
        required: CONTROL,
    };
    let op = roles(&["operator"]);
    let admin = roles(&["operator", "admin"]);
    assert!(p.decide(&op, &control, "swarm.ListPlaced").is_ok());
    let stop = p.decide(&op, &control, "swarm.StopActor").unwrap_err();
    assert!(
        stop.to_string().contains("only an admin operator"),
        "{stop}"
    );
    assert!(p.decide(&admin, &control, "swarm.StopActor").is_ok());
    assert!(p
        .decide(&roles(&["admin"]), &control, "swarm.DrainNode")
        .is_ok());
    // A lease (hosting actors) and Raft are for nodes, whatever allows it.
    let open = rules(&[(true, &["*"], &[">"], &[">"])]);
    for p in [&p, &open] {
        assert!(p.decide(&admin, &control, "swarm.Renew").is_err());
        assert!(p
            .decide(&roles(&["worker"]), &control, "swarm.Renew")
            .is_ok());
    }
}

#[test]
fn deny_beats_allow_and_a_custom_role_reaches_one_service_only() {
    let p = rules(&[
        (true, &["billing-client"], &["service:billing"], &[">"]),
        (true, &["worker"], &["ledger-*"], &["demo.*"]),
        (false, &["worker"], &["ledger-*"], &["demo.Reset"]),
    ]);
    let billing = Target {
        name: "billing-1",
        services: &["billing".to_owned()],
        required: &[],
    };
    let audit = Target {
        name: "audit-1",
        services: &["audit".to_owned()],
        required: &[],
    };
    let client = roles(&["billing-client"]);
    assert!(p.decide(&client, &billing, "billing.Charge").is_ok());
    assert!(p.decide(&client, &audit, "audit.Read").is_err());
    assert!(p.decide(&client, &user("ledger-1"), "demo.Add").is_err());
    let worker = roles(&["worker"]);
    assert!(p.decide(&worker, &user("ledger-1"), "demo.Add").is_ok());
    let reset = p
        .decide(&worker, &user("ledger-1"), "demo.Reset")
        .unwrap_err();
    assert_eq!(
        reset.to_string(),
        "forbidden: demo.Reset to ledger-1 is denied by policy rule deny[0]"
    );
}

#[test]
fn patterns_follow_nats_tokens() {
    let m = |pattern: &str, subject: &str| Pattern::parse("t", pattern).unwrap().matches(subject);
    assert!(m("swarm.*", "swarm.tasks"));
    assert!(!m("swarm.*", "swarm.tasks.x"));
    assert!(m("swarm.>", "swarm.tasks.x"));
    assert!(!m("swarm.>", "swarm"));
    assert!(m(">", "anything.at.all"));
    assert!(m("ledger-*", "ledger-7"));
    assert!(!m("ledger-*", "other"));
    assert!(m("demo.Add", "demo.Add"));
    assert!(!m("demo.Add", "demo.Addx"));
    for bad in ["", "a..b", "a.>.b", "a*b", "service:"] {
        assert!(Pattern::parse("t", bad).is_err(), "{bad}");
    }
    let none = Policy::new(&PolicyFile {
        allow: vec![Rule {
            roles: vec![],
            to: any(),
            tags: any(),
        }],
        deny: vec![],
    });
    assert_eq!(none, Err(PolicyError::NoRoles("allow[0]".into())));
}

#[test]
fn decisions_are_remembered_per_target_and_tag_until_the_directory_changes() {
    let mut cache = Decisions::default();
    let mut calls = 0;
    for _ in 0..3 {
        let (d, fresh) = cache.get(1, "a", "t", || {
            calls += 1;
            Ok(())
        });
        assert!(d.is_ok());
        assert_eq!(fresh, calls == 1 && fresh);
    }
    assert_eq!(calls, 1);
    let _ = cache.get(1, "b", "t", || {
        calls += 1;
        Ok(())
    });
    let _ = cache.get(1, "a", "t", || {
        calls += 1;
        Ok(())
    });
    assert_eq!(calls, 2);
    let _ = cache.get(2, "a", "t", || {
        calls += 1;
        Ok(())
    });
    assert_eq!(calls, 3, "a new generation decides again");
}
