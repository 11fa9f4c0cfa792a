//! Supervision, BEAM style, on actix (SPEC §2; design in docs/ARCHITECTURE.md "Supervision").
//!
//! actix catches no panic: a panicking handler ends the actor's task, its address closes and nobody is told. Here
//! every actor's `ContextFut` is driven by a [`Runner`] that polls it under `catch_unwind`. On a panic (or when the
//! actor stops by itself) the runner tells the [`Supervisor`] and waits; the supervisor decides by the child's
//! restart type, its group's strategy and restart intensity, and answers with a command. A restart happens **in
//! place** (`ContextFut::restart`): the actor keeps its `Addr` and the messages queued for it, its
//! `Supervised::restarting` rebuilds its state from durable sources, and `started` runs again.
//!
//! The tree is data owned by one supervisor actor: groups with a strategy (`one_for_one`, `one_for_all`,
//! `rest_for_one`) and an intensity (more than `max_restarts` within `period` and the group gives up and fails in
//! its parent), actor children with a restart type (permanent, transient, temporary), and thread children (the
//! admin server). When the root gives up, the process exits non-zero with a clear log line.
//!
//! Two more duties: a heartbeat (an actor busy with one message past `stuck_after` is restarted; actors mark
//! their busy spans with [`Beat::busy`]) and an ordered shutdown (children stop in reverse start order, each
//! within a timeout, after which it is dropped).

use actix::dev::{channel, ContextFut};
use actix::prelude::*;
use futures_util::task::AtomicWaker;
use serde::Serialize;
use std::any::Any;
use std::collections::VecDeque;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

/// Which children a supervisor restarts when one of them fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Only the failed child.
    OneForOne,
    /// Every child of the group.
    OneForAll,
    /// The failed child and every child started after it.
    RestForOne,
}

/// When a child that ended is restarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RestartType {
    /// Always.
    Permanent,
    /// Only after an abnormal end (a panic, or stuck on a message).
    Transient,
    /// Never.
    Temporary,
}

/// Restart intensity: more than `max_restarts` within `period` and the supervisor gives up.
#[derive(Debug, Clone, Copy)]
pub struct Intensity {
    pub max_restarts: u32,
    pub period: Duration,
}

/// What an actor is doing, as the supervisor sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Running,
    /// Ended (panicked or stopped by itself); waiting for the supervisor's decision.
    Failed,
    Stopping,
    Stopped,
}

impl Status {
    fn from_u8(v: u8) -> Status {
        match v {
            0 => Status::Running,
            1 => Status::Failed,
            2 => Status::Stopping,
            _ => Status::Stopped,
        }
    }
}

/// Milliseconds on a process-wide monotonic clock, never 0 (0 means "idle" in a [`Beat`]).
fn now_ms() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    BASE.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

/// An actor's heartbeat: when it started the message it is busy with, if any.
#[derive(Debug, Clone, Default)]
pub struct Beat(Arc<AtomicU64>);

impl Beat {
    /// Marks the actor busy until the guard drops (keep the guard in the message's future).
    pub fn busy(&self) -> BusyGuard {
        self.0.store(now_ms(), Ordering::Relaxed);
        BusyGuard(self.0.clone())
    }

    /// How long the actor has been busy with its current message.
    pub fn busy_for(&self) -> Option<Duration> {
        match self.0.load(Ordering::Relaxed) {
            0 => None,
            since => Some(Duration::from_millis(now_ms().saturating_sub(since))),
        }
    }
}

/// Ends a busy span of a [`Beat`] when dropped.
#[derive(Debug)]
pub struct BusyGuard(Arc<AtomicU64>);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.store(0, Ordering::Relaxed);
    }
}

/// What the supervisor asks a runner to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Command {
    None = 0,
    Restart = 1,
    Stop = 2,
    Drop = 3,
}

/// The state of one supervised actor, shared by its runner (on the actor's arbiter) and the supervisor.
#[derive(Debug)]
pub struct Cell {
    id: usize,
    pub name: String,
    pub kind: &'static str,
    pub restart: RestartType,
    status: AtomicU8,
    restarts: AtomicU64,
    last_exit: Mutex<Option<String>>,
    command: AtomicU8,
    waker: AtomicWaker,
    pub beat: Beat,
    /// Bumped by every restart the supervisor orders: an exit reported by an earlier generation (one a group
    /// restart already covered) is not counted again.
    generation: AtomicU64,
}

