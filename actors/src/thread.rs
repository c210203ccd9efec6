//! ThreadActor: one per active chat thread. Owns the conversation, runs turns, streams deltas.
//!
//! A turn: persist the user's message (durable before the model is called),
//! stream the provider's reply, then bill the usage together with the
//! assistant message in one transaction. The turn runs detached from the HTTP
//! request, so a client that disconnects mid-stream still gets its usage billed
//! (the reply is completed and stored). One turn at a time per thread keeps the
//! thread's running total ordered.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::Utc;
use futures::StreamExt;
use serde::Serialize;
use tally_domain::{new_id, Cost, Money, Usage};
use tally_llm::{ChatMessage, ChatRequest, Provider, ProviderRouter, Role as LlmRole, StreamEvent, TokenUsage};
use tally_store::{MessageRecord, MessageStatus, Role, Store, ThreadRecord, WriteOp};
use tally_observability::TraceContext;
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;
use uuid::Uuid;

use crate::billing::{BillUsage, UsageEvent};
use crate::error::ActorError;
use crate::kafka::ChatPublisher;
use crate::persister::Persist;
use crate::usage::usage_from_tokens;

/// Longest accepted user message, in characters.
pub const MAX_MESSAGE_CHARS: usize = 32_000;
/// Reply length limit sent to the provider.
pub const DEFAULT_MAX_TOKENS: u32 = 1024;
/// A thread actor with no activity for this long stops (it restarts from storage on demand).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// How often idleness is checked.
pub const IDLE_CHECK: Duration = Duration::from_secs(30);

/// Counts turns in flight so that shutdown can let them finish (and bill) first.
#[derive(Debug, Clone, Default)]
pub struct TurnTracker {
    active: Arc<AtomicUsize>,
    idle: Arc<tokio::sync::Notify>,
}

impl TurnTracker {
    /// Turns running now.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::SeqCst)
    }

    /// Wait until no turn is running, or `timeout` passed; returns the turns still running.
    pub async fn wait_idle(&self, timeout: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.idle.notified();
            if self.active() == 0 {
                return 0;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.active();
            }
        }
    }

    fn begin(&self) -> TurnGuard {
        self.active.fetch_add(1, Ordering::SeqCst);
        TurnGuard(self.clone())
    }
}

/// Marks one turn in flight until dropped.
struct TurnGuard(TurnTracker);

impl Drop for TurnGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::SeqCst);
        self.0.idle.notify_waiters();
    }
}

/// What a thread actor needs from the rest of the system.
#[derive(Clone)]
pub struct ThreadDeps {
    /// Turns in flight (shared by all threads of the node).
    pub turns: TurnTracker,
    /// Storage (for loading history).
    pub store: Store,
    /// Model providers.
    pub provider: Arc<ProviderRouter>,
    /// Billing.
    pub billing: Recipient<BillUsage>,
    /// Batched writes.
    pub persister: Recipient<Persist>,
    /// Optional system prompt for every thread.
    pub system_prompt: Option<String>,
    /// Cluster mode: publishes stored messages and reply metrics to the chat topics.
    pub chat_topics: Option<ChatPublisher>,
}

/// A streamed chat event, sent to an SSE subscriber.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ChatEvent {
    /// The user's message is stored and the reply has begun.
    Start {
        /// Stored user message.
        user_message: MessageRecord,
        /// Id the assistant reply will have.
        assistant_message_id: Uuid,
        /// Model answering.
        model: String,
        /// True when the reply comes from the built-in simulator.
        simulated: bool,
    },
    /// A piece of the reply text.
    Delta {
        /// Text to append.
        text: String,
    },
    /// Usage known so far (cumulative).
    Usage {
        /// Token counts.
        usage: TokenUsage,
    },
    /// The turn is over and billed.
    Done(Box<TurnOutcome>),
    /// The turn failed before anything billable happened.
    Error {
        /// Stable code.
        code: String,
        /// What went wrong.
        message: String,
    },
}

/// The result of a finished turn.
#[derive(Debug, Clone, Serialize)]
pub struct TurnOutcome {
    /// The user's message.
    pub user_message: MessageRecord,
    /// The assistant's reply (status `interrupted` if the provider stream broke).
    pub assistant_message: MessageRecord,
    /// Usage by kind.
    pub usage: Usage,
    /// Cost by kind.
    pub cost: Cost,
    /// The thread's running total after this message.
    pub thread_total: Money,
    /// The provider error that cut the reply short, if any.
    pub error: Option<String>,
}

