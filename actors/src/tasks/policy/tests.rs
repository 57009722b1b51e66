//! The task policy as pure functions: fits, spill target, the hybrid
//! threshold, pipelining, constraints and infeasible requests.

use super::*;

fn id(n: u8) -> NodeId {
    NodeId::from_bytes([n; 16])
}

fn node(n: u8, cpus: f64, used: f64) -> Candidate {
    Candidate {
        node: id(n),
        total: ResourceSet::cpus(cpus),
        used: ResourceSet::cpus(used),
        ahead: 0,
        labels: Vec::new(),
        schedulable: true,
    }
}

fn request(need: &ResourceSet, local: u8) -> Request<'_> {
    Request {
        need,
        placement: None,
        local: id(local),
        near: None,
        skip: &[],
        pipeline: 0,
    }
}

fn hybrid() -> Policy {
    Policy::default()
}

#[test]
fn a_task_runs_locally_while_the_local_node_has_room() {
    let need = ResourceSet::cpus(1.0);
    let nodes = [node(1, 4.0, 0.0), node(2, 4.0, 0.0), node(3, 4.0, 0.0)];
    assert_eq!(
        choose(&request(&need, 2), &nodes, hybrid(), 0),
        Choice::Run(id(2))
    );
}

#[test]
fn hybrid_spills_by_packing_below_the_threshold_then_spreading_among_the_least_used() {
    let need = ResourceSet::cpus(1.0);
    // This node is full. Node 2 at 1/4: after this task 2/4 = the
    // threshold, so it still packs there, ahead of the idle node 3.
    let nodes = [node(1, 4.0, 4.0), node(2, 4.0, 1.0), node(3, 4.0, 0.0)];
    for roll in 0..6 {
        assert_eq!(
            choose(&request(&need, 1), &nodes, hybrid(), roll),
            Choice::Run(id(2))
        );
    }
    // Node 2 at 2/4: the task would take it past the threshold; node 3 is
    // below it and wins whatever the roll.
    let nodes = [node(1, 4.0, 4.0), node(2, 4.0, 2.0), node(3, 4.0, 0.0)];
    for roll in 0..6 {
        assert_eq!(
            choose(&request(&need, 1), &nodes, hybrid(), roll),
            Choice::Run(id(3))
        );
    }
    // Everyone past the threshold: the roll picks among the top k.
    let nodes = [
        node(1, 4.0, 4.0),
        node(2, 4.0, 2.0),
        node(3, 4.0, 2.0),
        node(4, 4.0, 3.0),
    ];
    let picks: std::collections::BTreeSet<_> = (0..6)
        .map(|roll| {
            let policy = Policy::Hybrid {
                threshold: 0.5,
                top_k: 2,
            };
            match choose(&request(&need, 1), &nodes, policy, roll) {
                Choice::Run(node) => node,
                other => panic!("{other:?}"),
            }
        })
        .collect();
    assert_eq!(picks, [id(2), id(3)].into_iter().collect());
}

#[test]
fn hybrid_keeps_a_task_local_whenever_it_fits_here() {
    let need = ResourceSet::cpus(1.0);
    // Past the threshold here, idle elsewhere: still here.
    let nodes = [node(1, 2.0, 1.0), node(2, 8.0, 0.0)];
    assert_eq!(
        choose(&request(&need, 1), &nodes, hybrid(), 3),
        Choice::Run(id(1))
    );
}

#[test]
fn a_full_local_node_spills_to_the_node_with_room() {
    let need = ResourceSet::cpus(1.0);
    let nodes = [node(1, 2.0, 2.0), node(2, 2.0, 2.0), node(3, 2.0, 1.0)];
    for policy in [hybrid(), Policy::Spread, Policy::Pack] {
        assert_eq!(
            choose(&request(&need, 1), &nodes, policy, 0),
            Choice::Run(id(3))
        );
    }
}

#[test]
fn spread_takes_the_least_used_and_pack_the_fullest() {
    let need = ResourceSet::cpus(1.0);
    let nodes = [node(1, 8.0, 4.0), node(2, 8.0, 1.0), node(3, 8.0, 6.0)];
    assert_eq!(
        choose(&request(&need, 1), &nodes, Policy::Spread, 0),
        Choice::Run(id(2))
    );
    assert_eq!(
        choose(&request(&need, 1), &nodes, Policy::Pack, 0),
        Choice::Run(id(3))
    );
    // A per-task placement overrides the node's policy.
    let spread = Placement::Spread;
    let req = Request {
        placement: Some(&spread),
        ..request(&need, 1)
    };
    assert_eq!(choose(&req, &nodes, Policy::Pack, 0), Choice::Run(id(2)));
}