impl Cell {
    pub fn status(&self) -> Status {
        Status::from_u8(self.status.load(Ordering::Acquire))
    }

    fn set_status(&self, s: Status) {
        self.status.store(s as u8, Ordering::Release);
    }

    pub fn restarts(&self) -> u64 {
        self.restarts.load(Ordering::Relaxed)
    }

    pub fn last_exit(&self) -> Option<String> {
        self.last_exit
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn set_last_exit(&self, reason: String) {
        *self.last_exit.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason);
    }

    fn command(&self, c: Command) {
        self.command.store(c as u8, Ordering::Release);
        self.waker.wake();
    }

    /// This child in the state dump; `busy` when it has a heartbeat (an actor rather than a thread).
    fn node(&self, busy: bool) -> TreeNode {
        TreeNode {
            name: self.name.clone(),
            kind: self.kind.into(),
            status: self.status(),
            restarts: self.restarts(),
            last_exit: self.last_exit(),
            strategy: None,
            restart: Some(self.restart),
            busy_seconds: self
                .beat
                .busy_for()
                .filter(|_| busy)
                .map(|d| d.as_secs_f64()),
            children: Vec::new(),
        }
    }

    fn take_command(&self) -> Command {
        match self.command.swap(Command::None as u8, Ordering::AcqRel) {
            1 => Command::Restart,
            2 => Command::Stop,
            3 => Command::Drop,
            _ => Command::None,
        }
    }
}

/// Why a child ended.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
struct ChildExit {
    cell: usize,
    generation: u64,
    abnormal: bool,
    reason: String,
}

/// Drives one actor's `ContextFut` under `catch_unwind` and obeys the supervisor's commands.
struct Runner<A: Actor<Context = Context<A>> + Supervised> {
    /// Taken only on drop.
    fut: Option<ContextFut<A, Context<A>>>,
    cell: Arc<Cell>,
    supervisor: Addr<Supervisor>,
    /// Ended and waiting for a command.
    parked: bool,
    stopping: bool,
}

impl<A: Actor<Context = Context<A>> + Supervised> Runner<A> {
    fn park(&mut self, abnormal: bool, reason: String) {
        self.parked = true;
        self.cell.set_status(Status::Failed);
        self.cell.set_last_exit(reason.clone());
        self.supervisor.do_send(ChildExit {
            cell: self.cell.id,
            generation: self.cell.generation.load(Ordering::Acquire),
            abnormal,
            reason,
        });
    }
}

impl<A: Actor<Context = Context<A>> + Supervised> Future for Runner<A> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<()> {
        let this = self.get_mut();
        this.cell.waker.register(cx.waker());
        loop {
            match this.cell.take_command() {
                Command::None => {}
                Command::Restart => {
                    let Some(fut) = this.fut.as_mut() else {
                        return Poll::Ready(());
                    };
                    match catch_unwind(AssertUnwindSafe(|| fut.restart())) {
                        Ok(true) => {
                            this.parked = false;
                            this.stopping = false;
                            this.cell.set_status(Status::Running);
                        }
                        Ok(false) => {
                            // Nobody holds its address any more: nothing to restart for.
                            this.cell.set_status(Status::Stopped);
                            return Poll::Ready(());
                        }
                        Err(payload) => {
                            this.park(true, describe_panic(payload.as_ref(), "restarting"));
                            return Poll::Pending;
                        }
                    }
                }
                Command::Stop if this.parked => {
                    this.cell.set_status(Status::Stopped);
                    return Poll::Ready(());
                }
                Command::Stop => {
                    this.stopping = true;
                    this.cell.set_status(Status::Stopping);
                    if let Some(fut) = this.fut.as_mut() {
                        fut.ctx().stop();
                    }
                }
                Command::Drop => {
                    this.cell.set_status(Status::Stopped);
                    return Poll::Ready(());
                }
            }
            if this.parked {
                return Poll::Pending;
            }
            let Some(fut) = this.fut.as_mut() else {
                return Poll::Ready(());
            };
            LAST_PANIC_AT.with(|l| l.borrow_mut().take());
            match catch_unwind(AssertUnwindSafe(|| Pin::new(fut).poll(cx))) {
                Ok(Poll::Pending) => return Poll::Pending,
                Ok(Poll::Ready(())) if this.stopping => {
                    this.cell.set_status(Status::Stopped);
                    return Poll::Ready(());
                }
                Ok(Poll::Ready(())) => this.park(false, "stopped by itself".into()),
                Err(_) if this.stopping => {
                    // Failing while asked to stop is stopping: nobody restarts it now.
                    this.cell.set_status(Status::Stopped);
                    return Poll::Ready(());
                }
                Err(payload) => {
                    this.park(true, describe_panic(payload.as_ref(), "handling a message"))
                }
            }
            // Parked: a command may already be waiting (checked at the top of the loop).
        }
    }
}