/// Returned as soon as the user's message is durable and the reply has begun.
pub struct TurnStarted {
    /// Stored user message.
    pub user_message: MessageRecord,
    /// Resolves when the turn is over (billed), or failed.
    pub done: oneshot::Receiver<Result<TurnOutcome, ActorError>>,
}

/// Command: send a user message and run a turn.
#[derive(Message)]
#[rtype(result = "Result<TurnStarted, ActorError>")]
pub struct SendMessage {
    /// Sending user (must own the thread).
    pub user_id: String,
    /// Message text.
    pub content: String,
    /// Where to stream events, if the caller streams.
    pub events: Option<mpsc::UnboundedSender<ChatEvent>>,
    /// Trace context of the HTTP request.
    pub trace: TraceContext,
}

/// Event (internal): a turn ended.
#[derive(Message)]
#[rtype(result = "()")]
struct TurnEnded {
    messages: Vec<MessageRecord>,
    cost_total: Money,
}

/// One chat thread's conversation.
pub struct ThreadActor {
    thread: ThreadRecord,
    history: Vec<MessageRecord>,
    total: Money,
    deps: ThreadDeps,
    busy: bool,
    last_active: Instant,
}

impl ThreadActor {
    /// A thread actor from its stored state (history oldest first, running total).
    pub fn new(thread: ThreadRecord, history: Vec<MessageRecord>, total: Money, deps: ThreadDeps) -> Self {
        ThreadActor { thread, history, total, deps, busy: false, last_active: Instant::now() }
    }

    fn request_for(&self, content: &str) -> ChatRequest {
        let mut messages: Vec<ChatMessage> = self
            .history
            .iter()
            .filter(|m| !m.content.is_empty() && m.status != MessageStatus::Failed)
            .map(|m| ChatMessage {
                role: match m.role {
                    Role::User => LlmRole::User,
                    Role::Assistant => LlmRole::Assistant,
                },
                content: m.content.clone(),
            })
            .collect();
        messages.push(ChatMessage { role: LlmRole::User, content: content.to_string() });
        ChatRequest {
            model: self.thread.model.clone(),
            system: self.deps.system_prompt.clone(),
            messages,
            max_tokens: DEFAULT_MAX_TOKENS,
        }
    }
}

impl Actor for ThreadActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(IDLE_CHECK, |act, ctx| {
            if !act.busy && act.last_active.elapsed() >= IDLE_TIMEOUT {
                tracing::debug!(thread.id = %act.thread.thread_id, "Thread idle; stopping its actor.");
                ctx.stop();
            }
        });
    }
}

/// Validate a user message: not blank, not too long.
pub fn validate_content(content: &str) -> Result<(), ActorError> {
    if content.trim().is_empty() {
        return Err(ActorError::Invalid { code: "empty_message", message: "message content is empty".into() });
    }
    if content.chars().count() > MAX_MESSAGE_CHARS {
        return Err(ActorError::Invalid {
            code: "message_too_long",
            message: format!("message is longer than {MAX_MESSAGE_CHARS} characters"),
        });
    }
    Ok(())
}

impl Handler<SendMessage> for ThreadActor {
    type Result = ResponseFuture<Result<TurnStarted, ActorError>>;

