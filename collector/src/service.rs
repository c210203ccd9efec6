//! The `tally collector` role: topics, the CollectorActor, and the HTTP server, until a signal stops it.

use std::net::TcpListener;

use actix::Actor;
use actix_web::{web, App, HttpServer};
use tally_actors::kafka::retry::{retry, RetryPolicy};
use tally_actors::kafka::{ensure_topics, KafkaConfig};
use tally_actors::ActorError;

use crate::collector::CollectorActor;
use crate::config::CollectorConfig;
use crate::error::CollectorError;
use crate::http::{health_routes, routes, trace_request, IngestState, Sink};

/// Attempts to create the topics at start-up before giving up.
const STARTUP_TOPIC_RETRIES: usize = 5;
/// How long HTTP requests in flight may finish at shutdown.
const SHUTDOWN_TIMEOUT_SECS: u64 = 15;

/// Serve the ingest API on `listener` until SIGINT/SIGTERM. Must run inside an actix system.
pub async fn run(listener: TcpListener, kafka: KafkaConfig, config: CollectorConfig, workers: Option<usize>) -> Result<(), CollectorError> {
    kafka.validate()?;
    config.validate()?;
    retry(RetryPolicy::times(STARTUP_TOPIC_RETRIES), "Creating topics", ActorError::is_retryable, || ensure_topics(&kafka)).await?;
    let actor = CollectorActor::new(kafka.clone(), config.clone())?;
    let addr = actor.start();
    let state = web::Data::new(IngestState { sink: Sink::Cluster(addr), config });
    let mut server = HttpServer::new(move || {
        App::new()
            .wrap(actix_web::middleware::Logger::new("%r %s %Dms").log_target("tally::http"))
            // Outermost: every request gets its server span, continuing an incoming traceparent.
            .wrap(actix_web::middleware::from_fn(trace_request))
            .configure(routes(state.clone()))
            .configure(health_routes(state.clone()))
    })
    .listen(listener)
    .map_err(|e| CollectorError::Server(e.to_string()))?
    .shutdown_timeout(SHUTDOWN_TIMEOUT_SECS);
    if let Some(w) = workers {
        server = server.workers(w);
    }
    // Shutdown (actix-web's signal handler): stop accepting, then let requests in flight be
    // answered; each is answered only after its records were acknowledged (or with 503), so
    // nothing acknowledged is still in the producer's queue when the process exits.
    server.run().await.map_err(|e| CollectorError::Server(e.to_string()))?;
    tracing::info!("Collector stopped.");
    Ok(())
}