impl<A: Actor<Context = Context<A>> + Supervised> Drop for Runner<A> {
    fn drop(&mut self) {
        // Dropping the ContextFut of a live actor polls it once more; a second panic there must not escape.
        if let Some(fut) = self.fut.take() {
            let _ = catch_unwind(AssertUnwindSafe(move || drop(fut)));
        }
    }
}

/// Describes a panic without its message unless the message is a literal: a formatted panic message may carry a
/// field value (slicing a string, for one, prints it), and PHI never reaches a log or the state dump.
fn describe_panic(payload: &(dyn Any + Send), doing: &str) -> String {
    let location = LAST_PANIC_AT
        .with(|l| l.borrow_mut().take())
        .unwrap_or_else(|| "an unknown place".into());
    match payload.downcast_ref::<&'static str>() {
        Some(msg) => format!("panicked at {location} while {doing}: {msg}"),
        None => format!("panicked at {location} while {doing} (formatted message withheld)"),
    }
}

thread_local! {
    /// Where the last panic on this thread happened, recorded by the panic hook.
    static LAST_PANIC_AT: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Installs a panic hook that records each panic's location for the supervisor. With `quiet`, the hook also
/// replaces the default report (which prints the formatted message, possibly a field value) with a log line
/// holding only the location and literal messages; otherwise the previous hook still runs (tests keep their
/// assertion messages). Installed once per process.
pub fn install_panic_hook(quiet: bool) {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let at = info
                .location()
                .map(|l| format!("{}:{}", l.file(), l.line()))
                .unwrap_or_else(|| "an unknown place".into());
            LAST_PANIC_AT.with(|l| *l.borrow_mut() = Some(at.clone()));
            if quiet {
                let msg = info.payload().downcast_ref::<&'static str>().copied();
                let thread = std::thread::current();
                tracing::error!(thread = thread.name().unwrap_or("unnamed"), at = %at,
                    message = msg.unwrap_or("(formatted message withheld)"), "panic");
            } else {
                previous(info);
            }
        }));
    });
}

/// A child that is a plain thread rather than an actor (the admin server): watched on every heartbeat and
/// restarted when it ends.
pub trait ThreadChild: Send {
    fn alive(&self) -> bool;
    fn restart(&mut self) -> Result<(), String>;
    fn stop(&mut self);
}

/// A group of children under one strategy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupId(usize);

#[derive(Debug, Clone, Copy)]
enum Child {
    Group(usize),
    Actor(usize),
    Thread(usize),
}

struct Group {
    name: String,
    strategy: Strategy,
    intensity: Intensity,
    parent: Option<usize>,
    children: Vec<Child>,
    restarts: u64,
    last_exit: Option<String>,
    /// When its recent restarts happened, for the intensity.
    history: VecDeque<Instant>,
}

struct ThreadEntry {
    cell: Arc<Cell>,
    thread: Option<Box<dyn ThreadChild>>,
}

/// The supervision tree as the state dump shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TreeNode {
    pub name: String,
    /// `supervisor`, or the kind of actor or thread.
    pub kind: String,
    pub status: Status,
    pub restarts: u64,
    pub last_exit: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strategy: Option<Strategy>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restart: Option<RestartType>,
    /// Seconds spent so far on the message being handled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub busy_seconds: Option<f64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<TreeNode>,
}

/// Builds the tree: groups first, then the actors and threads in each, in start order.
pub struct TreeBuilder {
    addr: Addr<Supervisor>,
    receiver: Option<channel::AddressReceiver<Supervisor>>,
    groups: Vec<Group>,
    cells: Vec<(Arc<Cell>, usize)>,
    threads: Vec<(ThreadEntry, usize)>,
    stuck_after: Duration,
}