#[test]
fn gpu_and_custom_needs_go_only_to_nodes_that_offer_them() {
    let gpu = ResourceSet {
        gpus: 1,
        ..ResourceSet::cpus(1.0)
    };
    let mut with_gpu = node(3, 4.0, 0.0);
    with_gpu.total.gpus = 2;
    let nodes = [node(1, 4.0, 0.0), node(2, 4.0, 0.0), with_gpu];
    assert_eq!(
        choose(&request(&gpu, 1), &nodes, hybrid(), 0),
        Choice::Run(id(3))
    );
    let tpu = ResourceSet::cpus(1.0).with("tpu", 1.0);
    let mut with_tpu = node(2, 4.0, 0.0);
    with_tpu.total = with_tpu.total.with("tpu", 1.0);
    let nodes = [node(1, 4.0, 0.0), with_tpu, node(3, 4.0, 0.0)];
    assert_eq!(
        choose(&request(&tpu, 1), &nodes, hybrid(), 0),
        Choice::Run(id(2))
    );
}

#[test]
fn a_request_no_node_can_ever_hold_is_unschedulable() {
    let need = ResourceSet {
        gpus: 1,
        ..ResourceSet::cpus(1.0)
    };
    let nodes = [node(1, 4.0, 0.0), node(2, 4.0, 4.0)];
    let Choice::Unschedulable { cause } = choose(&request(&need, 1), &nodes, hybrid(), 0) else {
        panic!("a GPU request without GPU nodes must be unschedulable");
    };
    assert!(
        matches!(&cause, Infeasible::TooLarge { missing } if missing.contains("GPU")),
        "{cause}"
    );
    // The reason names what no node has, not what the first node lacks.
    let with_driver = [node(0, 0.0, 0.0), node(1, 4.0, 0.0)];
    let Choice::Unschedulable { cause } = choose(&request(&need, 1), &with_driver, hybrid(), 0)
    else {
        panic!("still unschedulable");
    };
    assert_eq!(
        cause.to_string(),
        "no node can ever offer 1 GPUs (at most 0)"
    );
    let huge = ResourceSet::cpus(64.0);
    assert!(matches!(
        choose(&request(&huge, 1), &nodes, hybrid(), 0),
        Choice::Unschedulable { .. }
    ));
    let nowhere = Placement::Label {
        label: "tpu-host".into(),
        hard: true,
    };
    let one = ResourceSet::cpus(1.0);
    let req = Request {
        placement: Some(&nowhere),
        ..request(&one, 1)
    };
    assert_eq!(
        choose(&req, &nodes, hybrid(), 0),
        Choice::Unschedulable {
            cause: Infeasible::NoLabel {
                label: "tpu-host".into()
            }
        }
    );
}

#[test]
fn a_feasible_request_waits_when_everything_is_busy_unless_it_may_queue() {
    let need = ResourceSet::cpus(1.0);
    let mut nodes = [node(1, 2.0, 2.0), node(2, 2.0, 2.0)];
    let Choice::Wait { reason } = choose(&request(&need, 1), &nodes, hybrid(), 0) else {
        panic!("busy nodes must make it wait");
    };
    assert!(reason.contains("CPUs"), "{reason}");
    // With pipelining it queues where the queue is shortest.
    nodes[0].ahead = 3;
    nodes[1].ahead = 1;
    let req = Request {
        pipeline: 4,
        ..request(&need, 1)
    };
    assert_eq!(choose(&req, &nodes, hybrid(), 0), Choice::Run(id(2)));
    nodes[1].ahead = 4;
    nodes[0].ahead = 4;
    assert!(matches!(
        choose(&req, &nodes, hybrid(), 0),
        Choice::Wait { .. }
    ));
    // A node that takes no new work is never chosen.
    nodes[0].ahead = 0;
    nodes[0].schedulable = false;
    assert!(matches!(
        choose(&req, &nodes, hybrid(), 0),
        Choice::Wait { .. }
    ));
}

#[test]
fn a_task_goes_where_its_argument_is_if_it_fits_there() {
    let need = ResourceSet::cpus(1.0);
    let nodes = [node(1, 4.0, 0.0), node(2, 4.0, 3.0), node(3, 4.0, 4.0)];
    let near = |n| Request {
        near: Some(id(n)),
        ..request(&need, 1)
    };
    assert_eq!(choose(&near(2), &nodes, hybrid(), 0), Choice::Run(id(2)));
    // Full there: the policy decides.
    assert_eq!(choose(&near(3), &nodes, hybrid(), 0), Choice::Run(id(1)));
}

#[test]
fn skipped_and_hard_pinned_nodes_are_respected() {
    let need = ResourceSet::cpus(1.0);
    let nodes = [node(1, 4.0, 0.0), node(2, 4.0, 0.0)];
    let skip = [id(1)];
    let req = Request {
        skip: &skip,
        ..request(&need, 1)
    };
    assert_eq!(choose(&req, &nodes, hybrid(), 0), Choice::Run(id(2)));
    let pinned = Placement::Node {
        node: id(2),
        hard: true,
    };
    let req = Request {
        placement: Some(&pinned),
        ..request(&need, 1)
    };
    assert_eq!(choose(&req, &nodes, hybrid(), 0), Choice::Run(id(2)));
    let both = [id(1), id(2)];
    let req = Request {
        skip: &both,
        ..request(&need, 1)
    };
    assert!(matches!(
        choose(&req, &nodes, hybrid(), 0),
        Choice::Unschedulable { .. }
    ));
}
