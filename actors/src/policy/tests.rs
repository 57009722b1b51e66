use super::*;

fn roles(r: &[&str]) -> Vec<String> {
    r.iter().map(|s| (*s).to_owned()).collect()
}

fn user(name: &str) -> Target<'_> {
    to(name, Access::User)
}

fn to(name: &str, access: Access) -> Target<'_> {
    Target {
        name,
        services: &[],
        access,
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

#[test]
fn defaults_open_user_actors_to_nodes_and_system_messages_to_their_class() {
    let p = Policy::default();
    for who in [&["worker"][..], &["head"]] {
        assert!(p
            .decide(&roles(who), false, &user("ledger"), "demo.Add")
            .is_ok());
    }
    for who in [&["operator"][..], &["billing"], &[]] {
        assert!(matches!(
            p.decide(&roles(who), true, &user("ledger"), "demo.Add"),
            Err(RemoteError::Forbidden { .. })
        ));
    }
    let raft = to("swarm.raft", Access::Heads);
    let err = p
        .decide(&roles(&["worker"]), false, &raft, "swarm.RaftVote")
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "forbidden: swarm.RaftVote is for head certificates only"
    );
    assert!(p
        .decide(&roles(&["head"]), false, &raft, "swarm.RaftVote")
        .is_ok());
}

/// Every class against every kind of sender, logged in: the table the
/// module doc describes.
#[test]
fn each_class_admits_exactly_its_senders() {
    let p = Policy::default();
    let senders: [(&str, &[&str]); 5] = [
        ("head", &["head"]),
        ("worker", &["worker"]),
        ("operator", &["operator"]),
        ("admin", &["operator", "admin"]),
        ("custom", &["billing"]),
    ];
    let table: [(Access, &[&str]); 9] = [
        (Access::User, &["head", "worker"]),
        (
            Access::Login,
            &["head", "worker", "operator", "admin", "custom"],
        ),
        (Access::Heads, &["head"]),
        (Access::Nodes, &["head", "worker"]),
        (Access::Read, &["head", "worker", "operator", "admin"]),
        (Access::Operators, &["operator", "admin"]),
        (Access::Account, &["operator", "admin"]),
        (Access::Command, &["head", "worker", "admin"]),
        (Access::Admin, &["head", "admin"]),
    ];
    for (access, admitted) in table {
        for (name, r) in senders {
            let ok = p.decide(&roles(r), true, &to("x", access), "t.T").is_ok();
            assert_eq!(ok, admitted.contains(&name), "{access} from {name}");
        }
    }
    assert_eq!(
        Access::ALL.len(),
        table.len(),
        "every class is in the table"
    );
}

#[test]
fn operator_roles_count_only_with_a_login_whatever_else_the_certificate_holds() {
    let p = Policy::default();
    let mixed = roles(&["worker", "operator", "admin"]);
    let inspect = to("swarm.inspect", Access::Operators);
    let revoke = to("swarm.control", Access::Admin);
    for target in [&inspect, &revoke] {
        let err = p.decide(&mixed, false, target, "swarm.X").unwrap_err();
        assert!(err.to_string().contains("second factor"), "{err}");
        assert!(p.decide(&mixed, true, target, "swarm.X").is_ok());
    }
    // As a worker it needs no login for what workers may send.
    assert!(p.decide(&mixed, false, &user("ledger"), "demo.Add").is_ok());
    let read = to("swarm.control", Access::Read);
    assert!(p.decide(&mixed, false, &read, "swarm.ListPlaced").is_ok());
    // A pure operator reaches nothing but logins without one.
    let op = roles(&["operator"]);
    let err = p.decide(&op, false, &read, "swarm.ListPlaced").unwrap_err();
    assert!(err.to_string().contains("second factor"), "{err}");
    let login = to("swarm.session", Access::Login);
    assert!(p.decide(&op, false, &login, "swarm.Login").is_ok());
    // Allow rules naming the operator role do not replace the login.
    let open = rules(&[(true, &["operator"], &[">"], &[">"])]);
    assert!(open.decide(&op, false, &read, "swarm.ListPlaced").is_err());
    assert!(open.decide(&op, true, &read, "swarm.ListPlaced").is_ok());
}

#[test]
fn operators_read_admins_change_and_neither_hosts_or_votes() {
    let p = Policy::default();
    let op = roles(&["operator"]);
    let admin = roles(&["operator", "admin"]);
    let read = to("swarm.control", Access::Read);
    let command = to("swarm.control", Access::Command);
    assert!(p.decide(&op, true, &read, "swarm.ListPlaced").is_ok());
    let stop = p
        .decide(&op, true, &command, "swarm.StopActor")
        .unwrap_err();
    assert!(
        stop.to_string().contains("only an admin operator"),
        "{stop}"
    );
    assert!(p.decide(&admin, true, &command, "swarm.StopActor").is_ok());
    // A lease (hosting actors), Raft and a host's orders hold whatever allows them.
    let open = rules(&[(true, &["*"], &[">"], &[">"])]);
    let renew = to("swarm.control", Access::Nodes);
    let host = to("swarm.host", Access::Admin);
    for p in [&p, &open] {
        assert!(p.decide(&admin, true, &renew, "swarm.Renew").is_err());
        assert!(p
            .decide(&roles(&["worker"]), false, &renew, "swarm.Renew")
            .is_ok());
        assert!(p
            .decide(&roles(&["worker"]), false, &host, "swarm.HostSpawn")
            .is_err());
        assert!(p
            .decide(&roles(&["head"]), false, &host, "swarm.HostSpawn")
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
    let billing_services = ["billing".to_owned()];
    let billing = Target {
        name: "billing-1",
        services: &billing_services,
        access: Access::User,
    };
    let audit_services = ["audit".to_owned()];
    let audit = Target {
        name: "audit-1",
        services: &audit_services,
        access: Access::User,
    };
    let client = roles(&["billing-client"]);
    assert!(p.decide(&client, false, &billing, "billing.Charge").is_ok());
    assert!(p.decide(&client, false, &audit, "audit.Read").is_err());
    assert!(p
        .decide(&client, false, &user("ledger-1"), "demo.Add")
        .is_err());
    let worker = roles(&["worker"]);
    assert!(p
        .decide(&worker, false, &user("ledger-1"), "demo.Add")
        .is_ok());
    let reset = p
        .decide(&worker, false, &user("ledger-1"), "demo.Reset")
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
fn decisions_are_remembered_per_target_tag_and_login_until_the_directory_changes() {
    let mut cache = Decisions::default();
    let mut calls = 0;
    for _ in 0..3 {
        let (d, fresh) = cache.get(1, "a", "t", false, || {
            calls += 1;
            Ok(Access::User)
        });
        assert!(d.is_ok());
        assert_eq!(fresh, calls == 1 && fresh);
    }
    assert_eq!(calls, 1);
    let _ = cache.get(1, "b", "t", false, || {
        calls += 1;
        Ok(Access::User)
    });
    let _ = cache.get(1, "a", "t", false, || {
        calls += 1;
        Ok(Access::User)
    });
    assert_eq!(calls, 2);
    let _ = cache.get(1, "a", "t", true, || {
        calls += 1;
        Ok(Access::User)
    });
    assert_eq!(calls, 3, "a login decides again");
    let _ = cache.get(2, "a", "t", false, || {
        calls += 1;
        Ok(Access::User)
    });
    assert_eq!(calls, 4, "a new generation decides again");
}