impl TreeBuilder {
    /// A tree whose root group is `root` with `strategy`.
    pub fn new(
        root: &str,
        strategy: Strategy,
        intensity: Intensity,
        stuck_after: Duration,
    ) -> TreeBuilder {
        let (tx, rx) = channel::channel(16);
        TreeBuilder {
            addr: Addr::new(tx),
            receiver: Some(rx),
            groups: vec![Group {
                name: root.into(),
                strategy,
                intensity,
                parent: None,
                children: Vec::new(),
                restarts: 0,
                last_exit: None,
                history: VecDeque::new(),
            }],
            cells: Vec::new(),
            threads: Vec::new(),
            stuck_after,
        }
    }

    pub fn root(&self) -> GroupId {
        GroupId(0)
    }

    /// A group under `parent`.
    pub fn group(
        &mut self,
        parent: GroupId,
        name: &str,
        strategy: Strategy,
        intensity: Intensity,
    ) -> GroupId {
        let id = self.groups.len();
        self.groups.push(Group {
            name: name.into(),
            strategy,
            intensity,
            parent: Some(parent.0),
            children: Vec::new(),
            restarts: 0,
            last_exit: None,
            history: VecDeque::new(),
        });
        self.groups[parent.0].children.push(Child::Group(id));
        GroupId(id)
    }

    fn cell(&self, id: usize, name: &str, kind: &'static str, restart: RestartType) -> Arc<Cell> {
        Arc::new(Cell {
            id,
            name: name.into(),
            kind,
            restart,
            status: AtomicU8::new(Status::Running as u8),
            restarts: AtomicU64::new(0),
            last_exit: Mutex::new(None),
            command: AtomicU8::new(Command::None as u8),
            waker: AtomicWaker::new(),
            beat: Beat::default(),
            generation: AtomicU64::new(0),
        })
    }

    /// Starts an actor on `arbiter` under `group`. `make` runs on the arbiter's thread and gets the actor's
    /// heartbeat. The returned address stays valid across restarts.
    pub fn spawn<A, F>(
        &mut self,
        group: GroupId,
        arbiter: &ArbiterHandle,
        name: &str,
        kind: &'static str,
        restart: RestartType,
        make: F,
    ) -> Addr<A>
    where
        A: Actor<Context = Context<A>> + Supervised,
        F: FnOnce(Beat) -> A + Send + 'static,
    {
        let id = self.cells.len();
        let cell = self.cell(id, name, kind, restart);
        self.cells.push((cell.clone(), group.0));
        self.groups[group.0].children.push(Child::Actor(id));
        let (tx, rx) = channel::channel(16);
        let supervisor = self.addr.clone();
        arbiter.spawn_fn(move || {
            let ctx = Context::with_receiver(rx);
            let act = make(cell.beat.clone());
            actix_rt::spawn(Runner {
                fut: Some(ctx.into_future(act)),
                cell,
                supervisor,
                parked: false,
                stopping: false,
            });
        });
        Addr::new(tx)
    }

    /// Adds a thread child under `group`.
    pub fn thread(
        &mut self,
        group: GroupId,
        name: &str,
        kind: &'static str,
        thread: Box<dyn ThreadChild>,
    ) {
        let id = self.threads.len();
        let cell = self.cell(usize::MAX, name, kind, RestartType::Permanent);
        self.threads.push((
            ThreadEntry {
                cell,
                thread: Some(thread),
            },
            group.0,
        ));
        self.groups[group.0].children.push(Child::Thread(id));
    }

    /// Starts the supervisor actor on the current arbiter.
    pub fn start(mut self) -> Addr<Supervisor> {
        let receiver = self.receiver.take().expect("started once");
        let supervisor = Supervisor {
            groups: std::mem::take(&mut self.groups),
            cells: std::mem::take(&mut self.cells),
            threads: std::mem::take(&mut self.threads),
            stuck_after: self.stuck_after,
            shutting_down: false,
        };
        let ctx = Context::with_receiver(receiver);
        ctx.run(supervisor)
    }
}

