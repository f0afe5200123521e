//! `GET /metrics`: Prometheus's text exposition of every metric (docs/observability.md), for
//! any admin token or the metrics token (`serve --metrics-token-file`), which reaches nothing
//! else.

use super::{AdminState, ApiFailure};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use nimbus_telemetry::QueueState;

pub(super) fn routes() -> axum::Router<AdminState> {
    axum::Router::new().route("/metrics", axum::routing::get(metrics))
}

async fn metrics(State(state): State<AdminState>) -> Result<Response, ApiFailure> {
    let infos = super::queue_infos(&state).await?;
    let depth = |q: &nimbus_api::QueueInfo| (q.ready + q.in_flight + q.delayed) as u64;
    let queues: Vec<QueueState<'_>> = infos
        .iter()
        .map(|q| {
            let dlq = nimbus_events::message::dlq_of(&q.queue);
            QueueState {
                app: &q.app,
                queue: &q.queue,
                messages: depth(q),
                oldest_age_seconds: q.oldest_age_ms.unwrap_or(0) as f64 / 1000.0,
                dead: infos
                    .iter()
                    .find(|d| d.app == q.app && d.queue == dlq)
                    .map_or(0, depth),
            }
        })
        .collect();
    let text = state.platform.metrics(&queues);
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            nimbus_telemetry::metrics::CONTENT_TYPE,
        )],
        text,
    )
        .into_response())
}