    fn handle(&mut self, msg: SendMessage, ctx: &mut Context<Self>) -> Self::Result {
        self.last_active = Instant::now();
        if let Err(e) = validate_content(&msg.content) {
            return Box::pin(async move { Err(e) });
        }
        if msg.user_id != self.thread.user_id {
            let id = self.thread.thread_id;
            return Box::pin(async move { Err(ActorError::NotFound(format!("thread {id} for this user"))) });
        }
        if self.busy {
            return Box::pin(async { Err(ActorError::TurnInProgress) });
        }
        self.busy = true;
        let now = Utc::now();
        let user_message = MessageRecord {
            message_id: new_id(),
            thread_id: self.thread.thread_id,
            user_id: self.thread.user_id.clone(),
            role: Role::User,
            content: msg.content.clone(),
            model: self.thread.model.clone(),
            created_at: now,
            simulated: false,
            status: MessageStatus::Complete,
        };
        let turn = Turn {
            request: self.request_for(&msg.content),
            thread: self.thread.clone(),
            user_message,
            total_before: self.total,
            deps: self.deps.clone(),
            events: msg.events,
            me: ctx.address(),
        };
        let (started_tx, started_rx) = oneshot::channel();
        let guard = self.deps.turns.begin();
        let span = tracing::info_span!(
            "chat.turn",
            thread.id = %self.thread.thread_id,
            user.id = %self.thread.user_id,
            model = %self.thread.model,
            message.id = %turn.user_message.message_id,
        );
        msg.trace.attach(&span);
        // Detached: the turn finishes (and is billed) even if the caller goes away.
        actix::spawn(
            async move {
                turn.run(started_tx).await;
                drop(guard);
            }
            .instrument(span),
        );
        Box::pin(async move {
            started_rx.await.unwrap_or_else(|_| Err(ActorError::Unavailable("turn task ended early".into())))
        })
    }
}

impl Handler<TurnEnded> for ThreadActor {
    type Result = ();

    fn handle(&mut self, msg: TurnEnded, _ctx: &mut Context<Self>) {
        self.history.extend(msg.messages);
        self.total += msg.cost_total;
        self.busy = false;
        self.last_active = Instant::now();
    }
}

struct Turn {
    request: ChatRequest,
    thread: ThreadRecord,
    user_message: MessageRecord,
    total_before: Money,
    deps: ThreadDeps,
    events: Option<mpsc::UnboundedSender<ChatEvent>>,
    me: Addr<ThreadActor>,
}

impl Turn {
    fn emit(&self, event: ChatEvent) {
        if let Some(tx) = &self.events {
            // A closed channel means the client left; the turn carries on regardless.
            let _ = tx.send(event);
        }
    }

    async fn run(self, started: oneshot::Sender<Result<TurnStarted, ActorError>>) {
        let me = self.me.clone();
        let (persisted_user, outcome) = self.run_inner(started).await;
        let (messages, cost_total) = match &outcome {
            Some(o) => (vec![o.user_message.clone(), o.assistant_message.clone()], o.cost.total),
            None => (persisted_user.into_iter().collect(), Money::ZERO),
        };
        me.do_send(TurnEnded { messages, cost_total });
    }

    /// Returns the user message if it was stored, and the outcome if the turn was billed.
    async fn run_inner(
        self,
        started: oneshot::Sender<Result<TurnStarted, ActorError>>,
    ) -> (Option<MessageRecord>, Option<TurnOutcome>) {
        // 1. The user's message is durable before the model is called.
        let persisted = self
            .deps
            .persister
            .send(Persist { ops: vec![WriteOp::Message(self.user_message.clone())], trace: TraceContext::current() })
            .await;
        if let Err(e) = persisted.map_err(ActorError::from).and_then(|r| r) {
            let _ = started.send(Err(e));
            return (None, None);
        }
        if let Some(chat) = &self.deps.chat_topics {
            chat.user_message(&self.user_message);
        }
        let (done_tx, done_rx) = oneshot::channel();
        let assistant_id = new_id();
        let simulated = self.deps.provider.is_simulated_for(&self.request.model);
        self.emit(ChatEvent::Start {
            user_message: self.user_message.clone(),
            assistant_message_id: assistant_id,
            model: self.request.model.clone(),
            simulated,
        });
        let _ = started.send(Ok(TurnStarted { user_message: self.user_message.clone(), done: done_rx }));

        // 2. Stream the reply.
        let result = self.stream_reply().await;
        let (text, usage, simulated, error, stop_status) = match result {
            Ok(r) => r,
            Err(e) => {
                // Nothing billable happened: the provider refused before replying.
                tracing::warn!(thread.id = %self.thread.thread_id, error = %e, "Provider call failed before the reply.");
                self.emit(ChatEvent::Error { code: e.code().to_string(), message: e.to_string() });
                let _ = done_tx.send(Err(e));
                return (Some(self.user_message), None);
            }
        };

        // 3. Bill the usage with the assistant message, in one transaction.
        let finished_at = Utc::now();
        let assistant_message = MessageRecord {
            message_id: assistant_id,
            thread_id: self.thread.thread_id,
            user_id: self.thread.user_id.clone(),
            role: Role::Assistant,
            content: text,
            model: self.request.model.clone(),
            created_at: finished_at,
            simulated,
            status: stop_status,
        };
        let usage = usage_from_tokens(&usage);
        let event = UsageEvent {
            event_id: new_id(),
            user_id: self.thread.user_id.clone(),
            thread_id: Some(self.thread.thread_id),
            message_id: Some(assistant_id),
            model: self.request.model.clone(),
            occurred_at: finished_at,
            usage: usage.clone(),
            source: "chat".into(),
            idempotency_key: None,
            key_id: None,
            task: Some("chat".into()),
            successful: true,
        };
        let usage_event_id = event.event_id;
        let billed = self
            .deps
            .billing
            .send(BillUsage {
                event,
                with: vec![WriteOp::Message(assistant_message.clone())],
                trace: TraceContext::current(),
            })
            .await
            .map_err(ActorError::from)
            .and_then(|r| r);
        match billed {
            Ok(b) => {
                if let Some(chat) = &self.deps.chat_topics {
                    chat.reply(&assistant_message, usage_event_id, &usage, &b.cost);
                }
                let outcome = TurnOutcome {
                    user_message: self.user_message.clone(),
                    assistant_message,
                    usage,
                    thread_total: self.total_before + b.cost.total,
                    cost: b.cost,
                    error,
                };
                self.emit(ChatEvent::Done(Box::new(outcome.clone())));
                let _ = done_tx.send(Ok(outcome.clone()));
                (Some(self.user_message), Some(outcome))
            }
            Err(e) => {
                tracing::error!(thread.id = %self.thread.thread_id, error = %e, "Billing the reply failed.");
                self.emit(ChatEvent::Error { code: e.code().to_string(), message: e.to_string() });
                let _ = done_tx.send(Err(e));
                (Some(self.user_message), None)
            }
        }
    }