/// The supervisor: owns the tree, decides restarts, escalates, watches heartbeats and threads, and shuts down.
pub struct Supervisor {
    groups: Vec<Group>,
    cells: Vec<(Arc<Cell>, usize)>,
    threads: Vec<(ThreadEntry, usize)>,
    stuck_after: Duration,
    shutting_down: bool,
}

/// How often heartbeats and threads are checked.
const TICK: Duration = Duration::from_millis(500);

/// The exit code of a process whose supervision root gave up (EX_SOFTWARE).
pub const GAVE_UP_EXIT_CODE: i32 = 70;

impl Actor for Supervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(0);
        ctx.run_interval(TICK, |act, _| act.tick());
    }
}

impl Supervisor {
    fn parent_of(&self, child: Child) -> Option<usize> {
        match child {
            Child::Actor(i) => Some(self.cells[i].1),
            Child::Thread(i) => Some(self.threads[i].1),
            Child::Group(g) => self.groups[g].parent,
        }
    }

    fn child_name(&self, child: Child) -> &str {
        match child {
            Child::Actor(i) => &self.cells[i].0.name,
            Child::Thread(i) => &self.threads[i].0.cell.name,
            Child::Group(g) => &self.groups[g].name,
        }
    }

    /// `child` ended abnormally (or a permanent child ended): restart per its group's strategy and intensity.
    fn failed(&mut self, child: Child, reason: String) {
        let Some(g) = self.parent_of(child) else {
            // The root itself gave up.
            tracing::error!(reason = %reason,
                "supervision gave up: restart intensity exceeded at the root; exiting for the service manager to restart the process");
            std::process::exit(GAVE_UP_EXIT_CODE);
        };
        let now = Instant::now();
        let intensity = self.groups[g].intensity;
        let history = &mut self.groups[g].history;
        history.push_back(now);
        while history
            .front()
            .is_some_and(|t| now.duration_since(*t) > intensity.period)
        {
            history.pop_front();
        }
        if history.len() > intensity.max_restarts as usize {
            let name = self.groups[g].name.clone();
            let why = format!(
                "{name} gave up: more than {} restarts within {}s; last: {} {reason}",
                intensity.max_restarts,
                intensity.period.as_secs(),
                self.child_name(child)
            );
            tracing::error!(supervisor = %name, "{why}");
            self.groups[g].last_exit = Some(why.clone());
            self.failed(Child::Group(g), why);
            return;
        }
        let siblings = self.groups[g].children.clone();
        let position = siblings.iter().position(|c| same(*c, child)).unwrap_or(0);
        let chosen: Vec<Child> = match self.groups[g].strategy {
            Strategy::OneForOne => vec![child],
            Strategy::OneForAll => siblings,
            Strategy::RestForOne => siblings[position..].to_vec(),
        };
        tracing::warn!(supervisor = %self.groups[g].name, child = %self.child_name(child),
            restarting = chosen.len(), reason = %reason, "restarting");
        for c in chosen {
            self.restart(c);
        }
    }

    fn restart(&mut self, child: Child) {
        match child {
            Child::Actor(i) => {
                let cell = &self.cells[i].0;
                cell.restarts.fetch_add(1, Ordering::Relaxed);
                cell.generation.fetch_add(1, Ordering::AcqRel);
                metrics::counter!(crate::metrics::ACTOR_RESTARTS, "actor" => cell.kind)
                    .increment(1);
                cell.command(Command::Restart);
            }
            Child::Thread(i) => {
                let entry = &mut self.threads[i].0;
                entry.cell.restarts.fetch_add(1, Ordering::Relaxed);
                metrics::counter!(crate::metrics::ACTOR_RESTARTS, "actor" => entry.cell.kind)
                    .increment(1);
                if let Some(t) = entry.thread.as_mut() {
                    match t.restart() {
                        Ok(()) => entry.cell.set_status(Status::Running),
                        Err(e) => {
                            entry.cell.set_status(Status::Failed);
                            entry.cell.set_last_exit(format!("cannot restart: {e}"));
                        }
                    }
                }
            }
            Child::Group(g) => {
                self.groups[g].restarts += 1;
                self.groups[g].history.clear();
                for c in self.groups[g].children.clone() {
                    self.restart(c);
                }
            }
        }
    }

