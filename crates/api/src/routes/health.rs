//! `/healthz` (the process answers) and `/readyz` (PostgreSQL and a Kafka broker answer too).

use crate::auth::Telemetry;
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use std::time::Duration;
use utoipa::ToSchema;

#[derive(Serialize, ToSchema)]
pub struct Health {
    pub status: String,
    pub database: String,
    pub kafka: String,
}

#[utoipa::path(get, path = "/healthz", responses((status = 200, body = Health)))]
pub(crate) async fn healthz() -> Json<Health> {
    Json(Health { status: "ok".into(), database: "not checked".into(), kafka: "not checked".into() })
}

/// Ready when PostgreSQL answers a query and a Kafka broker accepts a connection.
#[utoipa::path(get, path = "/readyz", responses((status = 200, body = Health), (status = 503, body = Health)))]
pub(crate) async fn readyz(State(s): State<AppState>) -> Response {
    let database = match tokio::time::timeout(Duration::from_secs(2), async {
        let c = Telemetry::get(&s).await.map_err(|e| e.to_string())?;
        c.ping().await.map_err(|e| e.to_string())
    })
    .await
    {
        Ok(Ok(_)) => "ok".to_string(),
        _ => "unreachable".to_string(),
    };
    let broker = s.brokers.split(',').next().unwrap_or_default().to_string();
    let kafka = match tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(broker)).await {
        Ok(Ok(_)) => "ok".to_string(),
        _ => "unreachable".to_string(),
    };
    let ok = database == "ok" && kafka == "ok";
    let status = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(Health { status: if ok { "ready" } else { "not ready" }.into(), database, kafka })).into_response()
}
