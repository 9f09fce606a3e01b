//! The in-memory transport: same frames and checks as TCP, explicit faults.

use flotilla_net::{
    Direction, FrameId, MemoryNetwork, MessageBatch, NodeId, SendError, Transport, TransportConfig,
    TransportEvent,
};

fn batch(from: u64, to: u64, group: u64) -> MessageBatch {
    let mut batch = MessageBatch::new(from, to);
    batch.heartbeats.push(flotilla_net::GroupHeartbeat {
        group,
        term: 1,
        commit: 0,
        read_round: 0,
    });
    batch
}

fn groups(events: &[TransportEvent]) -> Vec<u64> {
    events
        .iter()
        .filter_map(|event| match event {
            TransportEvent::Received { frame, .. } => {
                Some(frame.batch().heartbeats[0].group.to_native())
            }
            _ => None,
        })
        .collect()
}

#[test]
fn frames_arrive_in_order_and_faults_report_losses() {
    let network = MemoryNetwork::new();
    let mut config = TransportConfig::new(1, NodeId(1));
    config.send_queue_frames_max = 8;
    let mut one = network.endpoint(config);
    let mut two = network.endpoint(TransportConfig::new(1, NodeId(2)));
    let mut events = Vec::new();

    for group in 0..5 {
        one.try_send(NodeId(2), &batch(1, 2, group))
            .expect("queued");
    }
    two.poll_events(&mut events);
    assert_eq!(groups(&events), vec![0, 1, 2, 3, 4]);
    events.clear();

    // Back-pressure when the receiver does not poll.
    for group in 0..8 {
        one.try_send(NodeId(2), &batch(1, 2, group)).expect("room");
    }
    assert_eq!(
        one.try_send(NodeId(2), &batch(1, 2, 8)),
        Err(SendError::QueueFull { peer: NodeId(2) })
    );
    assert_eq!(
        one.try_send(NodeId(9), &batch(1, 9, 0)),
        Err(SendError::UnknownPeer(NodeId(9)))
    );

    // A broken connection reports exactly the frames in transit, and both ends see it.
    network.disconnect(NodeId(1), NodeId(2));
    one.poll_events(&mut events);
    assert!(matches!(
        events[0],
        TransportEvent::Connected {
            peer: NodeId(2),
            direction: Direction::Outbound
        }
    ));
    assert!(matches!(
        events[1],
        TransportEvent::ConnectionClosed {
            peer: Some(NodeId(2)),
            direction: Direction::Outbound,
            ..
        }
    ));
    match &events[2] {
        TransportEvent::FramesLost { peer, frames } => {
            assert_eq!(*peer, NodeId(2));
            assert_eq!(frames, &(6..=13).map(FrameId).collect::<Vec<_>>());
        }
        other => panic!("unexpected {other:?}"),
    }
    events.clear();
    two.poll_events(&mut events);
    assert!(matches!(
        events[..],
        [TransportEvent::ConnectionClosed {
            peer: Some(NodeId(1)),
            direction: Direction::Inbound,
            ..
        }]
    ));
    events.clear();

    // A partition loses everything until healed.
    network.partition(NodeId(1), NodeId(2));
    let lost = one
        .try_send(NodeId(2), &batch(1, 2, 20))
        .expect("accepted, then lost");
    one.poll_events(&mut events);
    assert!(events.iter().any(|event| matches!(event,
        TransportEvent::FramesLost { frames, .. } if frames == &vec![lost])));
    events.clear();
    network.heal(NodeId(1), NodeId(2));
    one.try_send(NodeId(2), &batch(1, 2, 21)).expect("queued");
    two.poll_events(&mut events);
    assert_eq!(groups(&events), vec![21]);
    let seqs: Vec<u64> = events
        .iter()
        .filter_map(|event| match event {
            TransportEvent::Received { frame, .. } => Some(frame.seq()),
            _ => None,
        })
        .collect();
    assert_eq!(seqs, vec![1], "a new connection numbers its frames from 1");
}

#[test]
fn a_dropped_endpoint_is_a_crash_its_senders_learn_of() {
    let network = MemoryNetwork::new();
    let mut one = network.endpoint(TransportConfig::new(1, NodeId(1)));
    let two = network.endpoint(TransportConfig::new(1, NodeId(2)));
    let first = one.try_send(NodeId(2), &batch(1, 2, 0)).expect("queued");
    drop(two);
    let mut events = Vec::new();
    one.poll_events(&mut events);
    assert!(events.iter().any(|event| matches!(event,
        TransportEvent::FramesLost { frames, .. } if frames == &vec![first])));
    assert_eq!(
        one.try_send(NodeId(2), &batch(1, 2, 1)),
        Err(SendError::UnknownPeer(NodeId(2)))
    );
    // The node restarts under the same id.
    let mut two = network.endpoint(TransportConfig::new(1, NodeId(2)));
    one.try_send(NodeId(2), &batch(1, 2, 2)).expect("queued");
    events.clear();
    two.poll_events(&mut events);
    assert_eq!(groups(&events), vec![2]);
}

#[test]
fn a_frame_over_the_receivers_limit_closes_and_is_reported_lost() {
    let network = MemoryNetwork::new();
    let mut one = network.endpoint(TransportConfig::new(1, NodeId(1)));
    let mut strict = TransportConfig::new(1, NodeId(2));
    strict.frame_body_bytes_max = 64;
    let mut two = network.endpoint(strict);
    let mut big = batch(1, 2, 0);
    big.heartbeats
        .extend(batch(1, 2, 1).heartbeats.iter().cycle().take(10).copied());
    let id = one
        .try_send(NodeId(2), &big)
        .expect("fits the sender's limit");
    let after = one
        .try_send(NodeId(2), &batch(1, 2, 5))
        .expect("queued behind it");
    let mut events = Vec::new();
    two.poll_events(&mut events);
    assert!(matches!(
        &events[..],
        [TransportEvent::ConnectionClosed {
            direction: Direction::Inbound,
            error: flotilla_net::ConnectionError::Frame(flotilla_net::FrameError::TooLarge { .. }),
            ..
        }]
    ));
    events.clear();
    one.poll_events(&mut events);
    assert!(events.iter().any(|event| matches!(event,
        TransportEvent::FramesLost { frames, .. } if frames == &vec![id, after])));
}