    fn tick(&mut self) {
        if self.shutting_down {
            return;
        }
        for i in 0..self.cells.len() {
            let cell = self.cells[i].0.clone();
            let restart_pending = cell.command.load(Ordering::Acquire) != Command::None as u8;
            if cell.status() != Status::Running || restart_pending {
                continue;
            }
            if let Some(busy) = cell.beat.busy_for().filter(|b| *b > self.stuck_after) {
                let reason = format!("stuck: busy with one message for {}s", busy.as_secs());
                tracing::error!(actor = %cell.name, "{reason}");
                cell.set_last_exit(reason.clone());
                // The restart drops the message's future, which ends the busy span.
                cell.beat.0.store(0, Ordering::Relaxed);
                self.failed(Child::Actor(i), reason);
            }
        }
        for i in 0..self.threads.len() {
            let entry = &self.threads[i].0;
            let down = entry.thread.as_ref().is_some_and(|t| !t.alive());
            // Failed: an earlier restart could not start it; trying again counts against the intensity.
            if down && matches!(entry.cell.status(), Status::Running | Status::Failed) {
                let reason = format!("the {} thread ended", entry.cell.name);
                entry.cell.set_status(Status::Failed);
                entry.cell.set_last_exit(reason.clone());
                self.failed(Child::Thread(i), reason);
            }
        }
    }

    fn node(&self, child: Child) -> TreeNode {
        match child {
            Child::Actor(i) => self.cells[i].0.node(true),
            Child::Thread(i) => self.threads[i].0.cell.node(false),
            Child::Group(g) => {
                let group = &self.groups[g];
                TreeNode {
                    name: group.name.clone(),
                    kind: "supervisor".into(),
                    status: if self.shutting_down {
                        Status::Stopping
                    } else {
                        Status::Running
                    },
                    restarts: group.restarts,
                    last_exit: group.last_exit.clone(),
                    strategy: Some(group.strategy),
                    restart: None,
                    busy_seconds: None,
                    children: group.children.iter().map(|c| self.node(*c)).collect(),
                }
            }
        }
    }

    /// Every child below `child`, in start order.
    fn flatten(&self, child: Child, out: &mut Vec<Child>) {
        match child {
            Child::Group(g) => {
                for c in &self.groups[g].children {
                    self.flatten(*c, out);
                }
            }
            leaf => out.push(leaf),
        }
    }
}

fn same(a: Child, b: Child) -> bool {
    matches!((a, b), (Child::Group(x), Child::Group(y)) | (Child::Actor(x), Child::Actor(y)) | (Child::Thread(x), Child::Thread(y)) if x == y)
}

impl Handler<ChildExit> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: ChildExit, _: &mut Context<Self>) {
        if self.shutting_down {
            return;
        }
        let Some((cell, _)) = self.cells.get(msg.cell) else {
            return;
        };
        let cell = cell.clone();
        if msg.generation != cell.generation.load(Ordering::Acquire) {
            // Already restarted since (a sibling's failure restarted the whole group).
            return;
        }
        let restart = match cell.restart {
            RestartType::Permanent => true,
            RestartType::Transient => msg.abnormal,
            RestartType::Temporary => false,
        };
        if msg.abnormal {
            tracing::error!(actor = %cell.name, kind = cell.kind, reason = %msg.reason, "actor failed");
        } else {
            tracing::warn!(actor = %cell.name, kind = cell.kind, reason = %msg.reason, "actor ended");
        }
        if restart {
            self.failed(Child::Actor(msg.cell), msg.reason);
        } else {
            cell.command(Command::Stop);
        }
    }
}

/// The supervision tree, for the state dump.
#[derive(Debug, Message)]
#[rtype(result = "TreeNode")]
pub struct DumpTree;

impl Handler<DumpTree> for Supervisor {
    type Result = MessageResult<DumpTree>;

    fn handle(&mut self, _: DumpTree, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.node(Child::Group(0)))
    }
}

/// Stops every child in reverse start order, each within `timeout` (then it is dropped). Restarts stop at once.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Shutdown {
    pub timeout: Duration,
}