    /// Stream the provider's reply, forwarding deltas. Returns text, usage,
    /// simulated flag, the error that cut it short (if any) and the message status.
    async fn stream_reply(&self) -> Result<(String, TokenUsage, bool, Option<String>, MessageStatus), ActorError> {
        let span = tracing::info_span!(
            "llm.stream",
            model = %self.request.model,
            provider = self.deps.provider.provider_for(&self.request.model).name(),
            llm.input_tokens = tracing::field::Empty,
            llm.output_tokens = tracing::field::Empty,
            llm.cache_read_tokens = tracing::field::Empty,
            llm.cache_write_tokens = tracing::field::Empty,
            llm.status = tracing::field::Empty,
        );
        let result = self.stream_reply_inner().instrument(span.clone()).await;
        if let Ok((_, usage, _, _, status)) = &result {
            span.record("llm.input_tokens", usage.input_tokens);
            span.record("llm.output_tokens", usage.output_tokens);
            span.record("llm.cache_read_tokens", usage.cache_read_tokens);
            span.record("llm.cache_write_tokens", usage.cache_write_5m_tokens + usage.cache_write_1h_tokens);
            span.record("llm.status", tracing::field::debug(status));
        }
        result
    }

    async fn stream_reply_inner(&self) -> Result<(String, TokenUsage, bool, Option<String>, MessageStatus), ActorError> {
        let mut stream = self.deps.provider.stream(&self.request).await?;
        let mut text = String::new();
        let mut usage = TokenUsage::default();
        while let Some(event) = stream.next().await {
            match event {
                StreamEvent::Delta(d) => {
                    text.push_str(&d);
                    self.emit(ChatEvent::Delta { text: d });
                }
                StreamEvent::Usage(u) => {
                    usage = u;
                    self.emit(ChatEvent::Usage { usage: u });
                }
                StreamEvent::Finished(c) => {
                    return Ok((c.text, c.usage, c.simulated, None, MessageStatus::Complete));
                }
                StreamEvent::Failed { error, partial } => {
                    tracing::warn!(thread.id = %self.thread.thread_id, error = %error, "Reply stream broke; billing the usage received so far.");
                    let text = if partial.text.is_empty() { text } else { partial.text };
                    return Ok((text, partial.usage, partial.simulated, Some(error.to_string()), MessageStatus::Interrupted));
                }
            }
        }
        // A stream must end with a terminal event; bill what was seen if it did not.
        Ok((text, usage, false, Some("stream ended without a terminal event".into()), MessageStatus::Interrupted))
    }
}
