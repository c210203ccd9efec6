//! Scheduler routes: list jobs, trigger one by hand, read the run history.
//!
//! Mounted with [`configure`] (it carries the node's [`Scheduler`] handle), *before*
//! `tally_web::configure`, whose routes end in a catch-all.

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use tally_actors::scheduler::{JobView, Scheduler};
use tally_store::ops::RunRecord;
use uuid::Uuid;

use super::{DEFAULT_LIMIT, MAX_LIMIT};
use crate::error::ApiError;

/// Register the scheduler handle and its routes.
pub fn configure(scheduler: Scheduler) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg: &mut web::ServiceConfig| {
        cfg.app_data(web::Data::new(scheduler))
            .route("/api/scheduler/jobs", web::get().to(list_jobs))
            .route("/api/scheduler/jobs/{id}/trigger", web::post().to(trigger_job))
            .route("/api/scheduler/history", web::get().to(history));
    }
}

/// Body of `GET /api/scheduler/jobs`.
#[derive(Debug, Serialize)]
pub struct JobsResponse {
    /// Whether the scheduler is started on this node.
    pub running: bool,
    /// Registered jobs, by id.
    pub jobs: Vec<JobView>,
}

/// Every job with its schedule, next run, last run and whether it runs here now.
#[utoipa::path(get, path = "/api/scheduler/jobs", tag = "scheduler", responses((status = 200, description = "Jobs", body = Object)))]
pub async fn list_jobs(scheduler: web::Data<Scheduler>) -> Result<HttpResponse, ApiError> {
    let jobs = scheduler.jobs().await?;
    Ok(HttpResponse::Ok().json(JobsResponse { running: scheduler.is_running(), jobs }))
}

/// Body of `POST /api/scheduler/jobs/{id}/trigger`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Triggered {
    /// The job.
    pub job_id: String,
    /// Its run (follow it in the history; `skipped` when it was already running).
    pub run_id: Uuid,
}

/// Run a job now on this node: 202 with the run id.
#[utoipa::path(post, path = "/api/scheduler/jobs/{id}/trigger", tag = "scheduler", params(("id" = String, Path, description = "Job id")), responses((status = 202, description = "Run started", body = Triggered)))]
pub async fn trigger_job(scheduler: web::Data<Scheduler>, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let job_id = path.into_inner();
    let run_id = scheduler.trigger(&job_id).await?;
    Ok(HttpResponse::Accepted().json(Triggered { job_id, run_id }))
}

/// Query of `GET /api/scheduler/history`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    /// Only this job.
    pub job_id: Option<String>,
    /// Most runs to return (1-1000, default 100).
    pub limit: Option<i64>,
}

/// Body of `GET /api/scheduler/history`.
#[derive(Debug, Serialize)]
pub struct HistoryResponse {
    /// Runs, newest first.
    pub runs: Vec<RunRecord>,
}

/// Run history, newest first, on every node.
#[utoipa::path(get, path = "/api/scheduler/history", tag = "scheduler", params(HistoryQuery), responses((status = 200, description = "Runs, newest first", body = Object)))]
pub async fn history(scheduler: web::Data<Scheduler>, q: web::Query<HistoryQuery>) -> Result<HttpResponse, ApiError> {
    let q = q.into_inner();
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request("invalid_limit", format!("limit must be 1-{MAX_LIMIT}")));
    }
    let job_id = q.job_id.filter(|j| !j.is_empty());
    let runs = scheduler.history(job_id, limit).await?;
    Ok(HttpResponse::Ok().json(HistoryResponse { runs }))
}