impl Handler<Shutdown> for Supervisor {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, msg: Shutdown, _: &mut Context<Self>) -> Self::Result {
        self.shutting_down = true;
        let mut order = Vec::new();
        self.flatten(Child::Group(0), &mut order);
        order.reverse();
        let steps: Vec<Step> = order
            .into_iter()
            .map(|c| match c {
                Child::Actor(i) => Step::Actor(self.cells[i].0.clone()),
                Child::Thread(i) => Step::Thread(
                    self.threads[i].0.cell.clone(),
                    self.threads[i].0.thread.take(),
                ),
                Child::Group(_) => unreachable!("flatten yields leaves"),
            })
            .collect();
        Box::pin(async move {
            for step in steps {
                step.stop(msg.timeout).await;
            }
        })
    }
}

enum Step {
    Actor(Arc<Cell>),
    Thread(Arc<Cell>, Option<Box<dyn ThreadChild>>),
}

impl Step {
    async fn stop(self, timeout: Duration) {
        match self {
            Step::Actor(cell) => {
                if cell.status() == Status::Stopped {
                    return;
                }
                cell.command(Command::Stop);
                if !wait_stopped(&cell, timeout).await {
                    tracing::warn!(actor = %cell.name, timeout_s = timeout.as_secs_f64(),
                        "did not stop in time; dropping it");
                    cell.command(Command::Drop);
                    wait_stopped(&cell, Duration::from_secs(1)).await;
                }
            }
            Step::Thread(cell, thread) => {
                if let Some(mut t) = thread {
                    t.stop();
                }
                cell.set_status(Status::Stopped);
            }
        }
    }
}

