//! `GET /admin/actors`: the supervision tree, each actor with its state summary, its inbound edge and counters
//! (SPEC §6). Nothing here holds a record key or a field value: shards report counts and bytes, not keys.

use super::AdminState;
use crate::dedupe::{DedupeShard, DumpShard};
use crate::delivery::{DeliveryActor, DumpDelivery};
use crate::mailbox::EdgeStats;
use crate::parser_pool::Progress;
use crate::supervisor::{DumpTree, TreeNode};
use crate::watcher::{DumpWatcher, FileWatcher};
use crate::writer::{DumpWriter, EventLogWriter};
use actix::prelude::*;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// How long a dump waits for a busy actor (one handling a long message answers only after it).
const DUMP_PATIENCE: Duration = Duration::from_millis(500);

/// How to ask one actor for its state.
#[derive(Clone)]
pub enum Probe {
    Watcher(Addr<FileWatcher>),
    Parser(Arc<Progress>),
    Shard(Addr<DedupeShard>),
    Writer(Addr<EventLogWriter>),
    Delivery(Addr<DeliveryActor>),
}

/// One actor as the dump sees it: how to probe it and the edge that feeds it.
#[derive(Clone)]
pub struct ActorView {
    pub probe: Probe,
    pub inbox: Option<Arc<EdgeStats>>,
}

/// Actors by their name in the supervision tree.
pub type Actors = HashMap<String, ActorView>;

async fn ask<A, M>(addr: &Addr<A>, msg: M) -> Value
where
    A: Actor + Handler<M>,
    A::Context: actix::dev::ToEnvelope<A, M>,
    M: Message + Send + 'static,
    M::Result: Send + serde::Serialize,
{
    match tokio::time::timeout(DUMP_PATIENCE, addr.send(msg)).await {
        Ok(Ok(dump)) => serde_json::to_value(dump).unwrap_or(Value::Null),
        Ok(Err(_)) => json!({"unavailable": "restarting"}),
        Err(_) => json!({"unavailable": "busy with a message"}),
    }
}

impl Probe {
    async fn state(&self) -> Value {
        match self {
            Probe::Watcher(a) => ask(a, DumpWatcher).await,
            Probe::Parser(progress) => json!({ "in_flight": progress.view() }),
            Probe::Shard(a) => ask(a, DumpShard).await,
            Probe::Writer(a) => ask(a, DumpWriter).await,
            Probe::Delivery(a) => ask(a, DumpDelivery).await,
        }
    }
}

/// The tree with every actor's details merged in.
pub async fn dump(tree: TreeNode, actors: &Actors) -> Value {
    let mut node = serde_json::to_value(&tree).unwrap_or(Value::Null);
    if let Some(view) = actors.get(&tree.name) {
        node["state"] = view.probe.state().await;
        if let Some(edge) = &view.inbox {
            node["inbox"] = serde_json::to_value(edge.snapshot()).unwrap_or(Value::Null);
        }
    }
    if !tree.children.is_empty() {
        let mut children = Vec::new();
        for child in tree.children {
            children.push(Box::pin(dump(child, actors)).await);
        }
        node["children"] = Value::Array(children);
    }
    node
}

pub async fn actors(State(s): State<AdminState>) -> Result<Json<Value>, (StatusCode, Json<Value>)> {
    let unavailable = |why: &str| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "error": why })),
        )
    };
    let Some(p) = s.pipeline.get() else {
        return Err(unavailable("the pipeline is starting"));
    };
    let tree = tokio::time::timeout(Duration::from_secs(2), p.supervisor.send(DumpTree))
        .await
        .map_err(|_| unavailable("the supervisor did not answer"))?
        .map_err(|_| unavailable("the supervisor is stopped"))?;
    let edges: Vec<Value> = p
        .edges
        .iter()
        .map(|e| serde_json::to_value(e.snapshot()).unwrap_or(Value::Null))
        .collect();
    Ok(Json(json!({
        "tree": dump(tree, &p.actors).await,
        "edges": edges,
    })))
}
