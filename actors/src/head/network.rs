//! Raft over mesh links: each head exposes a [`RaftPeer`] as `swarm.raft`
//! (only certificates with the `head` role may call it), and openraft's
//! network client is a [`RemoteAddr`] to a voter's peer. The messages are
//! ordinary typed asks, sealed and authenticated like all mesh traffic.

use actix::prelude::*;
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{AnyError, BasicNode};
use serde::{Deserialize, Serialize};

use super::types::{HeadId, Raft, RaftConfig};
use crate::error::AskError;
use crate::mesh::Mesh;
use crate::remote::RemoteAddr;

/// The name each head's Raft peer is exposed under.
pub(crate) const RAFT_ACTOR: &str = "swarm.raft";

/// Answers Raft RPCs from other heads with the local Raft.
pub(crate) struct RaftPeer {
    raft: Raft,
}

impl RaftPeer {
    pub(crate) fn new(raft: Raft) -> Self {
        Self { raft }
    }
}

impl Actor for RaftPeer {
    type Context = Context<Self>;
}

/// What a remote Raft answered, or why it did not (its words).
type Answer<T> = Result<T, String>;

/// An AppendEntries RPC.
#[derive(Debug, Serialize, Deserialize, Message)]
#[rtype(result = "Answer<AppendEntriesResponse<HeadId>>")]
pub(crate) struct RaftAppend(AppendEntriesRequest<RaftConfig>);

/// A RequestVote RPC.
#[derive(Debug, Serialize, Deserialize, Message)]
#[rtype(result = "Answer<VoteResponse<HeadId>>")]
pub(crate) struct RaftVote(VoteRequest<HeadId>);

/// One chunk of a snapshot.
#[derive(Debug, Serialize, Deserialize, Message)]
#[rtype(result = "Answer<InstallSnapshotResponse<HeadId>>")]
pub(crate) struct RaftSnapshot(InstallSnapshotRequest<RaftConfig>);

impl Handler<RaftAppend> for RaftPeer {
    type Result = ResponseFuture<Answer<AppendEntriesResponse<HeadId>>>;

    fn handle(&mut self, RaftAppend(rpc): RaftAppend, _: &mut Context<Self>) -> Self::Result {
        let raft = self.raft.clone();
        Box::pin(async move { raft.append_entries(rpc).await.map_err(|e| e.to_string()) })
    }
}

impl Handler<RaftVote> for RaftPeer {
    type Result = ResponseFuture<Answer<VoteResponse<HeadId>>>;

    fn handle(&mut self, RaftVote(rpc): RaftVote, _: &mut Context<Self>) -> Self::Result {
        let raft = self.raft.clone();
        Box::pin(async move { raft.vote(rpc).await.map_err(|e| e.to_string()) })
    }
}

impl Handler<RaftSnapshot> for RaftPeer {
    type Result = ResponseFuture<Answer<InstallSnapshotResponse<HeadId>>>;

    fn handle(&mut self, RaftSnapshot(rpc): RaftSnapshot, _: &mut Context<Self>) -> Self::Result {
        let raft = self.raft.clone();
        Box::pin(async move { raft.install_snapshot(rpc).await.map_err(|e| e.to_string()) })
    }
}

crate::system_message! {
    RaftAppend => "swarm.RaftAppend", Heads;
    RaftVote => "swarm.RaftVote", Heads;
    RaftSnapshot => "swarm.RaftSnapshot", Heads;
}
crate::remote_actor!(RaftPeer: RaftAppend, RaftVote, RaftSnapshot);

/// Makes openraft's clients: one [`RemoteAddr`] per voter.
pub(crate) struct Network {
    mesh: Mesh,
}

impl Network {
    pub(crate) fn new(mesh: Mesh) -> Self {
        Self { mesh }
    }
}

impl RaftNetworkFactory<RaftConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: HeadId, _: &BasicNode) -> PeerClient {
        PeerClient {
            peer: RemoteAddr::new(self.mesh.clone(), target.0, RAFT_ACTOR),
        }
    }
}

/// openraft's client of one voter.
pub(crate) struct PeerClient {
    peer: RemoteAddr<RaftPeer>,
}

/// A failed ask as openraft sees it: the node unreachable (openraft backs
/// off), or a transient network error (retried at once).
fn failed<E: std::error::Error>(e: AskError) -> RPCError<HeadId, BasicNode, E> {
    if e.is_node_failure() {
        RPCError::Unreachable(Unreachable::new(&e))
    } else {
        RPCError::Network(NetworkError::new(&e))
    }
}

/// An error the remote Raft answered with.
fn remote<E: std::error::Error>(words: String) -> RPCError<HeadId, BasicNode, E> {
    RPCError::Network(NetworkError::new(&AnyError::error(words)))
}

impl RaftNetwork<RaftConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<RaftConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<HeadId>, RPCError<HeadId, BasicNode, RaftError<HeadId>>> {
        match self
            .peer
            .send_timeout(RaftAppend(rpc), option.hard_ttl())
            .await
        {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(words)) => Err(remote(words)),
            Err(e) => Err(failed(e)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<RaftConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<HeadId>,
        RPCError<HeadId, BasicNode, RaftError<HeadId, InstallSnapshotError>>,
    > {
        match self
            .peer
            .send_timeout(RaftSnapshot(rpc), option.hard_ttl())
            .await
        {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(words)) => Err(remote(words)),
            Err(e) => Err(failed(e)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<HeadId>,
        option: RPCOption,
    ) -> Result<VoteResponse<HeadId>, RPCError<HeadId, BasicNode, RaftError<HeadId>>> {
        match self
            .peer
            .send_timeout(RaftVote(rpc), option.hard_ttl())
            .await
        {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(words)) => Err(remote(words)),
            Err(e) => Err(failed(e)),
        }
    }
}