async fn wait_stopped(cell: &Cell, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while cell.status() != Status::Stopped {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A toy actor: panics or stops on request, counts its starts.
    struct Toy {
        starts: Arc<AtomicU64>,
    }

    impl Actor for Toy {
        type Context = Context<Self>;
        fn started(&mut self, _: &mut Context<Self>) {
            self.starts.fetch_add(1, Ordering::Relaxed);
        }
    }

    impl Supervised for Toy {}

    #[derive(Message)]
    #[rtype(result = "()")]
    enum Do {
        Panic,
        PanicWith(String),
        Stop,
    }

    impl Handler<Do> for Toy {
        type Result = ();
        fn handle(&mut self, msg: Do, ctx: &mut Context<Self>) {
            match msg {
                Do::Panic => panic!("asked to"),
                Do::PanicWith(value) => panic!("formatted with {value}"),
                Do::Stop => ctx.stop(),
            }
        }
    }

    struct Tree {
        supervisor: Addr<Supervisor>,
        toys: Vec<(Addr<Toy>, Arc<AtomicU64>)>,
    }

    fn tree(strategy: Strategy, restarts: &[RestartType]) -> Tree {
        tree_with(strategy, restarts, 10)
    }

    /// A root (10 restarts a minute) over one group allowed `max_restarts` a minute.
    fn tree_with(strategy: Strategy, restarts: &[RestartType], max_restarts: u32) -> Tree {
        install_panic_hook(false);
        let intensity = |max_restarts| Intensity {
            max_restarts,
            period: Duration::from_secs(60),
        };
        let mut b = TreeBuilder::new(
            "root",
            Strategy::OneForOne,
            intensity(10),
            Duration::from_secs(60),
        );
        let group = b.group(b.root(), "group", strategy, intensity(max_restarts));
        let arbiter = actix::Arbiter::current();
        let toys = restarts
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let starts = Arc::new(AtomicU64::new(0));
                let s = starts.clone();
                let addr = b.spawn(group, &arbiter, &format!("toy{i}"), "toy", *r, move |_| {
                    Toy { starts: s }
                });
                (addr, starts)
            })
            .collect();
        Tree {
            supervisor: b.start(),
            toys,
        }
    }

    impl Tree {
        /// Starts of each toy once things have settled.
        async fn starts(&self) -> Vec<u64> {
            tokio::time::sleep(Duration::from_millis(200)).await;
            self.toys
                .iter()
                .map(|(_, s)| s.load(Ordering::Relaxed))
                .collect()
        }

        async fn statuses(&self) -> Vec<Status> {
            let root = self.supervisor.send(DumpTree).await.unwrap();
            root.children[0].children.iter().map(|c| c.status).collect()
        }
    }

    #[actix_rt::test]
    async fn one_for_one_restarts_only_the_failed_child_in_place() {
        let t = tree(Strategy::OneForOne, &[RestartType::Permanent; 3]);
        assert_eq!(t.starts().await, [1, 1, 1]);
        t.toys[1].0.do_send(Do::Panic);
        assert_eq!(t.starts().await, [1, 2, 1]);
        // Same address after the restart: it still takes messages.
        t.toys[1].0.do_send(Do::Panic);
        assert_eq!(t.starts().await, [1, 3, 1]);
    }

    #[actix_rt::test]
    async fn one_for_all_restarts_every_child() {
        let t = tree(Strategy::OneForAll, &[RestartType::Permanent; 3]);
        assert_eq!(t.starts().await, [1, 1, 1]);
        t.toys[2].0.do_send(Do::Panic);
        assert_eq!(t.starts().await, [2, 2, 2]);
    }

    #[actix_rt::test]
    async fn rest_for_one_restarts_the_failed_child_and_those_started_after_it() {
        let t = tree(Strategy::RestForOne, &[RestartType::Permanent; 3]);
        assert_eq!(t.starts().await, [1, 1, 1]);
        t.toys[1].0.do_send(Do::Panic);
        assert_eq!(t.starts().await, [1, 2, 2]);
    }

    #[actix_rt::test]
    async fn restart_types_decide_after_a_panic_and_after_a_normal_stop() {
        use RestartType::*;
        let t = tree(Strategy::OneForOne, &[Permanent, Transient, Temporary]);
        assert_eq!(t.starts().await, [1, 1, 1]);
        for (addr, _) in &t.toys {
            addr.do_send(Do::Stop);
        }
        // A normal stop: only the permanent child comes back.
        assert_eq!(t.starts().await, [2, 1, 1]);
        assert_eq!(
            t.statuses().await,
            [Status::Running, Status::Stopped, Status::Stopped]
        );
        let t = tree(Strategy::OneForOne, &[Permanent, Transient, Temporary]);
        assert_eq!(t.starts().await, [1, 1, 1]);
        for (addr, _) in &t.toys {
            addr.do_send(Do::Panic);
        }
        // A panic: permanent and transient come back, temporary does not.
        assert_eq!(t.starts().await, [2, 2, 1]);
        assert_eq!(
            t.statuses().await,
            [Status::Running, Status::Running, Status::Stopped]
        );
    }

    #[actix_rt::test]
    async fn past_its_intensity_a_group_gives_up_and_its_parent_restarts_it_whole() {
        let t = tree_with(Strategy::OneForOne, &[RestartType::Permanent; 2], 1);
        t.toys[0].0.do_send(Do::Panic);
        assert_eq!(t.starts().await, [2, 1]);
        t.toys[0].0.do_send(Do::Panic);
        // The second restart within the period is one too many: the root restarts the group, both children.
        assert_eq!(t.starts().await, [3, 2]);
        let root = t.supervisor.send(DumpTree).await.unwrap();
        let group = &root.children[0];
        assert_eq!(group.restarts, 1);
        assert!(
            group
                .last_exit
                .as_deref()
                .unwrap()
                .contains("group gave up"),
            "{group:?}"
        );
        // Its history starts again: one more failure is within the intensity.
        t.toys[1].0.do_send(Do::Panic);
        assert_eq!(t.starts().await, [3, 3]);
        assert_eq!(
            t.supervisor.send(DumpTree).await.unwrap().children[0].restarts,
            1
        );
    }

    #[actix_rt::test]
    async fn the_dump_shows_restarts_and_withholds_formatted_panic_messages() {
        let t = tree(Strategy::OneForOne, &[RestartType::Permanent]);
        t.toys[0].0.do_send(Do::Panic);
        t.starts().await;
        let root = t.supervisor.send(DumpTree).await.unwrap();
        let toy = &root.children[0].children[0];
        assert_eq!(toy.restarts, 1);
        let exit = toy.last_exit.as_deref().unwrap();
        assert!(exit.contains("src/supervisor.rs"), "{exit}");
        assert!(exit.ends_with("asked to"), "{exit}");
        t.toys[0].0.do_send(Do::PanicWith("JANE DOE".into()));
        t.starts().await;
        let root = t.supervisor.send(DumpTree).await.unwrap();
        let toy = &root.children[0].children[0];
        assert_eq!(toy.restarts, 2);
        let exit = toy.last_exit.as_deref().unwrap();
        assert!(exit.ends_with("(formatted message withheld)"), "{exit}");
        assert!(!exit.contains("JANE"), "{exit}");
    }
}
